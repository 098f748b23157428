"""Process supervision for the development tools (the launcher and the local cluster).

Two ways to keep children, one module:

- a child in its **own session** (``spawn(..., own_session=True)``, the default), its output in
  ``<log_dir>/<name>.log``: stopped with :func:`stop_process_group` (``Proc.stop``), the signal to its
  whole group, SIGKILL to the group after the grace. The local cluster's servers and workers.
- a child in **our process group** (``own_session=False``), its output where ours goes: Ctrl-C in the
  terminal reaches it with us, and :func:`stop_own_group` stops it with every other process of our tree
  and our group (grandchildren that outlived their parent included): SIGTERM, SIGKILL after the grace.
  The launcher's services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


@dataclass
class Proc:
    """A child process, its output in ``log`` (None: the parent's output)."""

    name: str
    popen: subprocess.Popen
    log: Path | None = None
    url: str | None = None

    def tail(self, lines: int = 40) -> str:
        if self.log is None:
            return ""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 8.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole group, then SIGKILL it after `grace` seconds (a child in its own session)."""
        stop_process_group(self.popen, grace, sig)


def spawn(name: str, args: list[str], log_dir: Path | None = None, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None, user: str | None = None, own_session: bool = True) -> Proc:
    """Start ``args`` as ``name``. With ``log_dir``, its output (stdout and stderr) is appended to
    ``log_dir/<name>.log`` and its stdin is /dev/null; without, it shares our terminal. ``own_session``
    puts it in a new session (its own process group); otherwise it stays in ours."""
    full_env = dict(env if env is not None else os.environ)
    where = str(cwd) if cwd else None
    if log_dir is None:
        popen = subprocess.Popen(args, env=full_env, cwd=where, start_new_session=own_session, user=user)
        return Proc(name, popen)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=full_env, cwd=where, start_new_session=own_session, user=user)
    return Proc(name, popen, log)


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None) -> None:
    """Poll ``check`` (exceptions count as not yet) until it holds; TimeoutError after ``timeout`` s,
    RuntimeError as soon as ``proc`` exits (with the tail of its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.popen.returncode}\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f"\n{proc.tail()}" if proc else ""))


# ------------------------------------------------------------------------------------- stopping

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


def own_group_members() -> list[psutil.Process]:
    """Every process of our tree, plus every process of our process group (orphaned grandchildren),
    never ourselves nor our ancestors (make, the shell)."""
    me = psutil.Process()
    keep_out = {me.pid, *(p.pid for p in me.parents())}
    found = {p.pid: p for p in me.children(recursive=True)}
    pgid = os.getpgid(0)
    for proc in psutil.process_iter():
        try:
            if proc.pid not in keep_out and proc.pid not in found and os.getpgid(proc.pid) == pgid:
                found[proc.pid] = proc
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return [p for pid, p in found.items() if pid not in keep_out]


def describe(proc: psutil.Process) -> str:
    """``pid (the first words of its command line)``."""
    try:
        return f"{proc.pid} ({' '.join(proc.cmdline()[1:4])})"
    except psutil.Error:
        return str(proc.pid)


def stop_own_group(grace: float, on_kill: Callable[[list[psutil.Process]], None] | None = None) -> None:
    """SIGTERM to every process of :func:`own_group_members`, SIGKILL after ``grace`` seconds to those
    still alive (``on_kill`` hears of them first) and to any that appeared meanwhile."""
    procs = own_group_members()
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    if alive and on_kill is not None:
        on_kill(alive)
    for proc in alive + [p for p in own_group_members() if p not in procs]:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(own_group_members(), timeout=2)
