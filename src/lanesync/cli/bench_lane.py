"""Bench lane driver: the real ``lanesync run`` (or ``lanesync cloud serve``) plus an event log.

    python -m lanesync.cli.bench_lane --events FILE [--unsigned] -- run DIR --listen 127.0.0.1:0
    python -m lanesync.cli.bench_lane --events FILE -- cloud serve CLOUD_DIR --listen 127.0.0.1:0

It runs the lanesync CLI in this process, handing the command its ``Collaborators``
(shell.mesh) through click's context object: each ``Mesh`` the daemon (or the cloud) builds
gets a ``LaneEvents`` observer, which appends to FILE (``lanesync.bench.events``):

* ``A``: own records acknowledged, stamped in ``committed``, right after the group commit
  made them durable and before any HTTP 201 is sent;
* ``R``: records of other terminals that became accepted (verified, chained, counted in the
  views) and durable here, stamped after each ``Mesh._flush`` (which commits what was merged);
* ``H``: at start, the head of every chain this replica already holds durably (restarts).

``--unsigned`` is BENCHMARK-ONLY: the collaborators' crypto is ``Unsigned`` (no encryption of
peer frames, no Ed25519 signing or verification of records), to show what security costs.
The handshake, certificates and everything else are unchanged. Never use it for anything else;
every lane of such a store must run with it (a zero signature fails real verification).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

from lanesync.bench.events import EventLog
from lanesync.core.crypto import SODIUM, Crypto, FrameCipher
from lanesync.core.identity import SIGNATURE_SIZE
from lanesync.shell.mesh import Collaborators, MeshObserver
from lanesync.shell.terminal import Terminal

# Set to a path prefix to write a CPU profile of each lane process (PREFIX.PID) when it stops.
PROFILE_ENV = "LANESYNC_BENCH_PROFILE"


class LaneEvents(MeshObserver):
    """A Mesh's observer that logs what became durable (observation only: behaviour is
    unchanged). Built when the mesh is: it logs the chain heads held at start at once."""

    def __init__(self, events: EventLog, terminal: Terminal) -> None:
        self._events = events
        self._terminal = terminal
        self._views = terminal.replica.views
        self._me = str(terminal.terminal_id)
        self._accepted = self._views.accepted_count()
        now = time.time_ns()
        self._seen: dict[str, int] = {}
        for head in self._views.heads():
            self._seen[str(head.terminal)] = head.seq
            self._events.held(str(head.terminal), head.seq, now)
        # At once: a restarted lane that already holds everything may log nothing else for a
        # long time, and the orchestrator must know what it holds.
        self._events.flush()

    def wrote(self) -> None:
        now = time.time_ns()
        head = self._views.head(self._terminal.terminal_id).seq
        before = self._seen.get(self._me, 0)
        if head > before:
            self._seen[self._me] = head
            self._events.acked(self._me, before + 1, head, now)

    def flushed(self) -> None:
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


class _PlainCipher:
    """Frames travel in clear (BENCHMARK ONLY)."""

    __slots__ = ()

    def seal(self, seq: int, plaintext: bytes) -> bytes:
        return bytes(plaintext)

    def open(self, seq: int, sealed: bytes) -> bytes | None:
        return bytes(sealed)


class Unsigned:
    """Crypto that does none of the per-record and per-frame work (BENCHMARK ONLY): records
    carry a zero signature, every signature verifies, frames travel in clear."""

    __slots__ = ()

    def sign_record(self, key: SigningKey, payload: bytes) -> bytes:
        return bytes(SIGNATURE_SIZE)

    def verify_record(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        return True

    def frame_cipher(self, key: bytes) -> FrameCipher:
        return _PlainCipher()


def lane_collaborators(events: EventLog, *, unsigned: bool) -> Collaborators:
    """What the lane's command is handed: the event log's observer, and the crypto."""

    def observe(terminal: Terminal) -> MeshObserver:
        return LaneEvents(events, terminal)

    crypto: Crypto = Unsigned() if unsigned else SODIUM
    return Collaborators(crypto=crypto, observe=observe)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lanesync.cli.bench_lane")
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--unsigned", action="store_true", help="BENCHMARK ONLY: security off")
    parser.add_argument("cli", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cli_args = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    from lanesync.cli import main as cli_main

    log = EventLog(args.events)
    collaborators = lane_collaborators(log, unsigned=args.unsigned)
    profile_to = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile(time.process_time) if profile_to else None
    try:
        if profiler is not None:
            profiler.enable()
        cli_main.cli.main(
            args=cli_args, prog_name="lanesync", standalone_mode=False, obj=collaborators
        )
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{os.getpid()}")
        log.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
