"""A replica's pycrdt documents by name, and every read of them that needs no views.

``Replica`` holds one ``DocumentSet``: the documents (created on first use with the replica's
CRDT client id), each one's single top-level map, and the pycrdt subscriptions through which the
replica observes them (``adopt``). The reads here are plain reads of stored bytes: state vectors
and the updates another replica lacks, the records held, one value, the digest of the content.
What the views count is the replica's to say (``Replica.find_record`` asks the views which key
to read). ``DocumentSet`` is also what the views read records back from (``views.Documents``).

Apart from ``replica.py`` because none of it folds, writes or judges: the replica is the one
writer, through its own transactions, and the observers it hands in here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from pycrdt import Doc, Map, Subscription, TransactionEvent

from lanesync.core.ids import CATALOG_DOC, CONFIG_DOC
from lanesync.core.records import Record, Rejection, Sale, parse_record
from lanesync.core.updates import EMPTY_UPDATE, covered_by
from lanesync.errors import RemoteError

RECORDS_ROOT = "records"
CERTS_ROOT = "certs"

MapObserver = Callable[[str, Any], None]  # (document, pycrdt's Rust MapEvent)
TransactionObserver = Callable[[str, TransactionEvent], None]


class DocumentSet:
    def __init__(
        self, client_id: int, on_map_event: MapObserver, on_transaction: TransactionObserver
    ) -> None:
        """``on_map_event`` / ``on_transaction``: told, with the document's name, of every
        change to each document's map and of every transaction on it (``adopt``)."""
        self._client_id = client_id
        self._on_map_event = on_map_event
        self._on_transaction = on_transaction
        self.docs: dict[str, Doc[Any]] = {}
        self._roots: dict[str, Map[bytes]] = {}  # each document's one top-level map
        self._subscriptions: list[Subscription] = []

    def names(self) -> list[str]:
        return sorted(self.docs)

    def doc(self, name: str) -> Doc[Any]:
        """Document ``name``, created empty (and observed) when it is not held yet."""
        doc = self.docs.get(name)
        if doc is None:
            doc = self.adopt(name, Doc(client_id=self._client_id))
        return doc

    def adopt(self, name: str, doc: Doc[Any]) -> Doc[Any]:
        """Make ``doc`` the document ``name`` and observe it from now on."""
        root: Map[bytes] = doc.get(CERTS_ROOT if name == CONFIG_DOC else RECORDS_ROOT, type=Map)
        # pycrdt drops a callback when its Subscription is garbage collected: keep them.
        # The map is observed on its Rust object (``Map.integrated``): ``Map.observe`` wraps
        # every event in Python objects first, which cost ~27 us per merged transaction
        # (`lanesync bench receive-path`), and only the ``keys`` of an event are read here.
        self._subscriptions.append(root.integrated.observe(partial(self._on_map_event, name)))
        self._subscriptions.append(doc.observe(partial(self._on_transaction, name)))
        self.docs[name] = doc
        self._roots[name] = root  # ``Doc.get`` builds a new wrapper each call (~6 us)
        return doc

    def root(self, name: str) -> Map[bytes]:
        """Document ``name``'s map (the document is created when it is not held yet)."""
        root = self._roots.get(name)
        if root is None:
            self.doc(name)
            root = self._roots[name]
        return root

    def load(self, stored: Mapping[str, Sequence[bytes]]) -> None:
        """Build each document from its stored updates (the config first), and only then
        observe them: what was read is stored already, and the replica folds it as a whole."""
        loaded: dict[str, Doc[Any]] = {}
        for name in sorted(stored, key=lambda n: (n != CONFIG_DOC, n)):
            doc = loaded[name] = Doc(client_id=self._client_id)
            with doc.transaction():
                for update in stored[name]:
                    doc.apply_update(bytes(update))
        for name, doc in loaded.items():
            self.adopt(name, doc)

    def fresh(self, updates: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Per (document, update): is it new here, neither integrated in its document already
        nor a repeat of one earlier in ``updates``? One state vector per document."""
        vectors: dict[str, bytes | None] = {}
        seen: set[tuple[str, bytes]] = set()
        fresh: list[bool] = []
        for name, update in updates:
            data = bytes(update)
            if name not in vectors:
                doc = self.docs.get(name)
                vectors[name] = None if doc is None else bytes(doc.get_state())
            new = (name, data) not in seen and not covered_by(data, vectors[name])
            seen.add((name, data))
            fresh.append(new)
        return fresh

    def apply_merged(self, updates: Iterable[tuple[str, bytes]]) -> None:
        """Apply updates from elsewhere, all of one document in ONE transaction, documents in
        the order they first appear; ``RemoteError`` when pycrdt refuses one."""
        by_doc: dict[str, list[bytes]] = {}
        for name, update in updates:
            by_doc.setdefault(name, []).append(bytes(update))
        for name, batch in by_doc.items():
            doc = self.doc(name)
            try:
                with doc.transaction():
                    for data in batch:
                        doc.apply_update(data)
            except (ValueError, RuntimeError) as exc:
                raise RemoteError(f"CRDT update for {name} was refused: {exc}") from exc

    def apply_runs(self, rows: Sequence[tuple[str, bytes]]) -> None:
        """Apply (document, update) rows in their order, one transaction per run of rows of
        one document."""
        start = 0
        while start < len(rows):
            name = rows[start][0]
            end = start
            while end < len(rows) and rows[end][0] == name:
                end += 1
            doc = self.doc(name)
            with doc.transaction():
                for _, update in rows[start:end]:
                    doc.apply_update(bytes(update))
            start = end

    # -- reads ----------------------------------------------------------------------------------

    def state_vectors(self) -> dict[str, bytes]:
        return {name: bytes(doc.get_state()) for name, doc in sorted(self.docs.items())}

    def updates_since(self, state_vectors: Mapping[str, bytes]) -> dict[str, bytes]:
        """Per document, exactly what a replica with ``state_vectors`` lacks."""
        out: dict[str, bytes] = {}
        for name, doc in sorted(self.docs.items()):
            sv = state_vectors.get(name)
            try:
                update = bytes(doc.get_update(sv) if sv is not None else doc.get_update())
            except (ValueError, RuntimeError) as exc:
                raise RemoteError(f"state vector for {name} does not decode") from exc
            if update != EMPTY_UPDATE:
                out[name] = update
        return out

    def covered(self, name: str, updates: Iterable[bytes]) -> list[bool]:
        """For each update: is it fully integrated in document ``name`` (nothing pending)? One
        state vector for all of them: compaction asks this of every log row."""
        doc = self.docs.get(name)
        vector = None if doc is None else bytes(doc.get_state())
        return [covered_by(bytes(update), vector) for update in updates]

    def records(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, str, Record]]:
        """Every parseable record held, accepted or not."""
        for name in self.names() if names is None else names:
            if name == CONFIG_DOC or name not in self.docs:
                continue
            for key, value in self.root(name).items():
                parsed = parse_record(value)
                if not isinstance(parsed, Rejection):
                    yield name, key, parsed

    def entries(self, name: str) -> list[tuple[str, bytes]]:
        """A copy of document ``name``'s entries (key, value), unparsed: a reader that works
        in slices is then not disturbed by merges in between."""
        if name not in self.docs:
            return []
        return list(self.root(name).items())

    def value_at(self, doc: str, key: str) -> object:
        """The value stored under ``key`` in document ``doc``, or None (``views.Documents``)."""
        if doc not in self.docs:
            return None
        return self.root(doc).get(key)

    def record_at(self, key: str) -> Record | None:
        """The record stored under ``key`` in any document but the config, if one parses."""
        for name in self.names():
            if name == CONFIG_DOC:
                continue
            value = self.root(name).get(key)
            if value is not None:
                parsed = parse_record(value)
                if not isinstance(parsed, Rejection):
                    return parsed
        return None

    def sale_at(self, key: str) -> Sale | None:
        """The sale stored under ``key`` in a day's document (``views.Documents``: the views
        read a sale's lines back from here when a void credits them, instead of holding every
        sale's lines)."""
        for name in self.docs:
            if name in (CONFIG_DOC, CATALOG_DOC):
                continue
            value = self.root(name).get(key)
            if value is None:
                continue
            parsed = parse_record(value)
            if (
                not isinstance(parsed, Rejection)
                and parsed.key == key
                and isinstance(parsed.body, Sale)
            ):
                return parsed.body
        return None

    def digest(self) -> str:
        """Canonical digest of the content: every (document, key, value hash), sorted."""
        h = hashlib.blake2b(digest_size=32)
        for name in self.names():
            root = self.root(name)
            for key in sorted(root.keys()):
                value = root[key]
                h.update(f"{name}\x00{key}\x00".encode())
                h.update(hashlib.blake2b(_value_bytes(value), digest_size=32).digest())
        return h.hexdigest()


def with_tail(
    stored: Mapping[str, Sequence[bytes]], tail: Sequence[tuple[str, bytes]]
) -> dict[str, list[bytes]]:
    """Per document, its ``stored`` updates, then those of the (document, update) ``tail``."""
    merged = {name: list(updates) for name, updates in stored.items()}
    for name, update in tail:
        merged.setdefault(name, []).append(update)
    return merged


def _value_bytes(value: object) -> bytes:
    """Canonical bytes of any map value, for the digest; peers may store anything in a map."""
    if isinstance(value, bytes | bytearray):
        return b"b" + bytes(value)
    return b"o" + f"{type(value).__name__}:{value}".encode()
