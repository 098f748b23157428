"""Start long-running processes together and stop all of them within seconds.

    python -m coin_assets.launcher [--grace 5] -- dagster dev -h 127.0.0.1 -p 3000 [-- other command ...]

Each command runs in its own process group. Ctrl-C or SIGTERM to the launcher is forwarded to every
group as SIGTERM; whatever is still alive after ``--grace`` seconds is killed with SIGKILL (dagster
dev's webserver, daemon and code servers otherwise take close to a minute). When one command exits,
the others are stopped the same way and the launcher exits with its status.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def _split_commands(argv: Sequence[str]) -> list[list[str]]:
    commands, current = [], []
    for arg in argv:
        if arg == "--":
            if current:
                commands.append(current)
            current = []
        else:
            current.append(arg)
    if current:
        commands.append(current)
    return commands


class Group:
    def __init__(self, commands: list[list[str]], grace: float):
        self.grace = grace
        self.procs = [subprocess.Popen(cmd, start_new_session=True) for cmd in commands]

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def _groups_alive(self) -> bool:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 0)
                return True
            except ProcessLookupError:
                continue
            except PermissionError:
                return True
        return False

    def stop(self) -> None:
        """SIGTERM every group, SIGKILL what is left after the grace period; reap the children."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            for proc in self.procs:
                proc.poll()
            if not self._groups_alive():
                break
            time.sleep(0.1)
        self._signal_all(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def wait_first(self) -> int:
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    return proc.returncode
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m coin_assets.launcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    args = parser.parse_args(argv[:split])
    commands = _split_commands(argv[split:])
    if not commands:
        parser.error("no command given after --")
    group = Group(commands, args.grace)

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        code = group.wait_first()
    except KeyboardInterrupt:
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        group.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
