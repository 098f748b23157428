"""Command line: headless demo run, rollback, review verdicts.

    python -m coin_assets.cli headless [--days 2026-11-22 ...] [--skip-training]
    python -m coin_assets.cli rollback --actor alice --reason "v3 misreads 19xx" [--to-version 2]
    python -m coin_assets.cli review --coin-id coin-s0-000012 --year 1987 --reviewer alice
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time

from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, materialize

from coin_assets.core import metadata as md
from coin_assets.core.clock import utcnow
from coin_assets.core.uploads import list_uploads
from coin_assets.settings import Settings


def _instance() -> DagsterInstance:
    return DagsterInstance.get() if Settings.from_env().dagster_home else DagsterInstance.ephemeral()


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _checks_summary(result) -> tuple[int, list[str], list[str]]:
    """(checks run, failed ERROR checks, failed WARN checks). Only ERROR checks fail the command."""
    evaluations = result.get_asset_check_evaluations()
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations
              if not e.passed and e.severity != AssetCheckSeverity.WARN]
    warned = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations
              if not e.passed and e.severity == AssetCheckSeverity.WARN]
    return len(evaluations), failed, warned


def _add_checks(summary: dict, result, day: str | None = None) -> None:
    n, failed, warned = _checks_summary(result)
    prefix = f"{day} " if day else ""
    summary["checks"]["run"] += n
    summary["checks"]["failed"] += [prefix + f for f in failed]
    summary["checks"]["warnings"] += [prefix + w for w in warned]


def recover_runs(instance: DagsterInstance) -> list[dict]:
    """Runs left STARTED by a process that died: fail them and free their pool slots, saying so."""
    from coin_assets.defs.run_recovery import recover_abandoned_runs

    recovered = recover_abandoned_runs(instance)
    for run in recovered:
        print(f"recovered run {run.run_id} ({run.job_name}): its process {run.pid} is gone; marked failed, "
              f"{run.slots_freed} pool slot(s) freed", file=sys.stderr)
    return [vars(r) for r in recovered]


def wait_for_settled_uploads(store, days: list[str], settle_seconds: float) -> None:
    """Wait (at most the settle window) until the days' newest upload is old enough to be taken:
    bronze leaves files younger than that for a later run."""
    newest = max((f.modified for f in list_uploads(store) if f.partition in days), default=None)
    if newest is None or not settle_seconds:
        return
    wait = settle_seconds - (utcnow() - newest).total_seconds()
    if wait > 0:
        print(f"waiting {wait:.1f} s for the newest upload to settle (COIN_ASSETS_SETTLE_SECONDS={settle_seconds:g})",
              file=sys.stderr)
        time.sleep(wait + 0.05)


def materialize_base_version(resources: dict | None = None, instance: DagsterInstance | None = None) -> str | None:
    """``base_model_version``: on an instance with no model yet, the committed reader becomes production (the
    API reads years before anything is trained). Returns the version registered, or None."""
    from coin_assets.definitions import build_definitions
    from coin_assets.defs.resources import default_resources

    settings = Settings.from_env()
    assets = build_definitions(settings).assets
    result = materialize([*assets], selection=AssetSelection.assets("base_model_version"),
                         resources=resources or default_resources(settings), instance=instance or _instance(),
                         raise_on_error=True)
    return result.output_for_node("base_model_version")["registered_version"]


def run_headless(days: list[str] | None, train: bool, train_config: dict | None = None,
                 evaluation_config: dict | None = None) -> dict:
    """Materialize every asset for the given (default: all uploaded) days, in-process, and summarise."""
    from coin_assets.definitions import build_definitions
    from coin_assets.defs.resources import default_resources

    settings = Settings.from_env()
    project = build_definitions(settings)
    resources = default_resources(settings)
    store = resources["storage"].store()
    days = days or sorted({f.partition for f in list_uploads(store)})
    wait_for_settled_uploads(store, days, settings.settle_seconds)
    assets = [*project.assets, *project.asset_checks]
    instance = _instance()
    summary: dict = {"days": days, "layers": {}, "checks": {"run": 0, "failed": [], "warnings": []},
                     "seconds": {}, "recovered_runs": recover_runs(instance), "up_to_date": []}
    if train and (train_config or {}).get("use_year_reader", True):
        summary["base_version"] = materialize_base_version(resources, instance)
    ingest_sel = AssetSelection.assets("bronze_images", "decoded_images", "silver_images", "gold_images", "found_coins",
                                        "coin_crops")
    layer_totals = {name: {"processed": 0, "skipped_unchanged": 0, "quarantined": 0, "seconds": 0.0}
                    for name in ("bronze_images", "decoded_images", "silver_images", "gold_images")}
    started = time.perf_counter()
    crops_seconds = snapshot_seconds = 0.0
    for day in days:
        result = materialize(assets, partition_key=day, selection=ingest_sel,
                             resources=resources, instance=instance, raise_on_error=True)
        if not result.asset_materializations_for_node("bronze_images"):
            summary["up_to_date"].append(day)  # nothing new since the last complete run: the chain skipped
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            name = mat.asset_key.to_user_string()
            if name in ("found_coins", "coin_crops"):  # coin finding, and recording what it found
                crops_seconds += mat.metadata["seconds"].value
            if name == "gold_images":
                snapshot_seconds += mat.metadata["reader_snapshot_seconds"].value
            if name not in layer_totals:
                continue
            totals = layer_totals[name]
            for key in ("processed", "skipped_unchanged", "quarantined", "seconds"):
                totals[key] += mat.metadata[key].value
        _add_checks(summary, result, day)
    summary["seconds"]["ingestion"] = round(time.perf_counter() - started, 2)
    summary["seconds"]["of_which_coin_crops"] = round(crops_seconds, 2)
    summary["seconds"]["of_which_reader_snapshot"] = round(snapshot_seconds, 3)
    summary["layers"] = layer_totals
    with resources["duckdb"].get_connection() as conn:
        summary["tables"] = md.row_counts(conn, ("uploads", "silver_images", "gold_images", "quarantine"))
        summary["tables"]["paired_coins"] = md.paired_coin_count(conn)
    if train:
        started = time.perf_counter()
        model_sel = AssetSelection.assets("review_labels", "training_set", "coin_year_model", "model_evaluation",
                                          "promotion_decision")
        ops = {}
        if train_config:
            ops["coin_year_model"] = {"config": train_config}
        if evaluation_config:
            ops["model_evaluation"] = {"config": evaluation_config}
        run_config = {"ops": ops} if ops else None
        result = materialize(assets, selection=model_sel,
                             resources=resources, instance=instance, run_config=run_config, raise_on_error=True)
        _add_checks(summary, result)
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            if mat.asset_key.to_user_string() in ("model_evaluation", "promotion_decision", "coin_year_model"):
                summary.setdefault("model", {}).update({
                    k: v.value for k, v in mat.metadata.items()
                    if isinstance(v.value, int | float | str | bool) and len(str(v.value)) < 300
                })
        summary["seconds"]["training"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        pred_sel = AssetSelection.assets("coin_predictions", "review_queue")
        for day in days:
            result = materialize(assets, partition_key=day, selection=pred_sel,
                                 resources=resources, instance=instance, raise_on_error=True)
            _add_checks(summary, result, day)
        summary["seconds"]["predictions"] = round(time.perf_counter() - started, 2)
        with resources["duckdb"].get_connection() as conn:
            summary["tables"].update(md.row_counts(conn, ("predictions", "review_queue")))
    summary["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return summary


def _print_summary(summary: dict) -> None:
    print(f"days: {', '.join(summary['days'])}")
    if summary.get("up_to_date"):
        print(f"nothing new since the last complete ingestion (skipped): {', '.join(summary['up_to_date'])}")
    for name, totals in summary["layers"].items():
        examined = totals["processed"] + totals["skipped_unchanged"] + totals["quarantined"]
        rate = examined / totals["seconds"] if totals["seconds"] else 0.0
        print(f"{name:15s} written={totals['processed']:5d} unchanged={totals['skipped_unchanged']:5d} "
              f"quarantined={totals['quarantined']:4d} seconds={totals['seconds']:7.2f} files/s={rate:7.1f}")
    print("tables: " + ", ".join(f"{k}={v}" for k, v in summary["tables"].items()))
    if "model" not in summary and "training" in summary["seconds"]:
        print("model: no new version (this training set and config were already trained)")
    if "model" in summary:
        m = summary["model"]
        print("model: " + ", ".join(f"{k}={m[k]}" for k in (
            "model_version", "val_mae", "candidate_test_mae", "mean_baseline_mae", "promoted", "reason",
            "train_seconds") if k in m))
    checks = summary["checks"]
    passed = checks["run"] - len(checks["failed"]) - len(checks["warnings"])
    print(f"checks: {passed} passed, {len(checks['warnings'])} warning(s), {len(checks['failed'])} failed"
          + (f"; warnings: {'; '.join(checks['warnings'])}" if checks["warnings"] else "")
          + (f"; failed: {'; '.join(checks['failed'])}" if checks["failed"] else ""))
    print("wall seconds: " + ", ".join(f"{k}={v}" for k, v in summary["seconds"].items())
          + f"; peak RSS {summary['peak_rss_mib']} MiB")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coin_assets.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    headless = sub.add_parser("headless", help="materialize everything for the uploaded days and print a summary")
    headless.add_argument("--days", nargs="*", help="partition keys (default: every day in the upload zone)")
    headless.add_argument("--skip-training", action="store_true", help="ingestion only")
    headless.add_argument("--train-config", help="JSON run config for coin_year_model, e.g. '{\"epochs\": 2}'")
    headless.add_argument("--evaluation-config", help="JSON run config for model_evaluation, e.g. "
                          "'{\"reading_suite_per_placement\": 2}'")
    headless.add_argument("--json", action="store_true", help="print the summary as JSON")
    rollback = sub.add_parser("rollback", help="point production back at the previous model version")
    rollback.add_argument("--actor", required=True)
    rollback.add_argument("--reason", required=True)
    rollback.add_argument("--to-version")
    review = sub.add_parser("review", help="record a person's verdict: the coin's year")
    review.add_argument("--coin-id", required=True)
    review.add_argument("--year", type=int, required=True)
    review.add_argument("--reviewer", required=True)
    args = parser.parse_args(argv)

    if args.command == "headless":
        # SIGTERM (timeout, systemd, a process-group kill) stops the run like Ctrl-C does, so Dagster
        # records it and frees its pool slot instead of leaving it claimed.
        signal.signal(signal.SIGTERM, _interrupt)
        summary = run_headless(args.days, train=not args.skip_training,
                               train_config=json.loads(args.train_config) if args.train_config else None,
                               evaluation_config=json.loads(args.evaluation_config) if args.evaluation_config else None)
        print(json.dumps(summary, indent=2, default=str)) if args.json else _print_summary(summary)
        return 1 if summary["checks"]["failed"] else 0
    if args.command == "rollback":
        from coin_assets.defs.resources import MlflowRegistry
        from coin_assets.ml.registry import rollback as do_rollback

        registry = MlflowRegistry.from_env()
        try:
            result = do_rollback(registry.client(), registry.model_name, args.actor, args.reason, args.to_version,
                                 lock_url=registry.lock_url)
        except ValueError as err:
            print(f"rollback refused: {err}", file=sys.stderr)
            return 2
        print(f"production: v{result.from_version} -> v{result.to_version} (by {result.actor}: {result.reason})")
        from coin_assets.core.serving_client import request_reload

        print(f"serving API reload: {request_reload()}")
        return 0
    if args.command == "review":
        from coin_assets.core.review import record_verdict
        from coin_assets.defs.resources import duckdb_from_env

        try:
            with duckdb_from_env().get_connection() as conn:
                verdict = record_verdict(conn, args.coin_id, args.year, args.reviewer)
        except ValueError as err:
            print(f"review refused: {err}", file=sys.stderr)
            return 2
        print(f"{verdict.coin_id}: labelled {verdict.year} by {verdict.reviewer} at {verdict.reviewed_at:%Y-%m-%d %H:%M:%S}Z")
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
