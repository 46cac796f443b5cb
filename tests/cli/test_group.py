"""The ``lanesync`` group (cli/group.py): one ``error:`` line for a malformed command line, help
in sections with whole one-line helps, and ``--json`` on every command that prints."""

from __future__ import annotations

import errno
import re

import click
import pytest
from click.testing import CliRunner

from lanesync.cli.common import reports_errors
from lanesync.cli.group import OTHER_SECTION, SECTIONS
from lanesync.cli.main import cli as click_group

from .conftest import Shop
from .helpers import Cli, assert_usage_error

# The two commands that print no result to read: they serve until stopped, and what they print
# is their log (JSON lines on stderr, docs/reference/logs.md). The README names them.
NO_JSON = {("run",), ("cloud", "serve")}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(("frobnicate",), "error: no such command 'frobnicate'", id="unknown-command"),
        pytest.param(("sell", "lane1"), "error: missing argument 'LINES...'", id="missing-arg"),
        pytest.param(("stock", "lane1", "--colour"), "error: no such option", id="bad-option"),
        pytest.param(
            ("receive", "lane1", "milk", "ten"),
            "error: invalid value for 'QTY': 'ten' is not a valid integer",
            id="bad-value",
        ),
        pytest.param(("cloud", "stock"), "error: missing argument 'CLOUD_DIR'", id="subgroup"),
        pytest.param(("store", "init", "s"), "error: missing option '--store-id'", id="nested"),
        pytest.param(("cloud", "nope"), "error: no such command 'nope'", id="subgroup-command"),
    ],
)
def test_usage_errors_are_one_error_line_and_exit_2(
    shop: Shop, args: tuple[str, ...], says: str
) -> None:
    result = shop.cli.run(*args)
    assert_usage_error(result, says)
    assert "Usage:" not in result.stderr
    assert "--help" not in result.stderr


def test_help_still_prints_help(cli: Cli) -> None:
    for args in (("--help",), ("sell", "--help"), ("cloud", "-h")):
        result = cli.ok(*args)
        assert result.stdout.startswith("Usage: "), result.describe()


def _sections(help_text: str) -> dict[str, list[str]]:
    """The command names listed under each section heading of a help text."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and (found := re.match(r"  (\S+)  ", line)):
            current.append(found[1])
    return sections


def test_help_groups_the_commands_in_sections(cli: Cli) -> None:
    shown = _sections(cli.ok("--help").stdout)
    titles = [title for title, _ in SECTIONS]
    assert [t for t in shown if t != "Options"] == titles  # in this order; no "Other commands"
    assert OTHER_SECTION not in shown
    assert shown["Store setup"] == ["store", "enroll", "revoke"]
    assert shown["Selling"][:6] == ["sell", "void", "receive", "adjust", "price", "stock"]
    assert shown["Sync without a network"] == ["export", "import", "state", "digest", "verify"]
    assert shown["Daemon"] == ["run", "status", "peers"]
    assert shown["Cloud"] == ["cloud"]
    assert shown["Tools"] == ["demo", "sim", "bench"]
    listed = [name for title in titles for name in shown[title]]
    assert sorted(listed) == sorted(n for n, c in click_group.commands.items() if not c.hidden)


def test_a_command_in_no_section_is_still_listed() -> None:
    @click.command("extra")
    def extra() -> None:
        """An extra command."""

    click_group.add_command(extra)
    try:
        result = CliRunner().invoke(click_group, ["--help"], prog_name="lanesync")
    finally:
        del click_group.commands["extra"]
    assert _sections(result.output)[OTHER_SECTION] == ["extra"]


def _help_paths() -> list[tuple[str, ...]]:
    paths = [()]
    paths += [(name,) for name, c in click_group.commands.items() if isinstance(c, click.Group)]
    return paths


@pytest.mark.parametrize("path", _help_paths(), ids=lambda p: " ".join(p) or "lanesync")
def test_one_line_helps_are_whole(path: tuple[str, ...]) -> None:
    # click cuts a command's help to the width with "..."; here every one is whole, wrapped.
    result = CliRunner().invoke(click_group, [*path, "--help"], prog_name="lanesync")
    assert result.exit_code == 0, result.output
    group = click_group if not path else click_group.commands[path[0]]
    assert isinstance(group, click.Group)
    flat = " ".join(result.output.split())
    for command in group.commands.values():
        if not command.hidden:
            assert " ".join(command.get_short_help_str(10_000).split()) in flat, command.name


def _leaf_commands(group: click.Group, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_command_that_prints_a_result_has_json() -> None:
    missing = []
    for path in _leaf_commands(click_group, ()):
        command: click.Command = click_group
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if not any("--json" in p.opts for p in command.params if isinstance(p, click.Option)):
            missing.append(path)
    assert set(missing) == NO_JSON


def test_state_json(shop: Shop) -> None:
    assert shop.cli.json("state", "lane1", "lane1.state") == {
        "state_file": "lane1.state",
        "bytes": shop.path("lane1.state").stat().st_size,
    }
    assert shop.cli.ok("state", "lane1", "again.state").text == "wrote again.state"
    assert shop.path("again.state").read_bytes() == shop.path("lane1.state").read_bytes()


def test_lanesync_alone_prints_the_help(cli: Cli) -> None:
    # no command at all is not a mistake to explain in one line: the help says what there is
    result = cli.run()
    assert result.returncode == 2, result.describe()
    assert result.stderr.startswith("Usage: "), result.describe()
    assert "Store setup:" in result.stderr


def test_an_aborted_command_is_one_error_line() -> None:
    # click raises Abort for an interrupted prompt (EOF or Ctrl-C while it reads input)
    @click.command("prompting")
    def prompting() -> None:
        raise click.Abort

    click_group.add_command(prompting)
    try:
        result = CliRunner().invoke(click_group, ["prompting"], prog_name="lanesync")
    finally:
        del click_group.commands["prompting"]
    assert (result.exit_code, result.output) == (1, "error: aborted\n")


def test_an_os_error_without_a_file_is_one_plain_error_line() -> None:
    # a socket's error has no file name: it once printed "error:: Address already in use"
    @click.command("failing")
    @reports_errors
    def failing() -> None:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    click_group.add_command(failing)
    try:
        result = CliRunner().invoke(click_group, ["failing"], prog_name="lanesync")
    finally:
        del click_group.commands["failing"]
    assert (result.exit_code, result.output) == (1, "error: address already in use\n")
