"""Declarative automation of the model's consumers, evaluated on a real Dagster instance."""

from dagster import AssetKey, AssetMaterialization, DagsterInstance, evaluate_automation_conditions

from coin_assets_tests.conftest import PROJECT

DAYS = ("2026-11-20", "2026-11-21")


def test_review_labels_exists_from_the_start_and_predictions_follow_a_promotion_on_every_gold_day():
    instance = DagsterInstance.ephemeral()
    first = evaluate_automation_conditions(defs=PROJECT, instance=instance)
    assert first.get_requested_partitions(AssetKey("review_labels")) == {None}
    assert first.get_num_requested(AssetKey("coin_predictions")) == 0

    for day in DAYS:
        instance.report_runless_asset_event(AssetMaterialization("gold_images", partition=day))
    instance.report_runless_asset_event(AssetMaterialization("review_labels"))
    instance.report_runless_asset_event(AssetMaterialization("promotion_decision"))
    after_promotion = evaluate_automation_conditions(defs=PROJECT, instance=instance, cursor=first.cursor)
    # every day that has gold, not only the latest, and no day without gold
    assert after_promotion.get_requested_partitions(AssetKey("coin_predictions")) == set(DAYS)
    assert after_promotion.get_requested_partitions(AssetKey("review_queue")) == set(DAYS)  # in the same run
    assert after_promotion.get_num_requested(AssetKey("review_labels")) == 0
    for asset in ("coin_predictions", "review_queue"):  # the requested runs ran
        for day in DAYS:
            instance.report_runless_asset_event(AssetMaterialization(asset, partition=day))
    quiet = evaluate_automation_conditions(defs=PROJECT, instance=instance, cursor=after_promotion.cursor)
    assert quiet.total_requested == 0

    # a later backfill of one day's predictions brings that day's review queue along
    instance.report_runless_asset_event(AssetMaterialization("coin_predictions", partition=DAYS[0]))
    after_backfill = evaluate_automation_conditions(defs=PROJECT, instance=instance, cursor=quiet.cursor)
    assert after_backfill.get_requested_partitions(AssetKey("review_queue")) == {DAYS[0]}


def test_the_automation_sensor_runs_from_the_start():
    from dagster import DefaultSensorStatus

    sensor = PROJECT.resolve_sensor_def("model_consumers_automation")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
