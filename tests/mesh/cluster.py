"""Real ``lanesync run`` daemons on loopback, their local HTTP API, and fault proxies.

Every daemon is a real process (``python -m lanesync run DIR --listen 127.0.0.1:0 --api
127.0.0.1:0 --no-discovery``) writing its log to a file beside the terminal directories. The
addresses it bound are read from ``TERMINAL_DIR/runtime.json`` (port 0 picks a free port), the
bearer token from ``TERMINAL_DIR/api.token``. A ``Cluster`` starts them through one
``lanesync.tools.procs.ProcessGroup``, and ``close()`` ends them all (SIGTERM, then SIGKILL after
a timeout), whatever happened.

Only loopback is ever used: the daemons bind 127.0.0.1, dial only the ``--peer`` addresses the
tests give them (127.0.0.1), and never use mDNS (``--no-discovery``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
from support import ApiGroup, ApiProcess, Cli, run_cli, wait_until

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.procs import child_env

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 30.0  # a daemon starts in ~1 s; five at once on 2 cores take a few
HTTP_TIMEOUT_S = 15.0
VALID_DAYS = 30


ENV = child_env(columns=80)


class Daemon(ApiProcess):
    """One running ``lanesync run`` process and an API client for it (``ApiProcess``)."""

    @property
    def terminal_id(self) -> str:
        return str(self.runtime["terminal_id"])

    # -- the API ----------------------------------------------------------------------------------

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.client.post(path, json=body)

    def write(self, path: str, body: Any = None) -> dict[str, Any]:
        """A write that must be acknowledged (201)."""
        response = self.post(path, body)
        assert response.status_code == 201, f"POST {path}: {response.status_code} {response.text}"
        result: dict[str, Any] = response.json()
        return result

    def sell(self, sku: str, qty: int = 1, unit_price: int | None = None) -> str:
        line: dict[str, Any] = {"sku": sku, "qty": qty}
        if unit_price is not None:
            line["unit_price"] = unit_price
        return str(self.write("/v1/sales", {"lines": [line]})["sale_id"])

    def receive(self, sku: str, qty: int) -> str:
        return str(self.write("/v1/stock/receive", {"sku": sku, "qty": qty})["record_id"])

    def set_price(self, sku: str, cents: int) -> str:
        return str(self.write("/v1/prices", {"sku": sku, "unit_price": cents})["record_id"])

    def digest(self) -> str:
        return str(self.get("/v1/digest")["digest"])

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/status")
        return result

    def verify(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/v1/verify")
        return result

    def stock(self) -> dict[str, int]:
        return {item["sku"]: item["on_hand"] for item in self.get("/v1/stock")["items"]}

    def on_hand(self, sku: str) -> int | None:
        return self.stock().get(sku)

    def peers(self) -> set[str]:
        """Terminal ids of the open peer connections."""
        return {str(p["terminal_id"]) for p in self.status()["peers"] if p["connected"]}

    def listed_peers(self) -> set[str]:
        """Terminal ids of every row of /v1/status peers, connected or not."""
        return {str(p["terminal_id"]) for p in self.status()["peers"] if p.get("terminal_id")}

    def chain_head(self, terminal: str) -> int:
        """Sequence number of ``terminal``'s last record held here (0: none)."""
        heads = {c["terminal"]: c["seq"] for c in self.verify()["chains"]}
        return int(heads.get(terminal, 0))


