"""Schedules. On by default: weekly retraining and daily predictions. Off by default: the daily
ingestion sweep (the upload sensor does that work; turn it on where uploads may bypass the sensor).
Built by `build_schedules` for the jobs and daily partitions the definitions are loaded with."""

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from coin_assets.defs.jobs import Jobs
from coin_assets.defs.resources import CoinStorage


def build_schedules(jobs: Jobs, partitions: PartitionsDefinition) -> list[ScheduleDefinition]:
    """The daily ingestion sweep, daily predictions, weekly retraining and the daily archive of old bronze
    (which skips days before the first of ``partitions``)."""

    @schedule(job=jobs.ingestion_job, cron_schedule="50 23 * * *", execution_timezone="UTC",
              default_status=DefaultScheduleStatus.STOPPED,
              description="Re-materializes today's partition at 23:50 UTC, catching anything the sensor did not "
              "see.")
    def daily_ingestion_schedule(context: ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date().isoformat()
        return RunRequest(partition_key=day, run_key=f"ingest:{day}")

    @schedule(job=jobs.prediction_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING,
              description="Scores yesterday's coins with the production model at 00:30 UTC and refreshes the "
              "review queue.")
    def daily_prediction_schedule(context: ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        return RunRequest(partition_key=day, run_key=f"predict:{day}")

    @schedule(job=jobs.training_job, cron_schedule="0 3 * * 1", execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING,
              description="Weekly retraining (Monday 03:00 UTC); an unchanged training set registers no new "
              "version.")
    def weekly_retraining_schedule(context: ScheduleEvaluationContext):
        return RunRequest(run_key=f"weekly:{context.scheduled_execution_time.date().isoformat()}")

    @schedule(job=jobs.archive_job, cron_schedule="15 1 * * *", execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING,
              description="Daily at 01:15 UTC: archives the bronze of the day that just turned "
              "COIN_ASSETS_ARCHIVE_AFTER_DAYS (30) days old. Older days: backfill `archive_job`.")
    def bronze_archive_schedule(context: ScheduleEvaluationContext, storage: CoinStorage):
        day = (context.scheduled_execution_time - timedelta(days=storage.archive_after_days)).date()
        if day.isoformat() < partitions.get_first_partition_key():
            return SkipReason(f"{day} is before the first partition")
        return RunRequest(partition_key=day.isoformat(), run_key=f"archive:{day.isoformat()}")

    return [daily_ingestion_schedule, daily_prediction_schedule, weekly_retraining_schedule, bronze_archive_schedule]
