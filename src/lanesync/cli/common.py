"""What every ``lanesync`` command shares: path and JSON options, the one-line error
contract, and running a lane command through its daemon when one holds the directory."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from lanesync.core.records import Body, Record
from lanesync.core.views import Views
from lanesync.errors import EXIT_STORAGE_FAILED, LanesyncError, StorageError
from lanesync.shell.logs import DEFAULT_LOG_LEVEL, LOG_LEVELS
from lanesync.shell.runtime import DaemonClient
from lanesync.shell.terminal import Terminal

from .output import console, emit_json, errors, one_line

if TYPE_CHECKING:
    from lanesync.shell.mesh import Collaborators

P = ParamSpec("P")
R = TypeVar("R")
DIR = click.Path(path_type=Path, file_okay=False)
FILE_IN = click.Path(path_type=Path, dir_okay=False, exists=True, readable=True)
FILE_OUT = click.Path(path_type=Path, dir_okay=False, writable=True)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
LOG_LEVEL_OPTION = click.option(
    "--log-level",
    type=click.Choice(list(LOG_LEVELS)),
    default=DEFAULT_LOG_LEVEL,
    show_default=True,
    help="Log from this level up (JSON lines on stderr; docs/reference/logs.md).",
)
# The values of shell.eventloop.LoopChoice and its DEFAULT_LOOP, spelled out so the CLI starts
# without importing asyncio (tests/shell/test_eventloop.py holds them equal).
LOOP_OPTION = click.option(
    "--loop",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="asyncio",
    show_default=True,
    envvar="LANESYNC_LOOP",
    help="Event loop: asyncio's own, uvloop, or auto (uvloop when installed). Default from the "
    "environment variable LANESYNC_LOOP, else asyncio.",
)
DEFAULT_VALID_DAYS = 5 * 365  # lanes are replaced every few years; renew before that


def serves_until_storage_fails(func: Callable[P, R]) -> Callable[P, R]:
    """For ``run`` and ``cloud serve``: a storage failure, which stops them, exits with
    ``EXIT_STORAGE_FAILED`` (one ``error:`` line), the status a supervisor restarts on."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except StorageError as exc:
            errors.print(f"error: {one_line(str(exc))}", soft_wrap=True)
            sys.exit(EXIT_STORAGE_FAILED)

    return wrapper


def handed_collaborators() -> Collaborators:
    """What the caller handed a serving command (``run``, ``cloud serve``) through click's
    context object: only the benchmark's lane driver does (cli.bench_lane); else the defaults."""
    from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators

    handed = click.get_current_context().find_object(Collaborators)
    return DEFAULT_COLLABORATORS if handed is None else handed


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every lanesync error into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LanesyncError as exc:
            errors.print(f"error: {one_line(str(exc))}", soft_wrap=True)
            sys.exit(1)
        except OSError as exc:
            why = str(exc.strerror or exc)
            why = why[:1].lower() + why[1:]
            where = f"{exc.filename}: " if exc.filename else ""  # none for a socket, say
            errors.print(f"error: {one_line(where + why)}", soft_wrap=True)
            sys.exit(1)

    return wrapper


def daemon_client(terminal_dir: Path) -> DaemonClient | None:
    return DaemonClient.for_directory(terminal_dir)


def write_offline(terminal_dir: Path, build: Callable[[Views], Body]) -> Record:
    with Terminal.open(terminal_dir) as terminal:
        return terminal.write(build)


def print_record(result: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print(f"{what} {result['record_id']}", markup=False)
