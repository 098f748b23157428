"""Review verdicts from people back into gold as labels (the loop that improves the next model)."""

from dagster import AssetExecutionContext, AutomationCondition, Output, asset
from dagster_duckdb import DuckDBResource

from coin_assets.core import readers
from coin_assets.core.review import apply_verdicts, labelled_days, parse_verdicts, review_label_count
from coin_assets.core.storage import is_utf8_key, printable_key
from coin_assets.core.uploads import REVIEW_PREFIX
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import CoinStorage

# exists from the start: the model chain never warns that its review input was never materialized
ON_MISSING = (AutomationCondition.missing() & ~AutomationCondition.in_progress()
              & ~AutomationCondition.execution_failed()).with_label("materialize once when missing")


@asset(group_name="review", kinds={"duckdb"}, pool=DUCKDB_WRITER_POOL, deps=["gold_images"],
       automation_condition=ON_MISSING)
def review_labels(context: AssetExecutionContext, storage: CoinStorage, duckdb: DuckDBResource) -> Output[dict]:
    """Verdicts from people (CSV files in uploads/reviews/), stored in `review_labels` and written onto the
    coins' gold rows as label_source='review' with who and when. Files are kept; re-reading is idempotent."""
    store = storage.store()
    verdicts, problems, files = [], [], 0
    for obj in store.list(REVIEW_PREFIX):
        if not obj.key.lower().endswith(".csv"):
            continue
        files += 1
        if not is_utf8_key(obj.key):
            problems.append(f"{printable_key(obj.key)}: file name is not valid UTF-8; not read (rename the file)")
            continue
        found, bad = parse_verdicts(store.read_bytes(obj.key), obj.key, obj.modified)
        verdicts += found
        problems += bad
    for problem in problems:
        context.log.warning(problem)
    with duckdb.get_connection() as conn:
        applied = apply_verdicts(conn, verdicts)
        total = review_label_count(conn)
        readers.refresh_snapshot(conn, duckdb.database, days=labelled_days(conn, verdicts),
                                 tables=("review_labels", "gold_images"))
    return Output({"verdicts": applied, "problems": problems}, metadata={
        "files": files, "verdicts_read": applied, "review_labels_total": total, "rejected_lines": len(problems),
        "problems": "\n".join(problems[:20]) or "none",
    })
