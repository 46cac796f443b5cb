"""The ``lanesync`` command group: its help lists the commands by what they are for, and a
malformed command line gets the one-line error every other mistake gets.

click's own usage errors print a ``Usage:`` block, a ``Try ... --help`` hint and a capitalised
``Error:`` line; a script reading stderr, or a person, then gets four lines where every other
mistake gives one. Here they are ``error: <click's message>`` (exit 2, click's status for a
malformed command line); ``--help`` still prints the help. Ctrl-C in a command that does not
handle SIGINT itself (``run`` and ``cloud serve`` stop cleanly on it, exit 0) ends it with one
``error: interrupted`` line and the shell's status for SIGINT, 130 (128 + signal 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from .output import errors, one_line

# 128 + SIGINT (2): what a shell reports for a process ended by Ctrl-C.
EXIT_INTERRUPTED = 130

# The sections of ``lanesync --help``, in order: each lists its commands in this order. A
# command named in no section is listed under OTHER_SECTION (so a new command is never hidden).
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Store setup", ("store", "enroll", "revoke")),
    (
        "Selling",
        ("sell", "void", "receive", "adjust", "price", "stock", "sales", "close", "report", "days"),
    ),
    ("Sync without a network", ("export", "import", "state", "digest", "verify")),
    ("Daemon", ("run", "status", "peers")),
    ("Cloud", ("cloud",)),
    ("Tools", ("demo", "sim", "bench")),
)
OTHER_SECTION = "Other commands"
# Wide enough that no command's one-line help is cut with "...": the formatter wraps it instead.
UNTRUNCATED = 10_000


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:]


class UntruncatedGroup(click.Group):
    """A click group whose help gives each command's whole one-line help (click cuts it to the
    terminal's width with "...", mid-sentence): the lines wrap instead."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(UNTRUNCATED)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class LanesyncGroup(click.Group):
    """A click group whose help has sections and whose usage errors are one ``error:`` line."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed: dict[str, click.Command] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                listed[name] = command
        placed: set[str] = set()
        for title, names in (*SECTIONS, (OTHER_SECTION, tuple(listed))):
            rows = [
                (name, listed[name].get_short_help_str(UNTRUNCATED))
                for name in names
                if name in listed and name not in placed
            ]
            placed.update(name for name, _ in rows)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `lanesync` alone: the help, as `lanesync --help` prints it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = one_line(_lowercase_first(exc.format_message()))
            errors.print(f"error: {message}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            # click turns an interrupted prompt (EOF, Ctrl-C) into Abort
            errors.print("error: aborted", soft_wrap=True)
            sys.exit(1)
        # an explicit ``ctx.exit(code)`` comes back as the code; a finished command as None
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Caught here, before click's handler, which would print a blank line first.
            errors.print("error: interrupted", soft_wrap=True)
            sys.exit(EXIT_INTERRUPTED)
