"""Processes started for the tests, ``lanesync bench`` and ``lanesync demo``: one harness.

A ``ProcessGroup`` starts ``python ARGS`` processes (``lanesync run``, ``lanesync cloud
serve``, a benchmark baseline, a test's helper), each with its own log file in the group's
directory (``NAME.RUN.log``: a restarted process gets a new one, so the logs of a crash and of
its restart stay apart). It remembers every process it started and ``close()`` ends them all,
whatever happened: SIGTERM to every one still running, then SIGKILL to whatever has not exited
by one shared deadline. It only ever signals the pids it started itself.

A ``Proc`` is one such process. ``wait_ready()`` waits until it wrote ``DIR/runtime.json``
(lanesync's daemons and the benchmark baselines do, once they listen) with its own pid: a file
left behind by a killed predecessor does not count. ``describe()`` gives its name, whether it
runs or how it exited, and the tail of its log: what a failure report needs.

This module imports nothing from lanesync but its errors, so that the tests, the benchmarks
and the CLI can all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from lanesync.errors import ProcessFailed

# Every process here shuts down in well under a second (a daemon flushes its journal and closes
# its sockets); ten seconds only matters on a box so loaded that the test would time out anyway.
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 80
POLL_S = 0.05
RUNTIME_FILE = "runtime.json"
TOKEN_FILE = "api.token"  # noqa: S105 - the name of the file, not a token
# Proxy settings would send the processes' loopback (or test-network) traffic elsewhere; a
# caller that wants a proxy sets one itself.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy")
COLOUR_VARIABLES = ("FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE")
PR_SET_PDEATHSIG = 1  # linux/prctl.h

P = TypeVar("P", bound="Proc")
Wrap = Callable[[Sequence[str]], list[str]]


def child_env(columns: int | None = None) -> dict[str, str]:
    """The environment for processes under a harness: this process's own (so that coverage's
    ``patch = subprocess`` variable reaches them) without proxy variables or colour switches,
    UTF-8 output, no bytecode files written, and with ``columns`` a fixed terminal width so rich
    output wraps the same everywhere."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"})
    if columns is not None:
        env["COLUMNS"] = str(columns)
    for name in COLOUR_VARIABLES:
        env.pop(name, None)
    return env


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, for failure reports."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies, whatever way it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(eq=False)
class Proc:
    """One process a ``ProcessGroup`` started: ``python *args``, logging to ``log_path``, with
    its working directory ``path`` (where it writes runtime.json, if it does)."""

    name: str
    path: Path
    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[Any]
    where: str = ""  # where it runs, when not simply on this host ("in namespace X")
    started: float = 0.0  # time.monotonic() just before the spawn
    started_ns: int = 0  # time.time_ns() just before the spawn
    runtime: dict[str, Any] = field(default_factory=dict)
    # How it was launched, for ``ProcessGroup.restart``: its own environment (None: the
    # group's) and the wrapper of its command.
    env: Mapping[str, str] | None = field(default=None, repr=False)
    wrap: Wrap | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def state(self) -> str:
        code = self.process.poll()
        return "running" if code is None else f"exited {code}"

    def describe(self) -> str:
        where = f" {self.where}" if self.where else ""
        return (
            f"--- {self.name}{where} ({self.state()}) {self.log_path.name} ---\n"
            f"{tail(self.log_path)}"
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def read_token(self) -> str:
        """The bearer token of its HTTP API (lanesync's ``DIR/api.token``)."""
        return (self.path / TOKEN_FILE).read_text().strip()

    # -- readiness ------------------------------------------------------------------------------

    def read_runtime(self) -> dict[str, Any] | None:
        """Its own runtime.json (the pid must be its own), or None while there is none; raises
        ``ProcessFailed`` once it has exited."""
        if not self.alive():
            raise ProcessFailed(
                f"{self.name} exited with {self.process.returncode} while starting\n"
                + self.describe()
            )
        try:
            info = json.loads((self.path / RUNTIME_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or info.get("pid") != self.pid:
            return None
        self.runtime = info
        return info

    def _not_started(self, within_s: float) -> ProcessFailed:
        return ProcessFailed(
            f"{self.name} did not start within {within_s:.0f} s\n{self.describe()}"
        )

    def wait_ready(self, within_s: float) -> dict[str, Any]:
        """Wait until it wrote its runtime.json (see ``read_runtime``); returns its content."""
        deadline = time.monotonic() + within_s
        while (info := self.read_runtime()) is None:
            if time.monotonic() >= deadline:
                raise self._not_started(within_s)
            time.sleep(POLL_S)
        return info

    async def wait_ready_async(self, within_s: float) -> dict[str, Any]:
        """``wait_ready`` for an event loop: polls without blocking it."""
        deadline = time.monotonic() + within_s
        while (info := self.read_runtime()) is None:
            if time.monotonic() >= deadline:
                raise self._not_started(within_s)
            await asyncio.sleep(POLL_S)
        return info

    # -- ending it ------------------------------------------------------------------------------

    def send(self, sig: int) -> None:
        """Send ``sig`` if it still runs (and has not been reaped: its pid is still its own)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send ``sig`` and wait for the exit code. One that ignores it for ``timeout`` is
        killed, and ``ProcessFailed`` says so with ``describe()``."""
        self.send(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessFailed(
                f"{self.name} ignored signal {sig} for {timeout:.0f} s\n{self.describe()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL: nothing in the process gets to run (no shutdown, no flush)."""
        self.send(signal.SIGKILL)
        return self.process.wait(STOP_TIMEOUT_S)


def end_all(processes: Iterable[subprocess.Popen[Any]], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM every process still running, then SIGKILL whatever is not gone by one shared
    deadline, and close their pipes. One SIGTERM only: a second one during a clean shutdown
    would cut it short."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class ProcessGroup:
    """Every process started for one test, benchmark run or demo; ``close()`` ends them all.

    ``env`` (default ``child_env()``) and ``cwd`` apply to every process unless ``spawn`` is
    given its own; with ``die_with_parent`` the kernel also SIGKILLs them when this process dies
    without closing the group (Linux ``PR_SET_PDEATHSIG``)."""

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = dict(env) if env is not None else child_env()
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.procs: list[Proc] = []
        self._runs: dict[str, int] = {}

    @overload
    def spawn(
        self,
        name: str,
        path: Path,
        args: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        wrap: Wrap | None = None,
        where: str = "",
        pipes: bool = False,
    ) -> Proc: ...

    @overload
    def spawn(
        self,
        name: str,
        path: Path,
        args: Sequence[str | Path],
        *,
        cls: type[P],
        env: Mapping[str, str] | None = None,
        wrap: Wrap | None = None,
        where: str = "",
        pipes: bool = False,
    ) -> P: ...

    def spawn(
        self,
        name: str,
        path: Path,
        args: Sequence[str | Path],
        *,
        cls: type[Proc] = Proc,
        env: Mapping[str, str] | None = None,
        wrap: Wrap | None = None,
        where: str = "",
        pipes: bool = False,
    ) -> Proc:
        """Start ``python *args`` as ``name`` (working on directory ``path``) without waiting
        for it. ``wrap`` turns the command into the one to run (``ip netns exec NS ...``: it
        must exec the command, so that the pid is the command's own). With ``pipes`` its stdin
        and stdout are pipes (a helper spoken to line by line), stderr goes to the log;
        otherwise stdin is /dev/null and both outputs go to the log."""
        run = self._runs[name] = self._runs.get(name, 0) + 1
        log_path = self.root / f"{name}.{run}.log"
        argv = [sys.executable, *(str(a) for a in args)]
        command = wrap(argv) if wrap is not None else argv
        started, started_ns = time.monotonic(), time.time_ns()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log if pipes else subprocess.STDOUT,
                env=dict(env) if env is not None else self.env,
                cwd=self.cwd,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        proc = cls(name, path, tuple(argv[1:]), log_path, process, where, started, started_ns)
        proc.env, proc.wrap = env, wrap
        self.procs.append(proc)
        return proc

    def restart(
        self, proc: P, *, kill: bool = False, args: Sequence[str | Path] | None = None
    ) -> P:
        """End ``proc`` if it still runs (``stop``, or SIGKILL with ``kill``: a crash) and start
        it again: the same name, directory, environment and arguments (unless given new ones),
        and a new log file. It may bind new ports: read them from the runtime of the returned
        ``Proc`` once it is ready."""
        if kill:
            proc.kill()
        else:
            proc.stop()
        return self.spawn(
            proc.name,
            proc.path,
            proc.args if args is None else args,
            cls=type(proc),
            env=proc.env,
            wrap=proc.wrap,
            where=proc.where,
        )

    def pids(self) -> list[int]:
        """The pids of the processes still running."""
        return [proc.pid for proc in self.procs if proc.alive()]

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End every process this group started (see ``end_all``)."""
        end_all((proc.process for proc in self.procs), timeout)

    def describe(self) -> str:
        return "\n".join(proc.describe() for proc in self.procs)
