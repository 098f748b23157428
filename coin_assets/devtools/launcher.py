"""One command for the whole platform: dagster dev, the API, the worker(s) and the web app.

    python -m coin_assets.devtools.launcher [--grace 5] [--no-dagster]            # the platform (make demo)
    python -m coin_assets.devtools.launcher [--grace 5] -- CMD ARGS [-- CMD ...]  # any commands, same handling

Every service runs as a child in the launcher's process group. The launcher prints the URLs and, on
Ctrl-C / SIGTERM / SIGHUP (or when any service exits), stops them all: SIGTERM to every process of
its tree and of its group, then SIGKILL to whatever is still alive after the grace, so nothing
outlives the command (dagster dev's webserver, daemon and code server included). The process handling
is coin_assets.devtools.supervisor's (children in our group, ``stop_own_group``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from coin_assets.devtools.supervisor import Proc, describe, port_open, spawn, stop_own_group
from coin_assets.settings import Settings

GRACE_SECONDS = 5.0


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str | None = None
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)


SERVICE_KINDS = ("dagster", "api", "worker", "webapp")


def first_upload_day(settings: Settings) -> str | None:
    """The oldest ``uploads/<YYYY-MM-DD>`` folder: where daily partitions start unless configured."""
    uploads = settings.data_root / "uploads"
    if not uploads.is_dir():
        return None
    days = sorted(p.name for p in uploads.iterdir() if p.is_dir() and len(p.name) == 10 and p.name[4] == "-")
    return days[0] if days else None


def services(settings: Settings, python: str = sys.executable, with_dagster: bool = True,
             only: set[str] | None = None) -> list[Service]:
    host = settings.api_host
    out = []
    if with_dagster:
        start = {} if "COIN_ASSETS_START_DATE" in os.environ else {"COIN_ASSETS_START_DATE": first_upload_day(settings)}
        out.append(Service("dagster", [python, "-m", "dagster", "dev", "-h", host, "-p", str(settings.dagster_port)],
                           f"http://{host}:{settings.dagster_port}", settings.dagster_port,
                           {k: v for k, v in start.items() if v}))
    out.append(Service("api", [python, "-m", "coin_assets.serving", "--host", host, "--port", str(settings.api_port)],
                       f"http://{host}:{settings.api_port}/docs", settings.api_port))
    for i in range(max(0, settings.workers)):
        out.append(Service(f"worker-{i + 1}", [python, "-m", "coin_assets.serving.worker", "--name", f"worker-{i + 1}"]))
    out.append(Service("webapp", [python, "-m", "coin_assets.webapp"], f"http://{host}:{settings.webapp_port}",
                       settings.webapp_port, {"COIN_ASSETS_WEBAPP_PORT": str(settings.webapp_port),
                                              "COIN_ASSETS_WEBAPP_HOST": host}))
    if only is not None:
        out = [svc for svc in out if svc.name.split("-")[0] in only]
    return out


def stop_all(grace: float = GRACE_SECONDS) -> None:
    """Every process of our tree and our group: SIGTERM, SIGKILL to what is left after ``grace`` s."""

    def report(alive):
        print(f"still running after {grace:g} s, killed: {', '.join(describe(p) for p in alive)}", flush=True)

    stop_own_group(grace, on_kill=report)


def prepare(settings: Settings, register_base: bool = False) -> None:
    """Create the MLflow database and the request store once, before the services start: several
    processes creating a fresh MLflow SQLite database at the same moment race on its migrations. With
    ``register_base``, an instance with no model yet gets the base version (the committed year reader) as
    production, so the API answers from its first minute."""
    from mlflow import MlflowClient

    from coin_assets.serving.queue import batch_requests  # noqa: F401  (registers the batch table)
    from coin_assets.serving.store import RequestStore

    settings.data_root.mkdir(parents=True, exist_ok=True)
    MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri).search_experiments(max_results=1)
    store = RequestStore(settings.serving_db)
    store.create_tables()
    store.dispose()
    if register_base:
        from coin_assets.cli import materialize_base_version

        version = materialize_base_version()
        if version:
            print(f"registered the committed year reader as v{version} (production) of the model", flush=True)


def run(settings: Settings, with_dagster: bool = True, grace: float = GRACE_SECONDS,
        only: set[str] | None = None, commands: list[list[str]] | None = None) -> int:
    """Start the platform (or ``commands``) and keep it up until a signal or a service's exit."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    # Children import this checkout's package, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    procs: dict[str, Proc] = {}
    if commands:
        wanted = [Service(f"{i + 1}:{Path(cmd[0]).name}", cmd) for i, cmd in enumerate(commands)]
    else:
        wanted = services(settings, with_dagster=with_dagster, only=only)
        prepare(settings, register_base=with_dagster)
    try:
        for svc in wanted:
            procs[svc.name] = spawn(svc.name, svc.argv, env={**env, **svc.env}, cwd=None if commands else root,
                                    own_session=False)
        print("coin_assets platform starting:" if not commands else "coin_assets launcher started:", flush=True)
        for svc in wanted:
            if svc.url:
                print(f"  {svc.name:8s} {svc.url}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        announced: set[str] = set()
        while stopping["signal"] is None:
            for name, proc in procs.items():
                if proc.popen.poll() is not None:
                    print(f"{name} exited with code {proc.popen.returncode}: stopping the platform", flush=True)
                    return proc.popen.returncode if commands else 1
            for svc in wanted:
                if svc.port and svc.name not in announced and port_open(svc.port, timeout=0.2):
                    announced.add(svc.name)
                    print(f"  ready: {svc.name} {svc.url}", flush=True)
            time.sleep(0.2)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        stop_all(grace)
        print("coin_assets platform stopped.", flush=True)


def split_commands(argv: list[str]) -> tuple[list[str], list[list[str]]]:
    """``[opts] -- a b -- c`` → (opts, [[a, b], [c]])."""
    if "--" not in argv:
        return argv, []
    first = argv.index("--")
    commands: list[list[str]] = [[]]
    for arg in argv[first + 1:]:
        if arg == "--":
            commands.append([])
        else:
            commands[-1].append(arg)
    return argv[:first], [c for c in commands if c]


def main(argv: list[str] | None = None) -> int:
    import argparse

    options, commands = split_commands(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog="python -m coin_assets.devtools.launcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-dagster", action="store_true", help="only the API, the worker(s) and the web app")
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated services to start, among {', '.join(SERVICE_KINDS)} (default: all)")
    args = parser.parse_args(options)
    only = None
    if args.only:
        only = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = only - set(SERVICE_KINDS)
        if unknown:
            parser.error(f"unknown services {sorted(unknown)}; choose among {', '.join(SERVICE_KINDS)}")
    return run(Settings.from_env(), with_dagster=not args.no_dagster, grace=args.grace, only=only, commands=commands)


if __name__ == "__main__":
    sys.exit(main())
