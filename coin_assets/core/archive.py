"""Move old bronze to cheaper storage: ``bronze/<day>/…`` → ``archive/bronze/<day>/…``.

On a local store the archive prefix is a folder (on S3 a prefix that a bucket lifecycle rule can
move to a colder storage class). The ledger follows the bytes: every row that pointed at a moved
file (``uploads.bronze_path``, ``silver_images.bronze_path``, ``gold_images.raw_path``) points at its
archive key, so the lineage check still verifies its sha256 there and re-processing the day reads
from the archive. Idempotent: a day already archived moves nothing; a crash between the copy and
the ledger update leaves both copies, and the next run finishes the move.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from coin_assets.core import metadata as md
from coin_assets.core.storage import ObjectStore, sha256_of

ARCHIVE_PREFIX = "archive"
DEFAULT_ARCHIVE_AFTER_DAYS = 30


@dataclass
class ArchiveReport:
    partition: str
    moved: int = 0
    already_archived: int = 0
    bytes_moved: int = 0


def archive_key(bronze_key: str) -> str:
    return f"{ARCHIVE_PREFIX}/{bronze_key}"


def is_due(partition: str, today: date, after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS) -> bool:
    return date.fromisoformat(partition) <= today - timedelta(days=after_days)


def archive_partition(store: ObjectStore, conn, partition: str) -> ArchiveReport:
    """Move the day's bronze files to the archive prefix and repoint the ledger at them."""
    md.ensure_schema(conn)
    report = ArchiveReport(partition)
    report.already_archived = len(md.bronze_paths_under(conn, f"{ARCHIVE_PREFIX}/bronze/{partition}/"))
    for key in sorted(md.bronze_paths_under(conn, f"bronze/{partition}/")):
        target = archive_key(key)
        if store.exists(key):
            if not store.exists(target) or sha256_of(store, target) != sha256_of(store, key):
                with store.open_read(key) as stream:
                    store.write_stream(target, stream)
            report.bytes_moved += store.size(target)
        elif not store.exists(target):
            continue  # missing everywhere: the lineage check reports it; nothing to move
        md.repoint_bronze(conn, key, target)
        store.delete(key)
        report.moved += 1
    return report
