"""Schedules. On by default: weekly retraining and daily predictions. Off by default: the daily
ingestion sweep (the upload sensor does that work; turn it on where uploads may bypass the sensor)."""

from datetime import timedelta

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from coin_assets.defs.jobs import archive_job, ingestion_job, prediction_job, training_job
from coin_assets.defs.partitions import daily_partitions
from coin_assets.defs.resources import CoinStorage


@schedule(job=ingestion_job, cron_schedule="50 23 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.STOPPED,
          description="Re-materializes today's partition at 23:50 UTC, catching anything the sensor did not see.")
def daily_ingestion_schedule(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date().isoformat()
    return RunRequest(partition_key=day, run_key=f"ingest:{day}")


@schedule(job=prediction_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Scores yesterday's coins with the production model at 00:30 UTC and refreshes the review queue.")
def daily_prediction_schedule(context: ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return RunRequest(partition_key=day, run_key=f"predict:{day}")


@schedule(job=training_job, cron_schedule="0 3 * * 1", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Weekly retraining (Monday 03:00 UTC); an unchanged training set registers no new version.")
def weekly_retraining_schedule(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"weekly:{context.scheduled_execution_time.date().isoformat()}")


@schedule(job=archive_job, cron_schedule="15 1 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Daily at 01:15 UTC: archives the bronze of the day that just turned "
          "COIN_ASSETS_ARCHIVE_AFTER_DAYS (30) days old. Older days: backfill `archive_job`.")
def bronze_archive_schedule(context: ScheduleEvaluationContext, storage: CoinStorage):
    day = (context.scheduled_execution_time - timedelta(days=storage.archive_after_days)).date()
    if day.isoformat() < daily_partitions.get_first_partition_key():
        return SkipReason(f"{day} is before the first partition")
    return RunRequest(partition_key=day.isoformat(), run_key=f"archive:{day.isoformat()}")
