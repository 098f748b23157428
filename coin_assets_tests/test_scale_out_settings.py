"""The one settings source and the scale-out wiring, without servers: no side effects on import or
load, clear errors for an incomplete scale-out profile, the Celery queue of every step by its pool, and
the workers' Celery app."""

import subprocess
import sys

import pytest
from dagster import EnvVar
from dagster._core.execution.api import create_execution_plan
from dagster_aws.s3 import S3PickleIOManager

from coin_assets.defs.executors import executor_from_settings, queue_for_step
from coin_assets.defs.resources import default_resources
from coin_assets.devtools.local_cluster import REPO_ROOT
from coin_assets.settings import Settings

SCALE_OUT = {"COIN_ASSETS_EXECUTOR": "celery", "COIN_ASSETS_S3_BUCKET": "b", "MLFLOW_TRACKING_URI": "http://mlflow:5000",
             "COIN_ASSETS_CELERY_BROKER": "redis://broker:6379/0",
             "COIN_ASSETS_REGISTRY_LOCK": "postgresql://lock@pg:5432/mlflow"}


@pytest.mark.servers
def test_importing_and_loading_the_definitions_creates_no_folder(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "COIN_ASSETS_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path),
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", "import coin_assets.definitions as d; d.defs()"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


def test_profiles_follow_the_executor_and_scale_out_puts_step_values_in_s3():
    assert "io_manager" not in default_resources(Settings.from_env({}))
    resources = default_resources(Settings.from_env(SCALE_OUT))
    io = resources["io_manager"]
    assert isinstance(io, S3PickleIOManager) and io.s3_bucket == "b" and io.s3_prefix == "coin_assets/io"
    keyed = default_resources(Settings.from_env({**SCALE_OUT, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}))
    secret = keyed["io_manager"].s3_resource.aws_secret_access_key
    assert isinstance(secret, EnvVar) and secret.env_var_name == "AWS_SECRET_ACCESS_KEY"  # by name, not value
    # a tracking server keeps its own (S3) artifact root; no local folder for artifacts
    assert resources["mlflow_registry"].artifact_root is None
    assert resources["mlflow_registry"].lock_url == "postgresql://lock@pg:5432/mlflow"


@pytest.mark.parametrize("missing, message", [
    ("COIN_ASSETS_S3_BUCKET", "COIN_ASSETS_S3_BUCKET"),
    ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    ("COIN_ASSETS_REGISTRY_LOCK", "COIN_ASSETS_REGISTRY_LOCK"),
])
def test_an_incomplete_scale_out_profile_is_refused_with_what_is_missing(missing, message):
    env = {k: v for k, v in SCALE_OUT.items() if k != missing}
    with pytest.raises(ValueError, match=message):
        default_resources(Settings.from_env(env))
    with pytest.raises(ValueError, match="expected local or scale_out"):
        default_resources(Settings.from_env({"COIN_ASSETS_PROFILE": "cloud"}))


def test_celery_queue_of_each_step_follows_its_pool():
    from coin_assets_tests.conftest import PROJECT

    executor_from_settings(Settings.from_env(SCALE_OUT))  # builds with the broker as an env source
    plan = create_execution_plan(PROJECT.resolve_job_def("training_job"))
    queues = {step.key: queue_for_step(step, "dagster", "duckdb") for step in plan.steps}
    assert queues["training_set"] == "duckdb"
    assert queues["coin_year_model"] == queues["model_evaluation"] == queues["promotion_decision"] == "dagster"


def test_celery_finds_the_worker_app_with_its_step_task():
    """`celery -A coin_assets.defs.celery_app worker` finds the module's `app` as Celery's command line does
    (built on first access, from the worker's environment) with dagster-celery's `execute_plan` task; the app
    has the broker and visibility timeout of the settings it is built from."""
    from celery.app.utils import find_app

    from coin_assets.defs import celery_app

    app = find_app("coin_assets.defs.celery_app")
    assert "execute_plan" in app.tasks
    assert app is celery_app.app  # built once
    built = celery_app.create_celery_app(Settings.from_env({**SCALE_OUT, "COIN_ASSETS_CELERY_VISIBILITY": "40"}))
    assert (built.conf.broker_url, built.conf.result_backend) == ("redis://broker:6379/0", "redis://broker:6379/0")
    assert built.conf.broker_transport_options["visibility_timeout"] == 40.0
    assert built.conf.task_acks_late and built.conf.task_default_queue == "dagster"
    assert "execute_plan" in built.tasks


def test_dagster_home_comes_from_the_settings():
    assert Settings.from_env({"DAGSTER_HOME": "/srv/dagster"}).dagster_home == "/srv/dagster"
    assert Settings.from_env({}).dagster_home is None


def test_a_pool_process_that_ran_a_step_can_be_shrunk_again():
    """Celery's pool processes ignore SIGINT; Dagster maps SIGTERM onto SIGINT's handler when a step
    ends, so SIGTERM (the autoscaler's way to stop an idle process) would be ignored for good. The
    worker app's task_postrun handler puts it back to the default."""
    import signal

    from celery.signals import task_postrun
    from dagster._utils.interrupts import capture_interrupts

    import coin_assets.defs.celery_app  # noqa: F401 - connects the handler

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a Celery pool process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with capture_interrupts():  # what a Dagster step does around its execution
            pass
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        task_postrun.send(sender=None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_the_web_app_address_comes_from_the_settings(monkeypatch):
    """`python -m coin_assets.webapp` hands Streamlit the address the settings give, not its own reads."""
    import sys

    import streamlit.web.cli as stcli

    from coin_assets.webapp import __main__ as webapp_main

    monkeypatch.setenv("COIN_ASSETS_WEBAPP_HOST", "0.0.0.0")
    monkeypatch.setenv("COIN_ASSETS_WEBAPP_PORT", "8599")
    monkeypatch.setattr(stcli, "main", lambda: 0)
    monkeypatch.setattr("sys.argv", ["python"])
    with pytest.raises(SystemExit):
        webapp_main.main()
    args = sys.argv
    assert args[args.index("--server.address") + 1] == "0.0.0.0"
    assert args[args.index("--server.port") + 1] == "8599"


def test_api_processes_share_the_cores_through_settings(monkeypatch):
    from coin_assets.serving.app import threads_for_worker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert Settings.from_env({}).api_workers == 1
    assert Settings.from_env({"COIN_ASSETS_API_WORKERS": "4"}).api_workers == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads_for_worker(1) == (8, 4) and threads_for_worker(4) == (2, 1)
