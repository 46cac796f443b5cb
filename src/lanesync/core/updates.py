"""CRDT update bytes on their own, without a document: do they decode, and are they held?

Yjs updates travel between replicas as lib0-encoded bytes (pycrdt's ``Doc.get_update``). Before
a replica applies a peer's update it checks that the bytes decode (``check_update``), and it
asks whether a state vector already holds everything an update carries (``covered_by``): the
merge uses that to tell new updates from repeats, the relay to forward only what was integrated,
and compaction to find log rows a document holds. Neither touches a ``Doc``, so both are safe
off the document's owner thread.
"""

from __future__ import annotations

import pycrdt

from lanesync.errors import RemoteError

EMPTY_UPDATE = b"\x00\x00"  # lib0 encoding of an update with no structs and no deletions
EMPTY_STATE = b"\x00"  # lib0 encoding of the state vector of an empty document


def _is_panic(exc: BaseException) -> bool:
    # pyo3's PanicException derives from BaseException and lives in a module we cannot import
    # by name; match it by name so everything else (KeyboardInterrupt...) still propagates.
    return type(exc).__name__ == "PanicException"


def check_update(update: bytes) -> None:
    """Decode a CRDT update without applying it; RemoteError when it is not one."""
    if not isinstance(update, bytes | bytearray) or not update:
        raise RemoteError("CRDT update is empty or not bytes")
    try:
        pycrdt.get_state(bytes(update))
    except (ValueError, RuntimeError) as exc:
        raise RemoteError("CRDT update does not decode") from exc
    except BaseException as exc:
        if _is_panic(exc):
            raise RemoteError("CRDT update does not decode") from None
        raise


def covered_by(update: bytes, state_vector: bytes | None) -> bool:
    """True when a document whose state vector is ``state_vector`` (None: no such document)
    holds everything in ``update``. Pure bytes in, bytes out: touches no Doc, so it is safe off
    the document's owner thread (compaction uses it that way)."""
    if state_vector is None:
        return False
    try:
        return bytes(pycrdt.get_update(update, state_vector)) == EMPTY_UPDATE
    except (ValueError, RuntimeError):
        return False  # undecodable: merge's own checks reject it
