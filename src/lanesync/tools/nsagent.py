"""Reach daemons' local APIs from inside a network namespace.

Each daemon's API listens on 127.0.0.1 *inside its own namespace*, so the test cannot call it
directly. This module runs there (``ip netns exec NS python -m lanesync.tools.nsagent``) and
serves one JSON request per stdin line, one JSON answer per stdout line, until its stdin ends::

    {"dir": TERMINAL_DIR, "method": "GET", "path": "/v1/peers", "body": null}
    -> {"status": 200, "body": {...}, "t": <time.monotonic() when answered>}
    -> {"error": "..."} when no daemon answers

It reads TERMINAL_DIR/runtime.json and api.token for every request (a restarted daemon has a
new port), and imports nothing else of lanesync, so it starts in a few tens of milliseconds.
CLOCK_MONOTONIC is shared by every namespace, so ``t`` can be compared with the test's clock.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TIMEOUT_S = 10.0


def call(request: dict[str, Any]) -> dict[str, Any]:
    directory = Path(request["dir"])
    try:
        runtime = json.loads((directory / "runtime.json").read_text())
        token = (directory / "api.token").read_text().strip()
    except (OSError, ValueError) as exc:
        return {"error": f"no runtime info: {exc}"}
    body = request.get("body")
    http = urllib.request.Request(  # noqa: S310 - the daemon's own http:// API on loopback
        str(runtime["api"]) + request["path"],
        data=None if body is None else json.dumps(body).encode(),
        method=request.get("method", "GET"),
    )
    http.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        http.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(http, timeout=TIMEOUT_S) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "pid": runtime.get("pid")}
    try:
        decoded = json.loads(payload)
    except ValueError:
        decoded = payload.decode(errors="replace")
    return {"status": status, "body": decoded, "pid": runtime.get("pid")}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        answer = call(json.loads(line))
        answer["t"] = time.monotonic()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
