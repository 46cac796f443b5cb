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

from lanesync.core import archive_codec, sealing
from lanesync.core.ids import CATALOG_DOC, CONFIG_DOC, LEDGER_PREFIX, TerminalId
from lanesync.core.records import Record, Rejection, Sale, parse_record
from lanesync.core.sealing import SEALED_SUMMARY, SealedDay
from lanesync.core.updates import EMPTY_UPDATE, covered_by
from lanesync.errors import RemoteError, StorageError

RECORDS_ROOT = "records"
CERTS_ROOT = "certs"

MapObserver = Callable[[str, Any], None]  # (document, pycrdt's Rust MapEvent)
TransactionObserver = Callable[[str, TransactionEvent], None]
ArchiveReader = Callable[[str], bytes]  # a sealed day -> its archive (archive_codec.compress'd)


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
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._digests: dict[str, bytes] = {}  # content_digest per open document, until changed
        # Sealed days (core.sealing), by document name: not in ``docs``; their records are read
        # back from their archives through ``read_archive`` (the owner's storage).
        self.sealed: dict[str, SealedDay] = {}
        # Report hashes of the earlier seals of days opened again by a late record, by document.
        self.amended: dict[str, tuple[str, ...]] = {}
        self.read_archive: ArchiveReader | None = None
        # Sealed days whose archive could not be read when a peer needed them (``updates_since``).
        self.damaged: set[str] = set()
        # (document, archive update) of each sealed day opened again, for the owner to store.
        self.unsealed: list[tuple[str, bytes]] = []
        self._archive_cache: tuple[str, Doc[Any]] | None = None  # the last archive read
        # The last archive's keys by record id ("terminal:seq"), for ``records_at``.
        self._archive_ids: tuple[str, dict[str, list[str]]] | None = None
        # The summary of ``sealed`` and its encoding, until a day is sealed or opened again:
        # every state message carries it (0.3 ms to make for a year's 365 days).
        self._summary: tuple[sealing.Summary, bytes] | None = None

    def restore_sealed(
        self, sealed: Iterable[SealedDay], amended: Mapping[str, tuple[str, ...]]
    ) -> None:
        """The sealed days and the days opened again that storage holds (at a restore)."""
        self.sealed = {s.doc: s for s in sealed}
        self.amended = dict(amended)
        self._summary = None

    def names(self) -> list[str]:
        """The documents held open (sealed days are not among them)."""
        return sorted(self.docs)

    def all_names(self) -> list[str]:
        """Every document, open or sealed."""
        return sorted([*self.docs, *self.sealed])

    def doc(self, name: str) -> Doc[Any]:
        """Document ``name``, created empty (and observed) when it is not held yet; a sealed
        day is opened again first (``unseal``: the caller is about to change it)."""
        doc = self.docs.get(name)
        if doc is None:
            if name in self.sealed:
                self.unseal(name)
                return self.docs[name]
            doc = self.adopt(name, Doc(client_id=self._client_id))
        return doc

    def adopt(self, name: str, doc: Doc[Any]) -> Doc[Any]:
        """Make ``doc`` the document ``name`` and observe it from now on."""
        root: Map[bytes] = doc.get(CERTS_ROOT if name == CONFIG_DOC else RECORDS_ROOT, type=Map)
        # pycrdt drops a callback when its Subscription is garbage collected: keep them.
        # The map is observed on its Rust object (``Map.integrated``): ``Map.observe`` wraps
        # every event in Python objects first, which cost ~27 us per merged transaction
        # (`lanesync bench receive-path`), and only the ``keys`` of an event are read here.
        self._subscriptions[name] = [
            root.integrated.observe(partial(self._on_map_event, name)),
            doc.observe(partial(self._on_transaction, name)),
            doc.observe(partial(self._changed, name)),
        ]
        self.docs[name] = doc
        self._roots[name] = root  # ``Doc.get`` builds a new wrapper each call (~6 us)
        self._digests.pop(name, None)
        return doc

    def _changed(self, name: str, _event: TransactionEvent) -> None:
        self._digests.pop(name, None)

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

    # -- sealed days ----------------------------------------------------------------------------

    def seal(self, sealed: SealedDay) -> None:
        """Drop the open document of ``sealed.day`` (its archive is stored): from now on it is
        read from the archive, and named in no state vector."""
        name = sealed.doc
        doc = self.docs.pop(name)
        self._roots.pop(name, None)
        self._subscriptions.pop(name, None)
        self._digests.pop(name, None)
        self.amended.pop(name, None)
        self.sealed[name] = sealed
        self._summary = None
        self._archive_cache = (name, doc)
        self._archive_ids = None

    def unseal(self, name: str) -> bytes:
        """Open sealed document ``name`` again from its archive; returns the archive's CRDT
        update (the owner stores it as the document's first log row)."""
        sealed = self.sealed[name]
        update = self.archived_update(name)
        doc: Doc[Any] = Doc(client_id=self._client_id)
        doc.apply_update(update)
        del self.sealed[name]
        self._summary = None
        self.amended[name] = (*sealed.amended_from, sealed.report_hash)
        self.adopt(name, doc)  # observed only now: its entries are folded already
        self._archive_cache = None
        self._archive_ids = None
        self.unsealed.append((name, update))
        return update

    def archived_update(self, name: str) -> bytes:
        """``StorageError`` when the stored archive does not decompress (a damaged database:
        ``lanesync verify --day`` says what else is wrong with it)."""
        if self.read_archive is None:
            raise RuntimeError("a sealed day is read with no archive reader attached")
        day = self.sealed[name].day
        try:
            return archive_codec.decompress(self.read_archive(day))
        except ValueError as exc:
            raise StorageError(f"{exc} ({day}): run `lanesync verify --day {day}`") from exc

    def archived(self, name: str) -> Doc[Any]:
        """Sealed document ``name``, built from its archive (the last one read is kept)."""
        if self._archive_cache is not None and self._archive_cache[0] == name:
            return self._archive_cache[1]
        doc: Doc[Any] = Doc()
        doc.apply_update(self.archived_update(name))
        self._archive_cache = (name, doc)
        return doc

    def records_at(self, terminal: str, seq: int) -> list[Record]:
        """Every parseable record of ``terminal`` at ``seq`` in a day's document: in the sealed
        days whose seqs of ``terminal`` hold ``seq``, else in the open ledgers (a sealed day
        opened again by a late record)."""
        record_id = f"{terminal}:{seq}"
        found: list[Record] = []
        for name, sealed in sorted(self.sealed.items()):
            if sealed.holds_seq(terminal, seq):
                found += self._parsed(name, self._archive_keys(name).get(record_id, []))
        if found:
            return found
        for name in self.names():
            if name.startswith(LEDGER_PREFIX):
                root = self._roots[name]
                keys = [k for k in root.keys() if k.partition("#")[0] == record_id]  # noqa: SIM118 - a pycrdt Map is not typed as iterable
                found += self._parsed(name, keys)
        return found

    def _parsed(self, name: str, keys: Iterable[str]) -> list[Record]:
        out = []
        for key in keys:
            parsed = parse_record(self.value_at(name, key))
            if not isinstance(parsed, Rejection) and parsed.key == key:
                out.append(parsed)
        return out

    def _archive_keys(self, name: str) -> dict[str, list[str]]:
        """A sealed day's keys by record id (kept for the last archive read)."""
        if self._archive_ids is not None and self._archive_ids[0] == name:
            return self._archive_ids[1]
        by_id: dict[str, list[str]] = {}
        for key in self._archived_map(name).keys():  # noqa: SIM118 - a pycrdt Map is not typed as iterable
            by_id.setdefault(key.partition("#")[0], []).append(key)
        self._archive_ids = (name, by_id)
        return by_id

    def sealed_holding(self, from_seq: Mapping[TerminalId, int]) -> list[str]:
        """The sealed days (documents) that hold a record of a terminal of ``from_seq`` at or
        past its seq there, by the seqs each sealed day holds (no archive is read)."""
        return sorted(
            name
            for name, sealed in self.sealed.items()
            if any(
                hi >= from_seq.get(TerminalId(terminal), hi + 1) for terminal, _, hi in sealed.seqs
            )
        )

    def sealed_prefixes(self) -> dict[TerminalId, int]:
        """Per terminal, the highest seq s such that every record 1..s of it is in a sealed
        day (by the seqs each sealed day holds): the hashes the views may drop."""
        runs: dict[str, list[tuple[int, int]]] = {}
        for sealed in self.sealed.values():
            for terminal, lo, hi in sealed.seqs:
                runs.setdefault(terminal, []).append((lo, hi))
        prefixes: dict[TerminalId, int] = {}
        for terminal, spans in runs.items():
            reached = 0
            for lo, hi in sorted(spans):
                if lo > reached + 1:
                    break
                reached = max(reached, hi)
            if reached:
                prefixes[TerminalId(terminal)] = reached
        return prefixes

    def _map(self, name: str) -> Map[bytes] | None:
        """Document ``name``'s map, open or sealed, or None when neither."""
        root = self._roots.get(name)
        if root is not None:
            return root
        return self._archived_map(name) if name in self.sealed else None

    def _archived_map(self, name: str) -> Map[bytes]:
        """Sealed day ``name``'s map, from its archive."""
        archived: Map[bytes] = self.archived(name).get(RECORDS_ROOT, type=Map)
        return archived

    def summary(self) -> sealing.Summary | None:
        return self._own_summary()[0] if self.sealed else None

    def _own_summary(self) -> tuple[sealing.Summary, bytes]:
        if self._summary is None:
            summary = sealing.summarize(self.sealed.values())
            self._summary = (summary, sealing.encode_summary(summary))
        return self._summary

    # -- merging --------------------------------------------------------------------------------

    def _vector(self, name: str) -> bytes | None:
        doc = self.docs.get(name)
        if doc is not None:
            return bytes(doc.get_state())
        sealed = self.sealed.get(name)
        return None if sealed is None else sealed.state_vector

    def fresh(self, updates: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Per (document, update): is it new here, neither integrated in its document already
        (open or sealed) nor a repeat of one earlier in ``updates``? One state vector per
        document."""
        vectors: dict[str, bytes | None] = {}
        seen: set[tuple[str, bytes]] = set()
        fresh: list[bool] = []
        for name, update in updates:
            data = bytes(update)
            if name not in vectors:
                vectors[name] = self._vector(name)
            new = (name, data) not in seen and not covered_by(data, vectors[name])
            seen.add((name, data))
            fresh.append(new)
        return fresh

    def apply_merged(self, updates: Iterable[tuple[str, bytes]]) -> None:
        """Apply updates from elsewhere, all of one document in ONE transaction, documents in
        the order they first appear; ``RemoteError`` when pycrdt refuses one. A sealed day an
        update names is opened again first (``unseal``)."""
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

    # -- state-vector exchange ------------------------------------------------------------------

    def state_vectors(
        self, peer: Mapping[str, bytes] | None = None, *, every_sealed: bool = False
    ) -> dict[str, bytes]:
        """The state vector of every open document, the summary of the sealed days, and the
        archived vectors a peer (whose last state is ``peer``) needs to hear (see
        ``core.sealing``: the echo, and every sealed day while the digests disagree).
        ``every_sealed``: every sealed day's vector too (a state file: no echo comes back)."""
        out = {name: bytes(doc.get_state()) for name, doc in sorted(self.docs.items())}
        if not self.sealed:
            return out
        out[SEALED_SUMMARY] = self._own_summary()[1]
        if peer is None and not every_sealed:
            return out
        peer = peer or {}
        disagree = every_sealed or self._digests_disagree(peer)
        for name, sealed in sorted(self.sealed.items()):
            theirs = peer.get(name)
            if disagree or (theirs is not None and not sealing.same_vector(theirs, sealed)):
                out[name] = sealed.state_vector
        return out

    def _digests_disagree(self, peer: Mapping[str, bytes]) -> bool:
        """May the peer hold another version of a day we both sealed? Decided by the side that
        sealed every day the other did: it compares the peer's digest with its own over the
        peer's days. When neither side's sealed days include the other's, neither can compare:
        every sealed day's vector is named until they can (found by black-box QA: two lanes
        that each sealed a day alone, one of them also later days, never exchanged it)."""
        theirs = sealing.peer_summary(peer)
        if theirs is None:
            return False
        mine = {s.day: s for s in self.sealed.values()}
        days = theirs.days()
        if days == mine.keys():  # the usual case: the same days sealed on both sides
            return self._own_summary()[0].digest != theirs.digest
        if days <= mine.keys():
            return sealing.digest_of(mine, days) != theirs.digest
        return not mine.keys() <= days  # they sealed all we did: they compare

    def updates_since(self, peer: Mapping[str, bytes]) -> dict[str, bytes]:
        """Per document, exactly what a replica whose state is ``peer`` lacks: of an open
        document or a sealed one (from its archive). A day the peer sealed and does not name is
        sent to it only when the digests say it may lack something (``state_vectors``)."""
        theirs = _peer_sealed(peer)
        out: dict[str, bytes] = {}
        for name in self.all_names():
            sv = peer.get(name)
            if sv is None and name.startswith(LEDGER_PREFIX) and name[7:] in theirs:
                continue
            sealed = self.sealed.get(name)
            if (
                sealed is not None
                and sv is not None
                and sealing.vector_covers(sv, sealed.state_vector)
            ):
                continue
            try:
                doc = self.docs.get(name) or self.archived(name)
            except StorageError:
                # A damaged archive (black-box QA: it broke every link that needed the day,
                # with a traceback each time): the other documents still go; the owner logs
                # it (``damaged``) and ``lanesync verify --day`` says what is wrong.
                self.damaged.add(name)
                continue
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
        vector = self._vector(name)
        return [covered_by(bytes(update), vector) for update in updates]

    # -- reads ----------------------------------------------------------------------------------

    def records(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, str, Record]]:
        """Every parseable record held, accepted or not (of sealed days too, from archives)."""
        for name in self.all_names() if names is None else names:
            if name == CONFIG_DOC:
                continue
            root = self._map(name)
            if root is None:
                continue
            for key, value in root.items():
                parsed = parse_record(value)
                if not isinstance(parsed, Rejection):
                    yield name, key, parsed

    def entries(self, name: str) -> list[tuple[str, bytes]]:
        """A copy of document ``name``'s entries (key, value), unparsed: a reader that works
        in slices is then not disturbed by merges in between."""
        root = self._map(name)
        return [] if root is None else list(root.items())

    def value_at(self, doc: str, key: str) -> object:
        """The value stored under ``key`` in document ``doc``, or None (``views.Documents``)."""
        root = self._map(doc)
        return None if root is None else root.get(key)

    def _places(self, key: str, skip: Iterable[str] = ()) -> Iterator[str]:
        """Documents that may hold record ``key``: every open one, then the sealed days whose
        seqs of its terminal include its seq."""
        skipped = set(skip)
        yield from (name for name in self.names() if name not in skipped)
        record_id, _, _ = key.partition("#")
        terminal, _, seq = record_id.rpartition(":")
        if not seq.isdigit():
            return
        for name, sealed in sorted(self.sealed.items()):
            if sealed.holds_seq(terminal, int(seq)):
                yield name

    def record_at(self, key: str) -> Record | None:
        """The record stored under ``key`` in any document but the config, if one parses."""
        for name in self._places(key, skip=(CONFIG_DOC,)):
            value = self.value_at(name, key)
            if value is not None:
                parsed = parse_record(value)
                if not isinstance(parsed, Rejection):
                    return parsed
        return None

    def sale_at(self, key: str) -> Sale | None:
        """The sale stored under ``key`` in a day's document (``views.Documents``: the views
        read a sale's lines back from here when a void credits them, instead of holding every
        sale's lines)."""
        for name in self._places(key, skip=(CONFIG_DOC, CATALOG_DOC)):
            value = self.value_at(name, key)
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

    def content_digest(self, name: str) -> bytes:
        """Canonical digest of one document's content: every (key, value hash), sorted."""
        sealed = self.sealed.get(name)
        if sealed is not None:
            return sealed.digest
        cached = self._digests.get(name)
        if cached is not None:
            return cached
        digest = self._digests[name] = map_digest(self._roots[name])
        return digest

    def digest(self) -> str:
        """Canonical digest of the content: every document's name and ``content_digest``,
        sorted; a document with no entries counts as none (sealed or not, a day is the same
        content)."""
        h = hashlib.blake2b(digest_size=32)
        for name in self.all_names():
            if name in self.docs and not len(self._roots[name]):
                continue
            h.update(f"{name}\x00".encode())
            h.update(self.content_digest(name))
        return h.hexdigest()


def map_digest(root: Map[Any]) -> bytes:
    """Canonical digest of a document's map (``DocumentSet.content_digest``): every (key,
    value hash), sorted."""
    h = hashlib.blake2b(digest_size=32)
    for key in sorted(root.keys()):
        h.update(f"{key}\x00".encode())
        h.update(hashlib.blake2b(_value_bytes(root[key]), digest_size=32).digest())
    return h.digest()


def _peer_sealed(peer: Mapping[str, bytes]) -> frozenset[str]:
    summary = sealing.peer_summary(peer)
    return frozenset() if summary is None else summary.days()


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
