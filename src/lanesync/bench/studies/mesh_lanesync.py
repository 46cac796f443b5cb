"""A lanesync lane of ``lanesync bench mesh``: the real daemon (``lanesync run DIR --listen
127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``: durable SQLite commit, record verification, frame
encryption, the local API) in this process, with two daemon classes swapped for subclasses that
only observe: ``TimedMesh`` (timestamps every record when it is accepted and when it is durable
here, counts the bytes written to each socket) and ``CapturingCommitter`` (the
``GroupCommitter`` the load is written through, as ``POST /v1/sales`` does).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from websockets.asyncio.connection import Connection

from lanesync.bench.studies.mesh_control import (
    LOOPBACK,
    Arrivals,
    Control,
    Profiler,
    count_writes,
    lane_rng,
    now_ns,
    paced,
    runqueue_wait_s,
    sale_lines,
    write_json,
)
from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.ids import Sku, TerminalId
from lanesync.core.output import Output
from lanesync.core.records import Body
from lanesync.core.replica import Change
from lanesync.core.views import Views
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal

RUNTIME_POLL_S = 0.02


class TimedMesh(Mesh):
    """The daemon's Mesh, plus observation: when each record was accepted (verified, chained,
    counted in the views) and when it became durable here, and the bytes written to sockets."""

    current: ClassVar[TimedMesh | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire_out = 0
        views = self.terminal.replica.views
        self._views = views
        self._me = str(self.terminal.terminal_id)
        self.accepted = Arrivals()  # in memory, in the views: what a query sees
        self.durable = Arrivals()  # after this lane's own durable commit of the update
        self._accepted_count = views.accepted_count()
        self._durable_count = self._accepted_count
        self._committed_seq = views.head(TerminalId(self._me)).seq
        self.commits: list[list[int]] = []  # [first_seq, last_seq, time_ns] of local commits
        take_output = self.node.take_output

        def taken() -> Output:
            # The node merges what it received in take_output (all frames of one event-loop
            # iteration together): records become accepted there.
            out = take_output()
            if views.accepted_count() != self._accepted_count:
                self._accepted_count = views.accepted_count()
                self._scan(self.accepted)
            return out

        self.node.take_output = taken  # type: ignore[method-assign]
        # Wall time the event loop spends inside SQLite (commit with its fsync, compaction):
        # the loop serves nothing else meanwhile.
        self.storage_s: dict[str, float] = defaultdict(float)
        self.storage_calls: dict[str, int] = defaultdict(int)
        storage = self.terminal.storage
        commit = self._timed("commit", storage.commit)

        def durable_commit(changes: Iterable[Change], requests: Sequence[Any] = ()) -> None:
            commit(changes, requests)  # peers' updates become durable here, not when merged
            if views.accepted_count() != self._durable_count:
                self._durable_count = views.accepted_count()
                self._scan(self.durable)

        storage.commit = durable_commit  # type: ignore[method-assign]
        storage.compact = self._timed("compact", storage.compact)  # type: ignore[method-assign]
        TimedMesh.current = self
        lane = LanesyncLane(self)
        self._lane_task = asyncio.get_running_loop().create_task(lane.run(), name="bench-control")

    def _timed(self, what: str, call: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any) -> None:
            started = time.perf_counter()
            try:
                call(*args)
            finally:
                self.storage_s[what] += time.perf_counter() - started
                self.storage_calls[what] += 1

        return timed

    def _scan(self, into: Arrivals) -> None:
        at = now_ns()
        # Benchmark-only peek at the views' chains: ``heads()`` builds a ChainHead per
        # terminal, which would make this observer cost more than it needs to per frame.
        chains = getattr(getattr(self._views, "_chains", None), "_chains", None)
        if isinstance(chains, dict):
            heads = [(terminal, chain.head_seq) for terminal, chain in chains.items()]
        else:
            heads = [(head.terminal, head.seq) for head in self._views.heads()]
        for terminal, seq in heads:
            if terminal != self._me and seq:
                into.advance(terminal, seq, at)

    async def _run_connection(self, ws: Connection, *args: Any, **kwargs: Any) -> str:
        count_writes(ws, self._add_wire)
        return await super()._run_connection(ws, *args, **kwargs)

    def _add_wire(self, size: int) -> None:
        self.wire_out += size

    def write(self, changes: list[Change], commit: Callable[[], None]) -> None:
        """The committer's publisher: ``commit`` made this lane's own sales durable, so they
        are acknowledged now."""
        super().write(changes, commit)
        at = now_ns()
        head = self._views.head(TerminalId(self._me)).seq
        if head > self._committed_seq:
            self.commits.append([self._committed_seq + 1, head, at])
            self._committed_seq = head

    def open_links(self) -> int:
        return sum(1 for link in self.node.links.values() if link.is_open)


class CapturingCommitter(GroupCommitter):
    current: ClassVar[CapturingCommitter | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CapturingCommitter.current = self


class LanesyncLane:
    def __init__(self, mesh: TimedMesh) -> None:
        self.mesh = mesh
        self.terminal: Terminal = mesh.terminal
        self.control = Control()
        self.profiler = Profiler()
        self.sends: list[list[int]] = []  # [seq, issue_ns, ack_ns]
        self.errors: list[str] = []
        self.rng = lane_rng(str(self.terminal.terminal_id))

    async def run(self) -> None:
        directory = self.terminal.directory.path
        runtime = directory / "runtime.json"
        # The daemon writes it once the peer server and the API are bound; nothing to await.
        while not runtime.exists():  # noqa: ASYNC110
            await asyncio.sleep(RUNTIME_POLL_S)
        info = json.loads(runtime.read_text())
        self.control.send({"event": "ready", "pid": os.getpid(), **info})
        await self.control.serve(self.handle)
        # quit or end of input: stop the daemon the way SIGTERM does.
        signal.raise_signal(signal.SIGTERM)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request["cmd"]:
            case "connect":
                for url in request["urls"]:
                    self.mesh.add_static(url)
                return {"ok": True}
            case "status":
                return self.status()
            case "load":
                return await self.load(request)
            case "collect":
                write_json(
                    request["path"],
                    {
                        "sends": self.sends,
                        "commits": self.mesh.commits,
                        "accepted": self.mesh.accepted.take(),
                        "durable": self.mesh.durable.take(),
                    },
                )
                self.sends, self.mesh.commits = [], []
                return {"ok": True}
            case "profile":
                return self.profiler.command(request)
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}

    def status(self) -> dict[str, Any]:
        committer = CapturingCommitter.current
        return {
            "have": dict(self.mesh.accepted.seen),
            "durable": dict(self.mesh.durable.seen),
            "sent": self.terminal.replica.views.head(self.terminal.terminal_id).seq,
            "links": self.mesh.open_links(),
            "wire_out": self.mesh.wire_out,
            "payload_out": self.mesh.bytes_out,
            "frames_out": self.mesh.frames_out,
            "commits": committer.commits if committer else 0,
            "storage_s": dict(self.mesh.storage_s),
            "storage_calls": dict(self.mesh.storage_calls),
            "cpu_s": time.process_time(),
            "runq_s": runqueue_wait_s(),
            "errors": len(self.errors),
        }

    async def load(self, request: dict[str, Any]) -> dict[str, Any]:
        committer = CapturingCommitter.current
        if committer is None:
            return {"error": "the daemon has no committer yet"}
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []

        async def one(lines: list[tuple[str, int, int]]) -> None:
            requests = [LineRequest(Sku(sku), qty, unit) for sku, qty, unit in lines]

            def build(views: Views) -> Body:
                return build_sale(views, requests)

            issued = now_ns()
            record = await committer.write(build)
            self.sends.append([record.seq, issued, now_ns()])

        def fire(_: int) -> None:
            tasks.append(loop.create_task(one(sale_lines(self.rng))))

        worst = await paced(
            request["rate"], request["count"], request["start_ns"], request["phase"], fire
        )
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [repr(r) for r in results if isinstance(r, BaseException)]
        self.errors.extend(failed)
        return {"issued": len(tasks), "failed": len(failed), "late_s": worst, "errors": failed[:3]}


def run_lanesync(directory: str) -> None:
    """``lanesync run DIR --listen 127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``, observed."""
    from lanesync.shell import daemon

    # The daemon builds its Mesh and GroupCommitter by these module-level names.
    daemon.Mesh = TimedMesh  # type: ignore[attr-defined]
    daemon.GroupCommitter = CapturingCommitter  # type: ignore[attr-defined]
    config = daemon.DaemonConfig(
        Path(directory),
        listen=(LOOPBACK, 0),
        api=(LOOPBACK, 0),
        peers=(),
        discovery=False,
        interfaces=(),
        cloud=None,
        priority=0,
        anti_entropy_ms=None,
    )
    daemon.daemon_main(config)
