"""Real ``lanesync run`` daemons with mDNS discovery, inside a private test network.

A ``Lan`` owns a store (with a store id unique to the test, so that no other daemon on this
machine can ever be mistaken for one of ours), its terminal directories, the daemons and one
API agent per host (``lanesync/tools/nsagent.py``: each daemon's API listens on 127.0.0.1
inside its own namespace). Daemons inside namespaces listen on 0.0.0.0 there (the namespace is
isolated); daemons in the host's own namespace are only ever started on loopback (lanesync
then binds mDNS to 127.0.0.1 only). The daemons are started through one
``lanesync.tools.procs.ProcessGroup`` (inside a namespace with ``ip netns exec``, which execs
the daemon: the pid is the daemon's own). ``Lan.close()`` stops everything; the ``TestNet``
behind it ends whatever is left and removes the namespaces.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from support import Cli, run_cli, wait_until

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.netns import ApiAgent, Host
from lanesync.tools.procs import Proc, ProcessGroup, child_env

HERE = Path(__file__).resolve().parent
QUICK_DAEMON = HERE / "quick_daemon.py"
START_TIMEOUT_S = 30.0
VALID_DAYS = 30


ENV = child_env(columns=120)


@dataclass(eq=False)
class LanDaemon(Proc):
    """One ``lanesync run`` process (through ``quick_daemon.py`` unless told otherwise), on
    ``host``, of ``lan`` (both set by ``Lan.spawn``)."""

    lan: Lan | None = None
    host: Host | None = None

    @property
    def agent(self) -> ApiAgent:
        assert self.lan is not None
        assert self.host is not None
        return self.lan.agent(self.host)

    @property
    def terminal_id(self) -> str:
        return str(self.runtime["terminal_id"])

    @property
    def port(self) -> int:
        return int(str(self.runtime["listen"]).rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        """How peers should reach it: ws://<its address in the test network>:<port>."""
        assert self.host is not None
        address = self.host.address if self.host.ns is not None else "127.0.0.1"
        return f"ws://{address}:{self.port}"

    # -- the API, through the host's agent --------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return self.agent.call(self.path, method, path, body)

    def get(self, path: str) -> Any:
        answer = self.api("GET", path)
        if answer.get("status") != 200:
            raise AssertionError(f"{self.name} GET {path}: {answer}\n{self.describe()}")
        return answer["body"]

    def write(self, path: str, body: Any) -> dict[str, Any]:
        answer = self.api("POST", path, body)
        if answer.get("status") != 201:
            raise AssertionError(f"{self.name} POST {path}: {answer}\n{self.describe()}")
        result: dict[str, Any] = answer["body"]
        return result

    def peers(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.get("/v1/peers")["peers"]
        return rows

    def peer(self, terminal_id: str) -> dict[str, Any] | None:
        return next((p for p in self.peers() if p["terminal_id"] == terminal_id), None)

    def connected(self) -> set[str]:
        return {str(p["terminal_id"]) for p in self.peers() if p["connected"]}

    def digest(self) -> str:
        return str(self.get("/v1/digest")["digest"])

    def on_hand(self, sku: str) -> int | None:
        items = self.get("/v1/stock")["items"]
        return next((int(i["on_hand"]) for i in items if i["sku"] == sku), None)

    # -- the command line, inside the daemon's namespace ------------------------------------------

    def cli(self, *args: str | Path) -> Cli:
        assert self.lan is not None
        assert self.host is not None
        return self.lan.cli(self.host, *args)


class Lan:
    """A store, its terminals and their daemons on a test network (or on loopback)."""

    live: ClassVar[list[Lan]] = []  # for the failure report hook in conftest.py

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store_id = f"st-{secrets.token_hex(3)}"
        self._stores: dict[str, StoreDirectory] = {}
        self.daemons: list[LanDaemon] = []
        self._agents: dict[int, ApiAgent] = {}
        self.group = ProcessGroup(root, env=ENV)
        Lan.live.append(self)

    # -- directories ------------------------------------------------------------------------------

    def store(self, store_id: str | None = None) -> StoreDirectory:
        """The store directory of ``store_id`` (default: this Lan's store), created once."""
        sid = store_id or self.store_id
        if sid not in self._stores:
            self._stores[sid] = StoreDirectory.init(self.root / f"store-{sid}", sid)
        return self._stores[sid]

    def enroll(self, terminal_id: str, *, store_id: str | None = None, dirname: str = "") -> Path:
        store = self.store(store_id)
        path = self.root / (dirname or terminal_id)
        store.enroll(path, terminal_id, Role.CASHIER, wall_clock_ms(), VALID_DAYS)
        return path

    # -- processes --------------------------------------------------------------------------------

    def spawn(
        self,
        host: Host,
        path: Path,
        extra: Sequence[str] = (),
        *,
        quick: bool = True,
        listen: str | None = None,
    ) -> LanDaemon:
        """Start ``lanesync run`` on ``path`` inside ``host`` without waiting for it. Inside a
        namespace it listens on 0.0.0.0:0; in the host's own namespace only on the loopback
        default (never any other address there: mDNS must not reach the real network)."""
        if host.ns is None:
            if listen is not None and not listen.startswith("127."):
                raise AssertionError("daemons in the host namespace listen on loopback only")
            if any(arg.startswith("--interface") for arg in extra):
                raise AssertionError("no --interface in the host namespace")
            listen_args = [] if listen is None else ["--listen", listen]
        else:
            listen_args = ["--listen", listen or "0.0.0.0:0"]
        program = [str(QUICK_DAEMON)] if quick else ["-m", "lanesync"]
        args = [*program, "run", str(path), *listen_args, "--api", "127.0.0.1:0", *extra]
        daemon = self.group.spawn(
            path.name,
            path,
            args,
            cls=LanDaemon,
            wrap=lambda argv: host.command(*argv),
            where=f"in {host.ns or 'host namespace'}",
        )
        daemon.lan, daemon.host = self, host
        if host.net is not None:
            host.net.processes.append(daemon.process)  # the network ends it too, if need be
        self.daemons.append(daemon)
        return daemon

    def ready(self, daemon: LanDaemon, timeout: float = START_TIMEOUT_S) -> LanDaemon:
        """Wait for the daemon's own runtime.json (its pid; not one a killed predecessor left)."""
        daemon.wait_ready(timeout)
        return daemon

    def start(self, host: Host, path: Path, extra: Sequence[str] = (), **kw: Any) -> LanDaemon:
        return self.ready(self.spawn(host, path, extra, **kw))

    def start_many(self, specs: Iterable[tuple[Host, Path]]) -> list[LanDaemon]:
        spawned = [self.spawn(host, path) for host, path in specs]
        return [self.ready(d) for d in spawned]

    def stop(self, daemon: LanDaemon, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit; SIGKILL (and AssertionError) if it hangs."""
        return daemon.stop(sig)

    def agent(self, host: Host) -> ApiAgent:
        key = id(host)
        if key not in self._agents:
            self._agents[key] = ApiAgent(host, ENV)
        return self._agents[key]

    def cli(self, host: Host, *args: str | Path) -> Cli:
        return run_cli(args, env=ENV, wrap=lambda argv: host.command(*argv))

    def close(self) -> None:
        for agent in self._agents.values():
            agent.close()
        self._agents.clear()
        self.group.close()
        if self in Lan.live:
            Lan.live.remove(self)

    def describe(self) -> str:
        return self.group.describe()


def wait_connected(daemon: LanDaemon, peers: Iterable[str], timeout: float = 20.0) -> None:
    wanted = set(peers)
    wait_until(
        lambda: wanted <= daemon.connected(),
        timeout,
        lambda: (
            f"{daemon.name} connected to {sorted(wanted)}: peers {daemon.peers()}\n"
            + (daemon.lan.describe() if daemon.lan else daemon.describe())
        ),
    )


def wait_converged(daemons: Sequence[LanDaemon], timeout: float = 20.0) -> str:
    """Wait until every daemon reports the same digest; returns it."""
    wait_until(
        lambda: len({d.digest() for d in daemons}) == 1,
        timeout,
        lambda: (
            f"same digest on {[d.name for d in daemons]}: "
            + str({d.name: d.digest()[:16] for d in daemons})
            + "\n"
            + (daemons[0].lan.describe() if daemons[0].lan else "")
        ),
        interval=0.1,
    )
    return daemons[0].digest()
