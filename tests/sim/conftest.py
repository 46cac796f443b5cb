"""Fixtures and reporting of the simulator, fuzz and chaos tests.

Counts of what the fuzz tests tried are printed in the terminal summary (``fuzzcount``), so a
run states how many malformed inputs each parser survived.
"""

from __future__ import annotations

import pytest

from .fuzzcount import TRIED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    terminalreporter.section("lanesync fuzz inputs tried")
    for name, count in sorted(TRIED.items()):
        terminalreporter.write_line(f"{name}: {count}")
    terminalreporter.write_line(f"total: {sum(TRIED.values())}")
