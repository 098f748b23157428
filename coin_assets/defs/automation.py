"""The sensor that evaluates the model consumers' automation conditions, running from the start
(Dagster's implicit default automation sensor starts stopped)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

model_consumers_automation = AutomationConditionSensorDefinition(
    "model_consumers_automation",
    target=AssetSelection.assets("review_labels", "coin_predictions", "review_queue"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
