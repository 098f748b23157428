"""The upload contract: which files in the upload zone belong to which coin, side and day.

Layout (keys relative to the data root)::

    uploads/<YYYY-MM-DD>/<coin_id>__front.<ext>   obverse photo
    uploads/<YYYY-MM-DD>/<coin_id>__back.<ext>    reverse photo
    uploads/<YYYY-MM-DD>/<coin_id>.json           optional sidecar

The date folder is the UTC upload day and names the daily partition. A file put directly in
``uploads/`` (no date folder) belongs to the UTC day of its modification time. Names starting
with ``.`` or ending in ``.part``/``.tmp``/``.crdownload`` are uploads still in progress and are
never picked up. ``uploads/reviews/`` is the drop zone for review verdicts (see review.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from coin_assets.core.clock import utcnow
from coin_assets.core.storage import ObjectStore, StoredObject, is_utf8_key, printable_key

UPLOAD_PREFIX = "uploads"
REVIEW_PREFIX = "uploads/reviews"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
SIDE_ALIASES = {"front": "front", "obverse": "front", "back": "back", "reverse": "back"}
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
DEFAULT_SETTLE_SECONDS = 10.0
YEAR_MIN = 1500
YEAR_MAX_PLAUSIBLE = 2100  # the latest year a model output or a form may name (labels stop at the current year)
MAX_SIDECAR_BYTES = 64 * 1024  # a sidecar holds a few short fields; a larger one is not parsed

NOT_A_REGULAR_FILE = "not a regular file (symbolic link or special file): never read"
NAME_NOT_UTF8 = "file name is not valid UTF-8: never read (rename the file to upload it)"
NEVER_READ = frozenset({NOT_A_REGULAR_FILE, NAME_NOT_UTF8})  # quarantined from the listing alone

_NAME_RE = re.compile(r"^(?P<coin>.+)__(?P<side>[A-Za-z]+)(?P<ext>\.[^.]+)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class UploadFile:
    key: str
    name: str
    partition: str  # YYYY-MM-DD
    size: int
    modified: datetime
    kind: str  # "image" | "sidecar" | "other"
    coin_id: str | None = None
    side: str | None = None
    problem: str | None = None  # why this file cannot be used as a coin image


def classify(obj: StoredObject) -> UploadFile | None:
    """Map a stored object in the upload zone to its contract meaning (None: not ours to ingest)."""
    rel = obj.key[len(UPLOAD_PREFIX) + 1 :]
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES):
        return None
    if obj.key.startswith(REVIEW_PREFIX + "/"):
        return None
    if len(parts) == 1:
        partition = obj.modified.astimezone(timezone.utc).date().isoformat()
    elif len(parts) == 2 and _DATE_RE.match(parts[0]) and _valid_date(parts[0]):
        partition = parts[0]
    else:
        return None  # nested deeper or in a folder that is not a day: not part of the contract
    base = dict(key=obj.key, name=name, partition=partition, size=obj.size, modified=obj.modified)
    if not is_utf8_key(obj.key):
        base.update(key=printable_key(obj.key), name=printable_key(name))
        return UploadFile(kind="other", problem=NAME_NOT_UTF8, **base)
    if not obj.regular:
        return UploadFile(kind="other", problem=NOT_A_REGULAR_FILE, **base)
    lower = name.lower()
    if lower.endswith(".json"):
        return UploadFile(kind="sidecar", coin_id=name[: -len(".json")], **base)
    match = _NAME_RE.match(name)
    ext = ("." + lower.rsplit(".", 1)[-1]) if "." in lower else ""
    if ext not in IMAGE_EXTENSIONS:
        return UploadFile(kind="other", problem=f"unsupported file type {ext or '(no extension)'!r}", **base)
    if not match or match["side"].lower() not in SIDE_ALIASES:
        return UploadFile(
            kind="other", problem="file name does not follow <coin_id>__front|back.<ext>", **base
        )
    return UploadFile(kind="image", coin_id=match["coin"], side=SIDE_ALIASES[match["side"].lower()], **base)


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
        return True
    except ValueError:
        return False


def _upload_objects(store: ObjectStore, partition: str | None, newest_days: int | None) -> Iterator[StoredObject]:
    """The objects of the upload zone worth classifying: the files at its top (their day is their mtime's)
    and those of the day folders asked for, each folder listed on its own (never the whole history)."""
    loose, folders = store.list_level(UPLOAD_PREFIX)
    days = sorted(f for f in folders if _DATE_RE.match(f) and _valid_date(f))
    if partition is not None:
        days = [d for d in days if d == partition]
    elif newest_days is not None:
        days = days[-newest_days:] if newest_days > 0 else []
    yield from loose
    for day in days:
        yield from store.list(f"{UPLOAD_PREFIX}/{day}")


def list_uploads(
    store: ObjectStore, partition: str | None = None, now: datetime | None = None,
    settle_seconds: float = 0.0, newest_days: int | None = None,
) -> list[UploadFile]:
    """Files of the upload zone (one day, the ``newest_days`` newest day folders, or all), skipping those
    modified in the last ``settle_seconds`` (they may still be being written)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settle_seconds)
    files = []
    for obj in _upload_objects(store, partition, newest_days):
        item = classify(obj)
        if item is None or (partition is not None and item.partition != partition):
            continue
        if settle_seconds and item.modified > cutoff:
            continue
        files.append(item)
    return files


