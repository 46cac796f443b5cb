"""The bench lane driver (cli/bench_lane.py) as the benchmark starts it: a real ``run`` in a
subprocess, handed its collaborators through the CLI. The ``lanesync-unsigned`` baseline must
skip exactly the per-record and per-frame crypto, and the ``lanesync`` lane must do all of it:
each check below fails if the lane ignored the crypto it was handed (or was handed the wrong one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import AcceptAll
from websockets.sync.client import connect

from lanesync.cli.bench_lane import Unsigned
from lanesync.core import bodies
from lanesync.core.connection import Closed, PeerConnection, Received
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.identity import DOMAIN_RECORD, SIGNATURE_SIZE, Role, verify_signature
from lanesync.core.ids import RecordId
from lanesync.core.wire import Sealed, decode_frame, decode_message
from lanesync.errors import ProtocolViolation
from lanesync.shell.directories import StoreDirectory, TerminalDirectory
from lanesync.shell.runtime import DaemonClient
from lanesync.shell.terminal import Terminal, wall_clock_ms
from lanesync.tools.procs import ProcessGroup

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 30.0
IO_TIMEOUT_S = 10.0
ZERO_SIGNATURE = bytes(SIGNATURE_SIZE)


def bundle_of_one_receipt(path: Path, crypto: Crypto) -> bytes:
    """A bundle from the terminal at ``path`` holding one receipt of 5 milk, the record signed
    with ``crypto`` (the bundle itself is always signed for real)."""
    with Terminal.open(path, crypto=crypto) as terminal:
        terminal.write(lambda _views: bodies.build_receipt("milk", 5))
        return terminal.export_bundle()


def on_hand(client: DaemonClient) -> dict[str, int]:
    return {i["sku"]: i["on_hand"] for i in client.call("GET", "/v1/stock")["items"]}


def first_sealed_frame(listen: str, peer_dir: TerminalDirectory, crypto: Crypto) -> bytes:
    """Connect as ``peer_dir``'s terminal with ``crypto``, complete the handshake and return
    the raw box of the lane's first sealed frame (once the peer's own core opened it)."""
    peer = PeerConnection(peer_dir.me, peer_dir.store, AcceptAll(), crypto=crypto)
    peer.start()
    with connect(listen, proxy=None, compression=None, open_timeout=IO_TIMEOUT_S) as ws:
        for frame in peer.data_to_send():
            ws.send(frame)
        while True:
            data = ws.recv(IO_TIMEOUT_S)
            assert isinstance(data, bytes)
            peer.receive_data(data, wall_clock_ms())
            for frame in peer.data_to_send():
                ws.send(frame)
            events = peer.events_received()
            assert not [e for e in events if isinstance(e, Closed)], events
            if any(isinstance(e, Received) for e in events):
                sealed = decode_frame(data)
                assert isinstance(sealed, Sealed)
                return sealed.box


@pytest.mark.parametrize("unsigned", [False, True], ids=["lanesync", "lanesync-unsigned"])
def test_the_unsigned_lane_skips_exactly_the_record_and_frame_crypto(
    tmp_path: Path, unsigned: bool
) -> None:
    store = StoreDirectory.init(tmp_path / "store", "s1")
    now = wall_clock_ms()
    store.enroll(tmp_path / "lane1", "lane1", Role.CASHIER, now, 30)
    store.enroll(tmp_path / "lane2", "lane2", Role.CASHIER, now, 30)
    # Made offline before the lane starts: lane2's receipt with a zero signature.
    zero_signed = bundle_of_one_receipt(tmp_path / "lane2", Unsigned())
    args = ["-m", "lanesync.cli.bench_lane", "--events", tmp_path / "events.bin"]
    args += [*(["--unsigned"] if unsigned else []), "--", "run", tmp_path / "lane1"]
    group = ProcessGroup(tmp_path / "logs")
    try:
        lane = group.spawn("lane1", tmp_path / "lane1", [*args, "--no-discovery"])
        lane.wait_ready(START_TIMEOUT_S)
        client = DaemonClient.for_directory(tmp_path / "lane1")
        assert client is not None
        # Verification: only the unsigned lane believes a zero signature.
        client.call("POST", "/v1/import", raw=zero_signed)
        assert on_hand(client).get("milk") == (5 if unsigned else None)

        # Frames: a peer must speak the lane's frame cipher; the unsigned lane's are in clear.
        listen = client.call("GET", "/v1/status")["listen"]
        lane2 = TerminalDirectory.open(tmp_path / "lane2")
        box = first_sealed_frame(listen, lane2, Unsigned() if unsigned else SODIUM)
        if unsigned:
            decode_message(box)
        else:
            with pytest.raises(ProtocolViolation):
                decode_message(box)

        # Signing: the lane's own record carries a zero signature, or a real one.
        record_id = client.call("POST", "/v1/stock/receive", {"sku": "bread", "qty": 1})
        assert lane.stop() == 0
    finally:
        group.close()
    with Terminal.open(tmp_path / "lane1") as lane1:
        record = lane1.replica.find_record(RecordId.parse(record_id["record_id"]))
    assert record is not None
    public_key = record_signer_key(tmp_path / "lane1")
    signed = verify_signature(public_key, DOMAIN_RECORD, record.payload, record.signature)
    assert (record.signature == ZERO_SIGNATURE, signed) == (unsigned, not unsigned)


def record_signer_key(path: Path) -> bytes:
    return TerminalDirectory.open(path).me.certificate.public_key
