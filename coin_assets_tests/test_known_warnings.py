"""Loading the definitions prints none of the known Preview/Beta warnings, and the filter is narrow
(any other warning is still printed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKTREE = Path(__file__).resolve().parents[1]

PROGRAM = """
import warnings
import coin_assets.definitions
coin_assets.definitions.defs()  # what Dagster does on loading: builds assets, checks, resources
from coin_assets.defs.resources import default_resources
import dagster
warnings.warn("an unrelated preview", dagster.PreviewWarning)
warnings.warn("an unrelated beta", dagster.BetaWarning)
import logging
plan_log = logging.getLogger("dagster._core.execution.plan.active")
plan_log.warning("Blocking asset check 'gold_images:x' emitted no result in step 'gold_images_x'; "
                 "downstream step 'coin_crops' will proceed without gating on it.")
plan_log.warning("an unrelated record")
"""


@pytest.mark.servers
def test_loading_the_definitions_prints_no_known_warning_but_others_still_show(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update(COIN_ASSETS_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(WORKTREE))
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "partitions_def on an AssetCheckSpec" not in done.stderr
    assert "_create_mlflow_run_hook" not in done.stderr
    assert "an unrelated preview" in done.stderr and "an unrelated beta" in done.stderr
    assert "emitted no result" not in done.stderr and "an unrelated record" in done.stderr
