"""Bench lane driver: the real ``lanesync run`` (or ``lanesync cloud serve``) plus an event log.

    python -m lanesync.cli.bench_lane --events FILE [--unsigned] -- run DIR --listen 127.0.0.1:0
    python -m lanesync.cli.bench_lane --events FILE -- cloud serve CLOUD_DIR --listen 127.0.0.1:0

It runs the lanesync CLI in this process with one observing change: the daemon's (or the
cloud's) ``Mesh`` is a subclass that appends to FILE (``lanesync.bench.events``):

* ``A``: own records acknowledged, stamped in ``committed``, right after the group commit
  made them durable and before any HTTP 201 is sent;
* ``R``: records of other terminals that became accepted (verified, chained, counted in the
  views) and durable here, stamped after each ``Mesh._flush`` (which commits what was merged);
* ``H``: at start, the head of every chain this replica already holds durably (restarts).

``--unsigned`` is BENCHMARK-ONLY: it turns off SecretBox encryption of peer frames and Ed25519
signing and verification of records (see ``insecure_patches``), to show what security costs.
The handshake, certificates and everything else are unchanged. Never use it for anything else;
every lane of such a store must run with it (a zero signature fails real verification).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanesync.bench.events import EventLog
from lanesync.core.replica import Change
from lanesync.shell.mesh import Mesh

_LOG: EventLog | None = None
# Set to a path prefix to write a CPU profile of each lane process (PREFIX.PID) when it stops.
PROFILE_ENV = "LANESYNC_BENCH_PROFILE"


class BenchMesh(Mesh):
    """The daemon's Mesh, plus the event log (observation only: behaviour is unchanged)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _LOG is None:
            raise RuntimeError("BenchMesh needs the event log (run through lane.main)")
        self._events = _LOG
        self._views = self.terminal.replica.views
        self._me = str(self.terminal.terminal_id)
        self._accepted = self._views.accepted_count()
        now = time.time_ns()
        self._seen: dict[str, int] = {}
        for head in self._views.heads():
            self._seen[str(head.terminal)] = head.seq
            self._events.held(str(head.terminal), head.seq, now)
        # At once: a restarted lane that already holds everything may log nothing else for a
        # long time, and the orchestrator must know what it holds.
        self._events.flush()

    def write(self, changes: list[Change], commit: Callable[[], None]) -> None:
        super().write(changes, commit)
        now = time.time_ns()
        head = self._views.head(self.terminal.terminal_id).seq
        before = self._seen.get(self._me, 0)
        if head > before:
            self._seen[self._me] = head
            self._events.acked(self._me, before + 1, head, now)

    def _flush(self) -> None:
        super()._flush()
        count = self._views.accepted_count()
        if count == self._accepted:
            return
        self._accepted = count
        now = time.time_ns()
        for head in self._views.heads():
            terminal = str(head.terminal)
            if terminal == self._me:
                continue
            before = self._seen.get(terminal, 0)
            if head.seq > before:
                self._seen[terminal] = head.seq
                self._events.arrived(terminal, before + 1, head.seq, now)


# -- benchmark-only: security off -----------------------------------------------------------------


class PlainBox:
    """Stands in for nacl's SecretBox: frames travel in clear (BENCHMARK ONLY)."""

    NONCE_SIZE = 24

    def __init__(self, key: bytes) -> None:
        self.key = key

    class _Sealed:
        def __init__(self, data: bytes) -> None:
            self.ciphertext = data

    def encrypt(self, plaintext: bytes, nonce: bytes) -> PlainBox._Sealed:
        return PlainBox._Sealed(bytes(plaintext))

    def decrypt(self, ciphertext: bytes, nonce: bytes) -> bytes:
        return bytes(ciphertext)


def _no_signature(key: object, domain: bytes, message: bytes) -> bytes:
    return bytes(64)


def _always_valid(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    return True


def insecure_patches() -> None:
    """Turn off frame encryption and record signing/verification in this process only."""
    from lanesync.core import connection, records, trust

    connection.SecretBox = PlainBox  # type: ignore[attr-defined,assignment]
    records.sign = _no_signature  # type: ignore[attr-defined]
    trust.verify = _always_valid  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    global _LOG
    parser = argparse.ArgumentParser(prog="python -m lanesync.cli.bench_lane")
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--unsigned", action="store_true", help="BENCHMARK ONLY: security off")
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    if args.unsigned:
        insecure_patches()
    from lanesync.cli import main as cli_main
    from lanesync.cloud import stores
    from lanesync.shell import daemon

    # Where each builds its Mesh: the daemon for a lane, cloud.stores for each store it serves.
    daemon.Mesh = BenchMesh  # type: ignore[attr-defined]
    stores.Mesh = BenchMesh  # type: ignore[attr-defined]
    _LOG = EventLog(args.events)
    profile_to = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile(time.process_time) if profile_to else None
    try:
        if profiler is not None:
            profiler.enable()
        cli_main.cli.main(args=cli_args, prog_name="lanesync", standalone_mode=False)
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{os.getpid()}")
        _LOG.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
