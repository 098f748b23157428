"""Stopping a process started in its own process group (servers, workers, `dagster dev`)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(popen: subprocess.Popen, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the group led by ``popen``, wait ``grace`` seconds for the leader, then SIGKILL
    the group: children that outlive their leader (pool processes, workers) go too."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        popen.wait(5)
    except subprocess.TimeoutExpired:
        pass
