"""The warnings every process of the platform printed on start, silenced by name, in one place.

Each filter names one warning category and the start of its message, for a feature we use on
purpose; any other warning (a new deprecation, a Pillow or DuckDB warning) is still printed.
Installed when the Dagster shell is imported (``coin_assets.defs``), i.e. in every process that
loads the definitions: the CLI, `dagster dev`'s code server, each step process.
"""

from __future__ import annotations

import logging
import re
import warnings

# (category's module, category name, message prefix as a regex, why we accept it)
KNOWN = (
    ("dagster", "PreviewWarning", r"Specifying a partitions_def on an AssetCheckSpec",
     "the ingestion checks are partitioned like their assets"),
    ("dagster", "BetaWarning", r"(Function `_create_mlflow_run_hook`|Dagster resource `mlflow_tracking`|Class `MlFlow`)",
     "dagster_mlflow's hook and resource, printed on its import and on each training run"),
    ("builtins", "UserWarning", r".*Add type hints to the `predict` method",
     "MLflow's advice on each PythonModel subclass; the photo model logs its own signature"),
)


# (logger name, message prefix as a regex, why we accept it): log records, not warnings
KNOWN_LOG_RECORDS = (
    ("dagster._core.execution.plan.active", r"Blocking asset check '[^']+' emitted no result in step",
     "logged for each blocking check of an asset a run with nothing new skipped (bronze_images yields "
     "nothing); the check's downstream steps are skipped with its asset"),
)


class _DropKnownRecords(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def silence_known_warnings() -> None:
    import importlib

    for module, name, message, _why in KNOWN:
        category = getattr(importlib.import_module(module), name, None)
        if category is not None:
            warnings.filterwarnings("ignore", message=message, category=category)
    for logger_name, message, _why in KNOWN_LOG_RECORDS:
        logger = logging.getLogger(logger_name)
        if not any(isinstance(f, _DropKnownRecords) and f.pattern.pattern == message for f in logger.filters):
            logger.addFilter(_DropKnownRecords(message))
