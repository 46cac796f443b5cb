"""The event loop of the long-running processes (``lanesync run``, ``lanesync cloud serve``):
the one place that picks it.

``asyncio`` (the default) is the stdlib loop; ``uvloop`` is uvloop (libuv under asyncio's
interface), and a ``UsageError`` before anything starts where it is not installed; ``auto`` is
uvloop when installed, else the stdlib loop. uvloop is a dependency only where it is supported
(pyproject: not on Windows, CPython only). Everything the processes do runs on either loop
(signal handlers, sockets, the uvicorn API); the suite runs two daemons end to end on both
(tests/mesh/test_api.py).

Why the stdlib loop is the default (``DEFAULT_LOOP``): uvloop did not pay. ``lanesync bench mesh
--lanes 8 --rate 200``, six runs of each loop interleaved on 2026-12-07 (benchmarks/README.md,
"The event loop"), measured the same CPU per sale (5.37 ms asyncio, 5.44 ms uvloop, medians) and
latencies within the run-to-run spread: a lane's time goes to SQLite, signatures and the CRDT,
not to the loop.

The option's default comes from the environment variable ``LANESYNC_LOOP`` (``LOOP_ENV``), so a
benchmark that starts lanes as child processes chooses their loop without a flag of its own.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from lanesync.errors import UsageError

T = TypeVar("T")

LOOP_ENV = "LANESYNC_LOOP"


class LoopChoice(enum.StrEnum):
    AUTO = "auto"
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


DEFAULT_LOOP = LoopChoice.ASYNCIO  # uvloop measured no gain (the module's docstring)


@dataclass(frozen=True, slots=True)
class EventLoop:
    """The loop chosen: its name for the logs, and the factory ``asyncio.Runner`` calls."""

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop]


def choose_loop(choice: LoopChoice) -> EventLoop:
    """The loop ``choice`` asks for; ``UsageError`` when it asks for uvloop and that is not
    installed."""
    if choice is not LoopChoice.ASYNCIO:
        try:
            import uvloop
        except ImportError:
            if choice is LoopChoice.UVLOOP:
                raise UsageError(
                    "event loop uvloop (--loop or LANESYNC_LOOP) is not installed: "
                    "pip install uvloop, or use auto or asyncio"
                ) from None
        else:
            return EventLoop(_uvloop_name(), uvloop.new_event_loop)
    return EventLoop("asyncio", asyncio.new_event_loop)


def running_loop_name() -> str:
    """What runs the calling coroutine, for a start line: ``uvloop X.Y.Z`` or ``asyncio``."""
    module = type(asyncio.get_running_loop()).__module__
    return _uvloop_name() if module.partition(".")[0] == "uvloop" else "asyncio"


def _uvloop_name() -> str:
    # uvloop's __version__ is not in its stubs' exports; the installed distribution's is the same.
    return f"uvloop {metadata.version('uvloop')}"


def loop_choice_from_env() -> LoopChoice:
    """``LANESYNC_LOOP`` as a choice (unset: ``DEFAULT_LOOP``); another value is a
    ``UsageError``."""
    text = os.environ.get(LOOP_ENV, DEFAULT_LOOP.value)
    try:
        return LoopChoice(text)
    except ValueError:
        allowed = ", ".join(c.value for c in LoopChoice)
        raise UsageError(f"{LOOP_ENV}={text!r}: expected one of {allowed}") from None


def run_on(loop: EventLoop, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on ``loop`` (Python 3.11's ``asyncio.run`` takes no loop factory;
    ``asyncio.Runner`` does, and cleans up the same way)."""
    with asyncio.Runner(loop_factory=loop.factory) as runner:
        return runner.run(main)
