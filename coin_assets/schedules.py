"""Schedules. The upload sensor is on by default; this daily sweep is off by default (turn it on
where uploads may bypass the sensor, e.g. bulk copies into S3)."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from coin_assets.jobs import ingestion_job


@schedule(
    job=ingestion_job,
    cron_schedule="50 23 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Re-materializes today's partition at 23:50 UTC, catching anything the sensor did not see.",
)
def daily_ingestion_schedule(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date().isoformat()
    return RunRequest(partition_key=day, run_key=f"daily:{day}")
