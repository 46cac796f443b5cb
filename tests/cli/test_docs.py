"""The docs say what the code does: names that exist, a README walkthrough that runs and ends
where it says, cloud examples that do not expose plain ``ws`` to the world, one statement of a
bug's status and of terms after a heal, and a logs reference that covers every key, level and
logger. (The generated reference, cli.md and http.md, is checked by test_reference.py.)"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest

from lanesync.core.dayclose import DayFigures, figures_json
from lanesync.core.feed import EventType
from lanesync.shell.logs import LOG_LEVELS
from lanesync.shell.server import JsonLines

from .helpers import Cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


def _python_text(*folders: str) -> str:
    return "\n".join(p.read_text() for f in folders for p in sorted((ROOT / f).rglob("*.py")))


def test_docs_name_only_things_that_exist() -> None:
    # `static_peers` in operations.md named a status key that never existed: every snake_case
    # name a page puts in backticks (a JSON key, a function, a test) is in the code or tests.
    code = _python_text("src")
    tests = set(re.findall(r"def (test_\w+)", _python_text("tests")))
    missing = {
        f"{page.relative_to(ROOT)}: {name}"
        for page in DOCS
        for name in re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", page.read_text())
        if name not in code and name not in tests
    }
    assert not missing, sorted(missing)


def _walkthrough() -> list[tuple[list[str], str]]:
    """The README's "Using it" block: each command (``;`` separates two on one line) with the
    comment of its line."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Using it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        code, _, comment = line.partition("#")
        for command in code.split(";"):
            argv = shlex.split(command)
            assert argv[0] == "lanesync", line
            commands.append((argv[1:], comment.strip()))
    return commands


@pytest.mark.slow  # sixteen lanesync runs: about 10 s on a loaded 2-core machine
def test_readme_walkthrough_runs_and_both_digests_end_equal(cli: Cli) -> None:
    digests: list[str] = []
    for argv, comment in _walkthrough():
        result = cli.ok(*argv)
        if argv[0] == "digest":
            digests.append(result.stdout.strip())
        if comment.startswith("{"):  # the JSON the line says it prints
            assert result.json() == json.loads(comment), (argv, result.stdout)
    assert len(digests) == 4, digests
    one_way, both_ways = digests[:2], digests[2:]
    # after the one-way exchange lane2 also holds its own certificate (README: what the digest
    # covers); the exchange back makes both the same
    assert one_way[0] != one_way[1]
    assert both_ways[0] == both_ways[1] == one_way[1]


def test_cloud_examples_serve_the_uplink_on_loopback() -> None:
    # Without --tls-cert `cloud serve` speaks plain ws: an example binding it to every interface
    # invites exposing it to the WAN without TLS (docs/how-to/cloud.md, section 2, says what to
    # do instead). A command continued with a backslash is read as one line.
    found = []
    for page in DOCS:
        for line in page.read_text().replace("\\\n", " ").splitlines():
            if "cloud serve" in line and "--listen " in line:
                host = line.split("--listen ", 1)[1].split()[0].rsplit(":", 1)[0]
                found.append((page.name, host, "--tls-cert " in line))
    assert found
    plain = [(name, host) for name, host, tls in found if not tls]
    assert plain
    assert all(host in LOOPBACK_HOSTS for _, host in plain), plain
    assert any(tls for _, _, tls in found)  # the example of section 2 facing the WAN over TLS


def test_no_bug_is_called_both_known_and_fixed() -> None:
    # cloud.md called the uplink's dial grace a known bug in section 4 and fixed in section 9;
    # its known problems are listed in one place, section 9.
    text = (ROOT / "docs/how-to/cloud.md").read_text()
    assert "known bug" not in text.lower()
    known, fixed = text.split("## 9. Known problems", 1)[1].split("Fixed since", 1)
    assert "dial grace" in fixed
    assert "dial grace" not in known


@pytest.mark.parametrize("page", ["docs/explanation/architecture.md", "docs/how-to/cloud.md"])
def test_terms_after_a_heal_are_stated_as_the_code_does(page: str) -> None:
    # core/election.py: after a heal every terminal names one leader under one term, above
    # both sides' (tests/core/test_election.py checks it). Both pages say so; neither calls
    # it a bug.
    text = " ".join((ROOT / page).read_text().split())
    assert "not agreed after a heal" not in text
    assert "known bug: terms" not in text.lower()
    assert re.search(r"after a heal[^.]*(same term|one term)[^.]*(above|higher than)", text), page


def test_logs_reference_covers_every_key_level_and_logger() -> None:
    reference = (ROOT / "docs/reference/logs.md").read_text()
    record = logging.LogRecord("lanesync.mesh", logging.WARNING, __file__, 1, "m", None, None)
    try:
        raise ValueError("for the exc key")
    except ValueError as exc:
        record.exc_info = (ValueError, exc, exc.__traceback__)
    keys = json.loads(JsonLines().format(record))
    for key in keys:
        assert f"| `{key}` |" in reference, key
    for level in LOG_LEVELS:
        assert f"| `{level}` |" in reference, level
    loggers = set(re.findall(r'getLogger\("(lanesync\.[a-z.]+)"\)', _python_text("src")))
    assert loggers
    for logger in loggers:
        assert f"`{logger}`" in reference, logger
    assert "../reference/logs.md" in (ROOT / "docs/how-to/operations.md").read_text()


def test_change_feed_docs_list_every_event_type() -> None:
    # operations.md's change-feed section is where a POS integrator learns the event types
    # (issue 18); `day_close` was sent by the lane but named nowhere in it.
    text = (ROOT / "docs/how-to/operations.md").read_text()
    section = text.split("### Follow the change feed", 1)[1].split("\n### ", 1)[0]
    first_cells = [row.split("|")[1] for row in section.splitlines() if row.startswith("| `")]
    for event_type in EventType:
        assert any(f"`{event_type.value}`" in cell for cell in first_cells), event_type
    day_close_row = next(row for row in section.splitlines() if row.startswith("| `day_close`"))
    for field in ("day", *figures_json(DayFigures())):
        assert f"`{field}`" in day_close_row, field


def test_the_readme_revokes_only_terminals_it_enrolled() -> None:
    # "Running lanes live" ended with `revoke store lane3`, a terminal the README never
    # enrolled: run as written, `error: terminal 'lane3' is not enrolled in store store-042`.
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    enrolled: set[str] = set()
    revoked = []
    for line in "\n".join(blocks).splitlines():
        argv = shlex.split(line.partition("#")[0])
        if argv[:3] == ["lanesync", "enroll", "store"]:
            enrolled.add(argv[argv.index("--terminal-id") + 1])
        if argv[:3] == ["lanesync", "revoke", "store"]:
            revoked.append(argv[3])
            assert argv[3] in enrolled, line
    assert revoked
