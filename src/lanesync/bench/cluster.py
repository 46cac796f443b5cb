"""A store of member processes on loopback, every link between them through a fault proxy.

A ``Cluster`` is one system under test: lanesync lanes (optionally with the cloud), lanesync
with security off, pycrdt-websocket clients around their server, or naive broadcast peers.
Every member is a real process bound to 127.0.0.1 (lanes: ``--listen 127.0.0.1:0 --api
127.0.0.1:0 --no-discovery``); members reach each other only through the proxies of one
``proxyhost`` process, so latency, jitter, loss and partitions apply to every system alike.

Every process, the proxy host included, is started in one ``lanesync.tools.procs``
``ProcessGroup``: ``close()`` stops them all whatever happened (SIGTERM, then SIGKILL), and
they also get SIGKILL from the kernel if the orchestrator dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanesync.bench.events import Tracker
from lanesync.bench.httpio import HttpClient, HttpError
from lanesync.bench.proxies import BenchError, Faults, ProxyHost, ProxyLink
from lanesync.core.identity import Role
from lanesync.errors import ProcessFailed
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.procs import Proc, ProcessGroup, child_env

# BenchError, Faults and the proxy classes live in bench/proxies.py; the scenarios, the runner
# and the CLI import them from here, as before they moved.
__all__ = ["BenchError", "Cluster", "Faults", "Member", "ProxyHost", "ProxyLink"]

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0  # many lanes starting at once on two busy cores take a while
CONNECT_TIMEOUT_S = 60.0
VALID_DAYS = 30
STORE_ID = "bench-store"

LANESYNC = "lanesync"
UNSIGNED = "lanesync-unsigned"
PYCRDT = "pycrdt-websocket"
NAIVE = "naive-broadcast"
SYSTEMS = (LANESYNC, UNSIGNED, PYCRDT, NAIVE)
BASELINES = (UNSIGNED, PYCRDT, NAIVE)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loopback_port(url: str, what: str) -> int:
    for scheme in ("ws://", "http://"):
        prefix = f"{scheme}{LOOPBACK}:"
        if url.startswith(prefix):
            return int(url[len(prefix) :].rstrip("/"))
    raise BenchError(f"{what} is bound to {url!r}, not {LOOPBACK}: refusing to go on")


# -- members ------------------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    directory: Path
    args: list[str] = field(default_factory=list)  # without --events (per incarnation)
    process: Proc | None = None
    api: HttpClient | None = None
    listen_port: int = 0
    incarnation: int = 0
    sender: str = ""
    started_ns: list[int] = field(default_factory=list)

    @property
    def runtime(self) -> Path:
        return self.directory / "runtime.json"

    def events_path(self) -> Path:
        return self.directory.parent / f"events-{self.name}-{self.incarnation}.log"

    @property
    def log(self) -> Path | None:
        return None if self.process is None else self.process.log_path

    @property
    def up(self) -> bool:
        return self.api is not None and self.process is not None and self.process.alive()


class Cluster:
    """One system under test. Use ``async with Cluster(...)``: exit stops everything."""

    def __init__(self, system: str, root: Path, faults: Faults, *, cloud: bool = False) -> None:
        if system not in SYSTEMS:
            raise BenchError(f"unknown system {system!r}")
        self.system = system
        self.root = root
        self.group = ProcessGroup(root, env=child_env(), die_with_parent=True)
        self.proxy = ProxyHost(faults)
        self.tracker = Tracker()
        self.members: dict[str, Member] = {}
        self.links: list[ProxyLink] = []
        self.hub: Member | None = None  # the pycrdt-websocket server
        self.cloud: Member | None = None
        self.cloud_api: HttpClient | None = None
        self.with_cloud = cloud
        self.store: StoreDirectory | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def lanesync(self) -> bool:
        return self.system in (LANESYNC, UNSIGNED)

    @property
    def star(self) -> bool:
        return self.system == PYCRDT

    async def __aenter__(self) -> Cluster:
        self.proxy.start(self.group, self.root)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for member in self.members.values():
            if member.api is not None:
                member.api.close()
        if self.cloud_api is not None:
            self.cloud_api.close()
        await self.proxy.stop()
        await asyncio.to_thread(self.group.close)

    # -- building ---------------------------------------------------------------------------------

    def _enroll(self, names: Sequence[str]) -> None:
        if self.store is None:
            self.store = StoreDirectory.init(self.root / "store", STORE_ID)
        for name in names:
            role = Role.MANAGER if not self.members and name == names[0] else Role.CASHIER
            self.store.enroll(self.root / name, name, role, wall_clock_ms(), VALID_DAYS)

    async def _start_cloud(self) -> str:
        from lanesync.cloud.directory import CloudDirectory

        if self.store is None:
            raise BenchError("the store must exist before its cloud")
        cloud_dir = self.root / "cloud"
        created = CloudDirectory.init(cloud_dir)
        cert = self.store.certify_cloud(bytes(created.key.verify_key), wall_clock_ms(), VALID_DAYS)
        cert_file = self.root / "cloud.cert"
        cert_file.write_bytes(cert.encoded)
        CloudDirectory.open(cloud_dir).add_store(self.store.identity_file, cert_file)
        cloud = Member("cloud", cloud_dir, sender="cloud")
        cloud.args = ["cloud", "serve", str(cloud_dir)]
        cloud.args += ["--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
        self.cloud = cloud
        await self._launch(cloud, watch=True)
        info = await self._wait_runtime(cloud)
        link_id, port = await self.proxy.add(loopback_port(str(info["listen"]), "the cloud"))
        self.links.append(ProxyLink(link_id, port, "*", "cloud"))
        token = (cloud_dir / "api.token").read_text().strip()
        self.cloud_api = HttpClient(str(info["api"]), token)
        return f"ws://{LOOPBACK}:{port}"

    async def _start_hub(self) -> None:
        hub_dir = self.root / "hub"
        hub_dir.mkdir()
        hub = Member("hub", hub_dir)
        hub.args = ["pycrdt-server", "--runtime", str(hub_dir / "runtime.json")]
        self.hub = hub
        await self._launch(hub, watch=False)
        info = await self._wait_runtime(hub)
        hub.listen_port = loopback_port(str(info["listen"]), "the pycrdt-websocket server")

    def _member_args(self, member: Member, dial: list[str], cloud_url: str | None) -> list[str]:
        if self.lanesync:
            args = ["run", str(member.directory), "--listen", f"{LOOPBACK}:0"]
            args += ["--api", f"{LOOPBACK}:0", "--no-discovery"]
            for url in dial:
                args += ["--peer", url]
            if cloud_url is not None:
                args += ["--cloud", cloud_url]
            return args
        mode = "pycrdt-client" if self.star else "naive"
        args = [mode, member.name, "--runtime", str(member.runtime)]
        for url in dial:
            args += ["--server" if self.star else "--peer", url]
        return args

    async def start(self, names: Sequence[str]) -> None:
        """Start members ``names`` (a full mesh, or a star around the server) and wait until
        every link is up."""
        cloud_url = None
        if self.lanesync:
            self._enroll(names)
            if self.with_cloud:
                cloud_url = await self._start_cloud()
        else:
            for name in names:
                (self.root / name).mkdir()
        if self.star:
            await self._start_hub()
        for name in names:
            self.members[name] = Member(name, self.root / name)
        dials: dict[str, list[str]] = {name: [] for name in names}
        if self.star:
            assert self.hub is not None
            for name in names:
                link_id, port = await self.proxy.add(self.hub.listen_port)
                self.links.append(ProxyLink(link_id, port, name, "hub"))
                dials[name].append(f"ws://{LOOPBACK}:{port}")
        else:
            for a, b in itertools.combinations(names, 2):  # the earlier one dials the later
                link_id, port = await self.proxy.add(partitioned=True)
                self.links.append(ProxyLink(link_id, port, a, b))
                dials[a].append(f"ws://{LOOPBACK}:{port}")
        for name in names:
            member = self.members[name]
            member.args = self._member_args(member, dials[name], cloud_url)
        if self.star:
            # Create the room with one client first (eight clients joining a room that does not
            # exist yet often failed to sync, 2026-11-26).
            first = self.members[names[0]]
            await self._launch(first)
            await self._ready(first)
            await self.wait_links([first.name])
            rest = [self.members[n] for n in names[1:]]
        else:
            rest = [self.members[n] for n in names]
        for member in rest:
            await self._launch(member)
        await asyncio.gather(*(self._ready(m) for m in rest))
        await self._retarget()
        await self.wait_links(list(names))
        if self.with_cloud:
            await self.wait_cloud_link()

    async def add_member(self, name: str) -> Member:
        """A new member joins the running store: it dials every member (or the server)."""
        if self.lanesync:
            self._enroll([name])
        else:
            (self.root / name).mkdir()
        member = Member(name, self.root / name)
        dial = []
        targets = ["hub"] if self.star else list(self.members)
        for target in targets:
            port = self.hub.listen_port if self.hub and target == "hub" else 0
            link_id, proxy_port = await self.proxy.add(port, partitioned=port == 0)
            self.links.append(ProxyLink(link_id, proxy_port, name, target))
            dial.append(f"ws://{LOOPBACK}:{proxy_port}")
        self.members[name] = member
        member.args = self._member_args(member, dial, None)
        await self._retarget()
        await self._launch(member)
        return member

    async def _launch(self, member: Member, *, watch: bool = True) -> None:
        member.api = None
        events = member.events_path()
        if self.lanesync or member is self.cloud:
            args = ["-m", "lanesync.cli.bench_lane", "--events", str(events)]
            if self.system == UNSIGNED:
                args.append("--unsigned")
            args += ["--", *member.args]
            member.sender = member.name
        else:
            args = ["-m", "lanesync.bench.baselines", *member.args]
            if member is not self.hub:
                args += ["--epoch", str(member.incarnation), "--events", str(events)]
                member.sender = f"{member.name}.{member.incarnation}"
        if watch:
            self.tracker.watch(member.name, events, member.sender)
        member.process = self.group.spawn(member.name, member.directory, args)
        member.started_ns.append(member.process.started_ns)

    async def _wait_runtime(self, member: Member) -> dict[str, Any]:
        """Its own runtime.json (``Proc.wait_ready_async``)."""
        if member.process is None:
            raise BenchError(f"{self.system} {member.name} was never started")
        try:
            return await member.process.wait_ready_async(START_TIMEOUT_S)
        except ProcessFailed:
            what = "did not start" if member.process.alive() else "exited"
            raise BenchError(f"{self.system} {member.name} {what}; see {member.log}") from None

    async def _ready(self, member: Member) -> None:
        info = await self._wait_runtime(member)
        token = ""
        if self.lanesync:
            token = (member.directory / "api.token").read_text().strip()
        loopback_port(str(info["api"]), f"{member.name}'s API")
        if "listen" in info:
            member.listen_port = loopback_port(str(info["listen"]), f"{member.name}'s peers")
        member.api = HttpClient(str(info["api"]), token)

    async def _retarget(self) -> None:
        """Point every proxy whose target member (re)started at its new port. A proxy created
        before its target was listening is healed then; others keep their state."""
        for link in self.links:
            member = self.members.get(link.target)
            if member is None or not member.listen_port or member.listen_port == link.target_port:
                continue
            await self.proxy.call("target", id=link.id, port=member.listen_port)
            if not link.target_port:
                await self.proxy.call("heal", ids=[link.id])
            link.target_port = member.listen_port

    async def wait_ready(self, member: Member) -> None:
        await self._ready(member)
        await self._retarget()

    # -- state ------------------------------------------------------------------------------------

    async def links_of(self, member: Member) -> int:
        if member.api is None:
            return -1
        try:
            reply = await member.api.request("GET", "/v1/status", timeout_s=10)
        except HttpError:
            return -1
        body = reply.body
        if self.lanesync:
            return sum(1 for c in body.get("connections", []) if c.get("role") != "cloud")
        return int(body.get("links", 0))

    async def wait_links(self, names: Sequence[str], timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Until every named member has all its links up (a full mesh, or its server)."""
        deadline = time.monotonic() + timeout_s
        while True:
            want = 1 if self.star else len([m for m in self.members.values() if m.up]) - 1
            got = [await self.links_of(self.members[n]) for n in names]
            if all(g >= want for g in got):
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.system}: links did not come up: {dict(zip(names, got, strict=True))}"
                )
            await asyncio.sleep(0.1)

    async def wait_cloud_link(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for member in self.members.values():
                if member.api is None:
                    continue
                with contextlib.suppress(HttpError):
                    status = (await member.api.request("GET", "/v1/status")).body
                    if (status.get("cloud") or {}).get("connected"):
                        return
            if time.monotonic() > deadline:
                raise BenchError(f"{self.system}: no lane connected to the cloud")
            await asyncio.sleep(0.1)

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.up]

    def pids(self) -> list[int]:
        """The running members, the server and the cloud (not the proxy host)."""
        procs = [m.process for m in self.members.values()]
        procs += [x.process for x in (self.hub, self.cloud) if x is not None]
        return [p.pid for p in procs if p is not None and p.alive()]

    def cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in self.pids()}

    async def bytes_forwarded(self, target: str | None = None) -> int:
        stats = (await self.proxy.stats())["links"]
        ids = {str(link.id) for link in self.links if target is None or link.target == target}
        return sum(int(s["bytes"]) for i, s in stats.items() if i in ids)

    async def first_accept_after(self, at_ns: int, target: str | None = None) -> int | None:
        stats = (await self.proxy.stats())["links"]
        ids = {str(link.id) for link in self.links if target is None or link.target == target}
        times = [t for i, s in stats.items() if i in ids for t in s["accepts"] if t >= at_ns]
        return min(times) if times else None

    # -- faults -----------------------------------------------------------------------------------

    def crossing(self, group: set[str]) -> list[int]:
        """Links with one end in ``group`` and the other outside (the server and the cloud
        count as outside)."""
        return [link.id for link in self.links if (link.dialer in group) != (link.target in group)]

    async def partition(self, ids: list[int]) -> int:
        return int((await self.proxy.call("partition", ids=ids))["at_ns"])

    async def heal(self, ids: list[int]) -> int:
        return int((await self.proxy.call("heal", ids=ids))["at_ns"])

    async def restart(self, name: str) -> int:
        """Crash a member (SIGKILL) and start it again; returns when it was started (ns).
        A baseline member comes back empty, under a new sender name."""
        member = self.members[name]
        if member.api is not None:
            member.api.close()
        member.api = None
        if member.process is not None:
            await asyncio.to_thread(member.process.kill)
        member.incarnation += 1
        member.listen_port = 0
        await self._launch(member)
        started = member.started_ns[-1]
        await self.wait_ready(member)
        return started

    # -- final checks -----------------------------------------------------------------------------

    async def holdings(self, member: Member) -> dict[str, set[int]]:
        """Every sale a member holds, by sender, from its API (exact; not from event logs)."""
        if member.api is None:
            raise BenchError(f"{member.name} is down")
        if self.lanesync:
            report = (await member.api.request("GET", "/v1/verify", timeout_s=60)).body
            return {str(h["terminal"]): set(range(1, int(h["seq"]) + 1)) for h in report["chains"]}
        have = (await member.api.request("GET", "/v1/have", timeout_s=60)).body["have"]
        return {str(sender): {int(s) for s in seqs} for sender, seqs in have.items()}

    async def digests(self) -> dict[str, str]:
        out = {}
        for member in self.live():
            assert member.api is not None
            out[member.name] = str((await member.api.request("GET", "/v1/digest")).body["digest"])
        return out