class Cluster(ApiGroup):
    """Store directories, terminal directories and the daemons running on them."""

    live: ClassVar[list[ApiGroup]] = []  # for the failure report hook in conftest

    def __init__(self, root: Path) -> None:
        super().__init__(
            root, env=ENV, start_timeout_s=START_TIMEOUT_S, http_timeout_s=HTTP_TIMEOUT_S
        )
        self.daemons: list[Daemon] = []

    # -- directories ------------------------------------------------------------------------------

    def store(self, name: str = "store", store_id: str = "s1") -> StoreDirectory:
        return StoreDirectory.init(self.root / name, store_id)

    def enroll(
        self, store: StoreDirectory, tid: str, role: Role = Role.CASHIER, *, dirname: str = ""
    ) -> Path:
        path = self.root / (dirname or tid)
        store.enroll(path, tid, role, wall_clock_ms(), VALID_DAYS)
        return path

    # -- processes --------------------------------------------------------------------------------

    def spawn(
        self,
        path: Path,
        peers: Iterable[str] = (),
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        """Start a daemon without waiting for it (see ``ready``); ``env`` replaces ``ENV``."""
        args = [
            "-m", "lanesync", "run", str(path),
            "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0", "--no-discovery",
        ]  # fmt: skip
        for peer in peers:
            args += ["--peer", peer]
        args += list(extra)
        daemon = self.group.spawn(path.name, path, args, cls=Daemon, env=env)
        self.daemons.append(daemon)
        return daemon

    def start(
        self,
        path: Path,
        peers: Iterable[str] = (),
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        return self.ready(self.spawn(path, peers, extra, env))

    def stocked_pair(
        self, store: StoreDirectory, price: int, received: int
    ) -> tuple[Daemon, Daemon]:
        """Manager ``a`` and cashier ``b`` (which dials ``a``), connected, with milk priced at
        ``price`` and ``received`` of it received on ``a`` and already on ``b``."""
        a = self.start(self.enroll(store, "a", Role.MANAGER))
        b = self.start(self.enroll(store, "b"), [a.listen])
        wait_connected(a, {"b"})
        a.set_price("milk", price)
        a.receive("milk", received)
        wait_until(lambda: b.on_hand("milk") == received, 15, "b got a's receipt")
        return a, b

    def start_many(self, specs: Sequence[tuple[Path, Sequence[str]]]) -> list[Daemon]:
        """Start several daemons at once (``(directory, peers)`` each) and wait for all."""
        spawned = [self.spawn(path, peers) for path, peers in specs]
        return [self.ready(daemon) for daemon in spawned]

    # -- the command line -------------------------------------------------------------------------

    def cli(self, *args: str | Path, env: dict[str, str] | None = None) -> Cli:
        return run_cli(args, env=env or ENV, cwd=self.root)

    def cli_json(self, *args: str | Path, env: dict[str, str] | None = None) -> Any:
        result = self.cli(*args, "--json", env=env)
        assert result.returncode == 0, result.describe()
        assert result.stderr == "", result.describe()
        return result.json()


# -- convergence -----------------------------------------------------------------------------------


def snapshot(daemons: Sequence[Daemon]) -> dict[str, dict[str, Any]]:
    return {d.name: {"digest": d.digest()[:16], "stock": d.stock()} for d in daemons}


def converged(daemons: Sequence[Daemon], expected: dict[str, int]) -> bool:
    """Same digest everywhere and stock on hand exactly ``expected`` everywhere."""
    digests = {d.digest() for d in daemons}
    if len(digests) != 1:
        return False
    return all({sku: d.on_hand(sku) for sku in expected} == expected for d in daemons)


def wait_converged(
    daemons: Sequence[Daemon], expected: dict[str, int], timeout: float = 30.0
) -> str:
    """Wait until every daemon holds the same state with exactly the expected stock; returns
    the common digest."""
    wait_until(
        lambda: converged(daemons, expected),
        timeout,
        lambda: (
            f"convergence to {expected}: {snapshot(daemons)}\n"
            + "\n".join(d.describe() for d in daemons)
        ),
        interval=0.1,
    )
    return daemons[0].digest()


def wait_connected(daemon: Daemon, peers: Iterable[str], timeout: float = 20.0) -> None:
    wanted = set(peers)
    wait_until(
        lambda: wanted <= daemon.peers(),
        timeout,
        lambda: (
            f"{daemon.name} connected to {sorted(wanted)}, has {sorted(daemon.peers())}\n"
            + daemon.describe()
        ),
    )


# -- fault proxies in a background event loop ------------------------------------------------------
