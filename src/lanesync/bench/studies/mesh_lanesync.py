"""A lanesync lane of ``lanesync bench mesh``: the real daemon (``lanesync run DIR --listen
127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``: durable SQLite commit, record verification, frame
encryption, the local API) in this process, handed a ``LaneObserver`` (``shell.mesh.MeshObserver``:
when each record is accepted and when it is durable here, SQLite's time, the bytes written to
each socket) and, alongside it, the lane's control (``LanesyncLane``), which writes its load
through the daemon's own ``GroupCommitter``, as ``POST /v1/sales`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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
from lanesync.core.records import Body
from lanesync.core.views import Views
from lanesync.shell.api import DaemonState
from lanesync.shell.mesh import Collaborators, MeshObserver
from lanesync.shell.terminal import StorageCall, Terminal


class LaneObserver(MeshObserver):
    """When each record was accepted (verified, chained, counted in the views) and when it
    became durable here, this lane's own commits, SQLite's time and the bytes written to
    sockets. Observation only (``MeshObserver``)."""

    def __init__(self, terminal: Terminal) -> None:
        views = terminal.replica.views
        self._views = views
        self._me = str(terminal.terminal_id)
        self.wire_out = 0
        self.accepted_log = Arrivals()  # in memory, in the views: what a query sees
        self.durable_log = Arrivals()  # after this lane's own durable commit of the update
        self._accepted_count = views.accepted_count()
        self._durable_count = self._accepted_count
        self._committed_seq = views.head(TerminalId(self._me)).seq
        self.commits: list[list[int]] = []  # [first_seq, last_seq, time_ns] of local commits
        # Wall time the event loop spends inside SQLite (commit with its fsync, compaction):
        # the loop serves nothing else meanwhile.
        self.storage_s: dict[str, float] = defaultdict(float)
        self.storage_calls: dict[str, int] = defaultdict(int)

    def accepted(self) -> None:
        # The node merges what it received in one flush (all frames of one event-loop
        # iteration together): records become accepted there.
        if self._views.accepted_count() != self._accepted_count:
            self._accepted_count = self._views.accepted_count()
            self._scan(self.accepted_log)

    def stored(self, call: StorageCall, seconds: float) -> None:
        self.storage_s[call.value] += seconds
        self.storage_calls[call.value] += 1
        # Peers' updates become durable here with a commit, not when merged.
        if call is StorageCall.COMMIT and self._views.accepted_count() != self._durable_count:
            self._durable_count = self._views.accepted_count()
            self._scan(self.durable_log)

    def wrote(self) -> None:
        """The committer's commit made this lane's own sales durable: acknowledged now."""
        at = now_ns()
        head = self._views.head(TerminalId(self._me)).seq
        if head > self._committed_seq:
            self.commits.append([self._committed_seq + 1, head, at])
            self._committed_seq = head

    def connection_opened(self, ws: Connection) -> None:
        # Counted as for the pycrdt-websocket lanes (``count_writes``), so both systems' wire
        # bytes are the same measure.
        count_writes(ws, self._add_wire)

    def _add_wire(self, size: int) -> None:
        self.wire_out += size

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


class LanesyncLane:
    """The lane's control: answers the orchestrator's commands with the daemon's state."""

    def __init__(self, state: DaemonState, observer: LaneObserver) -> None:
        self.state = state
        self.observer = observer
        self.terminal: Terminal = state.terminal
        self.control = Control()
        self.profiler = Profiler()
        self.sends: list[list[int]] = []  # [seq, issue_ns, ack_ns]
        self.errors: list[str] = []
        self.rng = lane_rng(str(self.terminal.terminal_id))

    async def run(self) -> None:
        # The daemon runs this once the peer server and the API are bound and its runtime
        # file is written.
        info = json.loads((self.terminal.directory.path / "runtime.json").read_text())
        self.control.send({"event": "ready", "pid": os.getpid(), **info})
        await self.control.serve(self.handle)
        # quit or end of input: stop the daemon the way SIGTERM does.
        signal.raise_signal(signal.SIGTERM)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request["cmd"]:
            case "connect":
                for url in request["urls"]:
                    self.state.mesh.add_static(url)
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
                        "commits": self.observer.commits,
                        "accepted": self.observer.accepted_log.take(),
                        "durable": self.observer.durable_log.take(),
                    },
                )
                self.sends, self.observer.commits = [], []
                return {"ok": True}
            case "profile":
                return self.profiler.command(request)
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}

    def status(self) -> dict[str, Any]:
        mesh, observer = self.state.mesh, self.observer
        return {
            "have": dict(observer.accepted_log.seen),
            "durable": dict(observer.durable_log.seen),
            "sent": self.terminal.replica.views.head(self.terminal.terminal_id).seq,
            "links": sum(1 for link in mesh.node.links.values() if link.is_open),
            "wire_out": observer.wire_out,
            "payload_out": mesh.bytes_out,
            "frames_out": mesh.frames_out,
            "commits": self.state.committer.commits,
            "storage_s": dict(observer.storage_s),
            "storage_calls": dict(observer.storage_calls),
            "cpu_s": time.process_time(),
            "runq_s": runqueue_wait_s(),
            "errors": len(self.errors),
        }

    async def load(self, request: dict[str, Any]) -> dict[str, Any]:
        committer = self.state.committer
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
    from lanesync.shell.daemon import DaemonConfig, daemon_main
    from lanesync.shell.eventloop import loop_choice_from_env

    observers: list[LaneObserver] = []

    def observe(terminal: Terminal) -> MeshObserver:
        observers.append(LaneObserver(terminal))
        return observers[-1]

    async def alongside(state: DaemonState) -> None:
        await LanesyncLane(state, observers[0]).run()

    config = DaemonConfig(
        Path(directory),
        listen=(LOOPBACK, 0),
        api=(LOOPBACK, 0),
        peers=(),
        discovery=False,
        interfaces=(),
        cloud=None,
        priority=0,
        anti_entropy_ms=None,
        collaborators=Collaborators(observe=observe),
        alongside=alongside,
        loop=loop_choice_from_env(),  # LANESYNC_LOOP, as `lanesync run` reads it
    )
    daemon_main(config)