def fingerprints_by_partition(files: Iterable[UploadFile]) -> dict[str, str]:
    """A short hash per day over (key, size, mtime): it changes when any file of that day does."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for f in files:
        grouped[f.partition].append(f"{f.key}\x00{f.size}\x00{f.modified.timestamp():.6f}")
    return {
        day: hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]
        for day, lines in grouped.items()
    }


@dataclass
class Sidecar:
    user_id: str | None = None
    coin_id: str | None = None
    uploaded_at: datetime | None = None
    year: int | None = None
    problems: list[str] = field(default_factory=list)  # recorded, never fatal
    label_note: str | None = None  # why a given year was dropped


def load_sidecar(size: int, read: Callable[[], bytes]) -> Sidecar:
    """``parse_sidecar`` of the bytes ``read`` returns, unless ``size`` is over MAX_SIDECAR_BYTES (then
    nothing is read into memory and the sidecar's only field is that problem)."""
    if size > MAX_SIDECAR_BYTES:
        return Sidecar(problems=[f"sidecar too large: {size} bytes, over the {MAX_SIDECAR_BYTES}-byte limit; not read"])
    return parse_sidecar(read())


def parse_sidecar(data: bytes, max_year: int | None = None, min_year: int = YEAR_MIN) -> Sidecar:
    """Parse a sidecar leniently: bad fields are dropped with a recorded reason."""
    max_year = max_year or utcnow().year
    out = Sidecar()
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        out.problems.append(f"sidecar is not valid JSON: {err}")
        return out
    if not isinstance(doc, dict):
        out.problems.append(f"sidecar must be a JSON object, got {type(doc).__name__}")
        return out
    for key in ("user_id", "coin_id"):
        value = doc.get(key)
        if value is not None:
            if isinstance(value, str | int) and str(value).strip():
                setattr(out, key, str(value).strip())
            else:
                out.problems.append(f"{key} must be a non-empty string")
    if (raw := doc.get("uploaded_at")) is not None:
        try:
            parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            out.uploaded_at = (
                parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
            )
        except ValueError:
            out.problems.append(f"uploaded_at {raw!r} is not ISO 8601")
    if (year := doc.get("year")) is not None:
        if isinstance(year, bool) or not isinstance(year, int | str):
            out.label_note = f"year {year!r} is not an integer; label dropped"
        else:
            try:
                value = int(str(year).strip())
            except ValueError:
                out.label_note = f"year {year!r} is not an integer; label dropped"
            else:
                if min_year <= value <= max_year:
                    out.year = value
                else:
                    out.label_note = f"year {value} outside plausible range {min_year}-{max_year}; label dropped"
    return out


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def path_safe_id(coin_id: str) -> str:
    """A file-name-safe, collision-free form of a user-given coin id."""
    cleaned = _UNSAFE_CHARS.sub("_", coin_id).strip("._") or "coin"
    if cleaned == coin_id:
        return coin_id
    return f"{cleaned[:60]}-{hashlib.sha256(coin_id.encode()).hexdigest()[:8]}"
