"""Review verdicts: a person's year for a coin becomes its label in gold, with who and when."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone

from coin_assets.core.clock import utcnow
from coin_assets.core.metadata import ensure_schema
from coin_assets.core.uploads import YEAR_MIN


@dataclass(frozen=True)
class Verdict:
    coin_id: str
    year: int
    reviewer: str
    reviewed_at: datetime
    source: str


def parse_verdicts(data: bytes, source: str, default_time: datetime) -> tuple[list[Verdict], list[str]]:
    """CSV with header ``coin_id,year,reviewer[,reviewed_at]``. Returns (verdicts, problems)."""
    verdicts, problems = [], []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return [], [f"{source}: not UTF-8 text ({err})"]
    reader = csv.DictReader(io.StringIO(text))
    missing = {"coin_id", "year", "reviewer"} - set(reader.fieldnames or [])
    if missing:
        return [], [f"{source}: missing column(s) {sorted(missing)}"]
    max_year = utcnow().year
    for line, row in enumerate(reader, start=2):
        coin_id, reviewer = (row.get("coin_id") or "").strip(), (row.get("reviewer") or "").strip()
        try:
            year = int((row.get("year") or "").strip())
        except ValueError:
            problems.append(f"{source}:{line}: year {row.get('year')!r} is not an integer")
            continue
        if not coin_id or not reviewer:
            problems.append(f"{source}:{line}: coin_id and reviewer are required")
            continue
        if not YEAR_MIN <= year <= max_year:
            problems.append(f"{source}:{line}: year {year} outside {YEAR_MIN}-{max_year}")
            continue
        when = default_time
        if (raw := (row.get("reviewed_at") or "").strip()):
            try:
                when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            except ValueError:
                problems.append(f"{source}:{line}: reviewed_at {raw!r} is not ISO 8601")
                continue
        verdicts.append(Verdict(coin_id, year, reviewer, when, source))
    return verdicts, problems


def apply_verdicts(conn, verdicts: list[Verdict]) -> int:
    """Store verdicts (idempotent per coin and time) and write them onto the gold rows."""
    ensure_schema(conn)
    for v in verdicts:
        conn.execute(
            "INSERT INTO review_labels VALUES (?, ?, ?, ?, ?) ON CONFLICT (coin_id, reviewed_at) DO UPDATE SET "
            "year = excluded.year, reviewer = excluded.reviewer, source = excluded.source",
            [v.coin_id, v.year, v.reviewer, v.reviewed_at, v.source],
        )
    coin_ids = sorted({v.coin_id for v in verdicts})
    if coin_ids:
        conn.execute(
            """
            UPDATE gold_images g SET label_year = r.year, label_source = 'review', labelled_by = r.reviewer,
                   labelled_at = r.reviewed_at
            FROM (SELECT * FROM review_labels
                  QUALIFY row_number() OVER (PARTITION BY coin_id ORDER BY reviewed_at DESC) = 1) r
            WHERE g.coin_id = r.coin_id AND list_contains(?, g.coin_id)
            """,
            [coin_ids],
        )
    return len(verdicts)


def labelled_days(conn, verdicts: list[Verdict]) -> list[str]:
    """The days whose gold rows the verdicts label."""
    coin_ids = sorted({v.coin_id for v in verdicts})
    return [str(d) for (d,) in conn.execute(
        "SELECT DISTINCT partition_date FROM gold_images WHERE list_contains(?, coin_id)", [coin_ids]).fetchall()]


def review_label_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM review_labels").fetchall()[0][0]


def record_verdict(conn, coin_id: str, year: int, reviewer: str, source: str = "cli") -> Verdict:
    max_year = utcnow().year
    if not YEAR_MIN <= year <= max_year:
        raise ValueError(f"year {year} outside {YEAR_MIN}-{max_year}")
    known = conn.execute("SELECT count(*) FROM gold_images WHERE coin_id = ?", [coin_id]).fetchall()[0][0]
    if not known:
        raise ValueError(f"coin {coin_id!r} is not in gold")
    verdict = Verdict(coin_id, year, reviewer, utcnow(), source)
    apply_verdicts(conn, [verdict])
    return verdict
