"""A real daemon's log (docs/reference/logs.md): one JSON object per line with stable keys,
levels that mean something, and ``--log-level``.

The store revokes ``r`` while it is off; ``r`` then dials ``a``, which refuses it at every
attempt. ``a`` (default level) logs the refusal as a warning and its routine life as info; ``r``
(``--log-level warning``) logs that it is refused as revoked, an error, and no info line at all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lanesync.core.identity import Role

from .cluster import Cluster, Daemon, wait_until

pytestmark = pytest.mark.slow

KEYS = {"ts", "level", "logger", "msg"}  # and "exc" on a line that carries a traceback
LEVELS = {"debug", "info", "warning", "error"}


def log_of(daemon: Daemon) -> list[dict[str, Any]]:
    """Every line of the daemon's log, each of which must be one JSON object."""
    lines = []
    for text in daemon.log_text().splitlines():
        line = json.loads(text)
        assert isinstance(line, dict), text
        assert KEYS <= set(line) <= {*KEYS, "exc"}, text
        assert line["level"] in LEVELS, text
        assert isinstance(line["ts"], float | int), text
        # lanesync's loggers, or the libraries' own (warnings and errors only)
        assert str(line["logger"]).split(".")[0] in {"lanesync", "websockets", "uvicorn"}, text
        lines.append(line)
    return lines


def levels_of(daemon: Daemon, fragment: str) -> set[str]:
    return {str(line["level"]) for line in log_of(daemon) if fragment in str(line["msg"])}


def test_a_revoked_refusal_warns_and_log_level_warning_hides_info(cluster: Cluster) -> None:
    store = cluster.store()
    a_dir = cluster.enroll(store, "a", Role.MANAGER)
    r_dir = cluster.enroll(store, "r")
    cluster.cli_json("revoke", store.path, "r", "--via", a_dir)  # both off: through a's files
    a = cluster.start(a_dir)
    r = cluster.start(r_dir, [a.listen], extra=["--log-level", "warning"])
    wait_until(
        lambda: "error" in levels_of(r, "terminal.refused_as_revoked"),
        20,
        lambda: "r logged its refusal as revoked\n" + cluster.describe(),
    )
    # a: the refusal of a revoked terminal is a warning; its routine life is info
    assert levels_of(a, "terminal r is revoked") == {"warning"}, a.log_text()
    assert levels_of(a, "started terminal=a") == {"info"}, a.log_text()
    assert levels_of(a, "rebuilt stock and sales from") == {"info"}, a.log_text()
    # r: the peer's refusal ("refused by peer: ...") warns; being refused as revoked is an error;
    # and with --log-level warning not one info (or debug) line is written
    assert levels_of(r, "refused by peer: terminal r is revoked") == {"warning"}, r.log_text()
    assert {line["level"] for line in log_of(r)} == {"warning", "error"}, r.log_text()
    assert "started terminal=r" not in r.log_text()
    # the same start at the default level writes its routine lines
    assert cluster.stop(r) == 0
    r = cluster.start(r_dir, [a.listen])
    wait_until(lambda: levels_of(r, "started terminal=r") == {"info"}, 20, cluster.describe)
