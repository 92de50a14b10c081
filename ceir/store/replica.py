"""The hot table as replication sees it: snapshots and digests on any store, and on a
replica the applied position, kept in the same transaction as what it applied.

``replica`` sub-database, key ``state``: JSON of :class:`ReplicaState`. A store without
it has never been bootstrapped. Only the hot table (``devices`` and ``tacs``) and the
clone detector's states and pairs (``clones``, ``pairs``: what an (IMEI, IMSI) answer
reads) are copied: nothing of the registry's personal-data-bearing tables ever reaches a
replica, and a replica's own ``observations`` and ``imsi_vault`` survive a bootstrap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ceir.errors import RefusedMessageError, ReplicationError
from ceir.record import RECORD_SIZE
from ceir.store import changes
from ceir.store.clonetables import CLONE_SIZE, PAIR_KEY_SIZE, PAIR_SIZE
from ceir.store.env import Store
from ceir.store.tables import Tables

__all__ = [
    "CLONE_ROW",
    "DEVICE_ROW",
    "PAIR_ROW",
    "Applied",
    "HotSnapshot",
    "ReplicaState",
    "apply",
    "digests",
    "note",
    "replace",
    "state",
]

_STATE_KEY = b"state"
_KEY = 8
DEVICE_ROW = _KEY + RECORD_SIZE
"""A snapshot's device row: 8-byte key + 12-byte record."""
CLONE_ROW = _KEY + CLONE_SIZE
"""A snapshot's clone row: 8-byte key + packed state."""
PAIR_ROW = PAIR_KEY_SIZE + PAIR_SIZE
"""A snapshot's pair row: key (device, namespace, token) + kind and time."""
_TAC_HEAD = _KEY + 2
_RANGE_SPAN = 10**12  # bodies sharing the first two TAC digits: one digest range
_RANGES = 100


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """Where a replica stands. Times are Unix milliseconds."""

    applied: int
    """The last change-log sequence applied."""
    stream_seq: int
    """The broker's stream sequence of that change (resume after it)."""
    applied_ms: int
    """When the central committed it."""
    head: int = 0
    """The central's head sequence, as last heard."""
    head_ms: int = 0
    heard_ms: int = 0
    """When the central sent the last heart-beat heard."""
    refused: int = 0
    bootstraps: int = 0
    bootstrapped_ms: int = 0
    devices: int = 0

    def lag_seconds(self, now_ms: int | None = None) -> float:
        """How far behind the central this replica may be: 0 when it has everything the
        last heart-beat spoke of and that heart-beat is fresh."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        since = self.applied_ms
        if self.head <= self.applied:
            since = max(since, self.heard_ms)
        return max(0.0, (now - since) / 1000)


class Applied(NamedTuple):
    """One verified change-log entry, ready to apply."""

    seq: int
    stream_seq: int
    committed_ms: int
    body: bytes


def _read(tables: Tables) -> ReplicaState | None:
    value = tables.replica.get()
    return None if value is None else ReplicaState(**json.loads(value))


def _write(tables: Tables, new: ReplicaState) -> None:
    tables.replica.put(json.dumps(dataclasses.asdict(new), sort_keys=True).encode())


def state(store: Store) -> ReplicaState | None:
    """This replica's position, or None if it has never been bootstrapped."""
    with store.snapshot() as tables:
        return _read(tables)


def apply(store: Store, batch: Sequence[Applied]) -> ReplicaState:
    """Apply consecutive entries and record the position, in one write transaction."""

    def run(tables: Tables) -> ReplicaState:
        current = _read(tables)
        if current is None:
            raise ReplicationError("this replica has not been bootstrapped")
        if batch[0].seq != current.applied + 1:
            raise ReplicationError(
                f"change {batch[0].seq} does not follow the applied change {current.applied}"
            )
        for entry in batch:  # in order: a later change to a key wins
            _apply_body(tables, entry.body)
        last = batch[-1]
        new = dataclasses.replace(
            current,
            applied=last.seq,
            stream_seq=last.stream_seq,
            applied_ms=last.committed_ms,
            head=max(current.head, last.seq),
            devices=tables.devices.count(),
        )
        _write(tables, new)
        return new

    return store.write(run)


def _apply_body(tables: Tables, body: bytes) -> None:
    puts = changes.device_puts(body)
    if puts is not None:  # the bulk of it: one decode, one putmulti
        tables.devices.put_pairs(puts)
        return
    for op, key, value in changes.unpack_ops(body):
        if op is changes.Op.DEVICE_PUT and value is not None:
            tables.devices.put_pairs([(key, value)])
        elif op is changes.Op.DEVICE_DELETE:
            tables.devices.delete(key)
        elif op is changes.Op.TAC_PUT and value is not None:
            tables.tacs.put([(key, value)])
        elif op is changes.Op.TAC_DELETE:
            tables.tacs.delete(key)
        elif op is changes.Op.CLONE_PUT:
            tables.clones.put_packed(key, value)
        elif op is changes.Op.CLONE_DELETE:
            tables.clones.put_packed(key, None)
        elif op is changes.Op.PAIR_PUT and value is not None:
            tables.pairs.put_packed(key + value[:20], value[20:])
        elif op is changes.Op.PAIR_DELETE and value is not None:
            tables.pairs.put_packed(key + value, None)


def note(store: Store, *, head: int, head_ms: int, heard_ms: int, refused: int) -> None:
    """Record the last heart-beat heard and the refused-message count (a total)."""

    def run(tables: Tables) -> None:
        current = _read(tables)
        if current is not None:
            _write(
                tables,
                dataclasses.replace(
                    current,
                    head=max(head, current.applied),
                    head_ms=head_ms,
                    heard_ms=heard_ms,
                    refused=refused,
                ),
            )

    store.write(run)


def _fixed_rows(
    chunks: Sequence[bytes], key: int, size: int, what: str
) -> list[tuple[bytes, bytes]]:
    out = []
    for rows in chunks:
        if len(rows) % size:
            raise RefusedMessageError(f"snapshot {what} rows are truncated")
        out += [(rows[i : i + key], rows[i + key : i + size]) for i in range(0, len(rows), size)]
    return out


def replace(
    store: Store,
    *,
    seq: int,
    committed_ms: int,
    device_rows: Sequence[bytes],
    tac_rows: Sequence[bytes],
    clone_rows: Sequence[bytes] = (),
    pair_rows: Sequence[bytes] = (),
    expect: tuple[int, int, int, int],
) -> ReplicaState:
    """Replace the hot table, clone states and pairs with a verified snapshot, in one
    write transaction: readers see the old ones until the new are whole."""
    tac_pairs = [pair for rows in tac_rows for pair in _tac_pairs(rows)]
    clone_items = _fixed_rows(clone_rows, _KEY, CLONE_ROW, "clone")
    pair_items = _fixed_rows(pair_rows, PAIR_KEY_SIZE, PAIR_ROW, "pair")
    got = (len(clone_items), len(pair_items))
    if got != expect[2:]:
        raise RefusedMessageError(
            f"snapshot holds {got[0]} clone states and {got[1]} pairs, its header says "
            f"{expect[2]} and {expect[3]}"
        )

    def run(tables: Tables) -> ReplicaState:
        tables.devices.clear()
        tables.tacs.clear()
        count = 0
        for rows in device_rows:
            if len(rows) % DEVICE_ROW:
                raise RefusedMessageError("snapshot device rows are truncated")
            pairs = [
                (rows[i : i + _KEY], rows[i + _KEY : i + DEVICE_ROW])
                for i in range(0, len(rows), DEVICE_ROW)
            ]
            tables.devices.append(pairs)
            count += len(pairs)
        if tac_pairs:
            tables.tacs.put(tac_pairs)
        tables.clones.replace(clone_items)
        tables.pairs.replace(pair_items)
        if (count, len(tac_pairs)) != expect[:2]:
            raise RefusedMessageError(
                f"snapshot holds {count} devices and {len(tac_pairs)} TACs, "
                f"its header says {expect[0]} and {expect[1]}"
            )
        prior = _read(tables)
        new = ReplicaState(
            applied=seq,
            stream_seq=seq,
            applied_ms=committed_ms,
            head=max(seq, prior.head if prior else 0),
            head_ms=prior.head_ms if prior else 0,
            heard_ms=prior.heard_ms if prior else 0,
            refused=prior.refused if prior else 0,
            bootstraps=(prior.bootstraps if prior else 0) + 1,
            bootstrapped_ms=int(time.time() * 1000),
            devices=count,
        )
        _write(tables, new)
        return new

    return store.write(run)


def _tac_pairs(rows: bytes) -> Iterator[tuple[bytes, bytes]]:
    i = 0
    while i < len(rows):
        if i + _TAC_HEAD > len(rows):
            raise RefusedMessageError("snapshot TAC rows are truncated")
        n = int.from_bytes(rows[i + _KEY : i + _TAC_HEAD], "big")
        yield rows[i : i + _KEY], rows[i + _TAC_HEAD : i + _TAC_HEAD + n]
        i += _TAC_HEAD + n


class HotSnapshot:
    """The hot table in one read transaction, with the sequence it is at: the change
    log's head on the central, the applied sequence on a replica."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        position = _read(tables)
        if position is None:
            self.seq, self.committed_ms = tables.changes.last()
        else:
            self.seq, self.committed_ms = position.applied, position.applied_ms
        self.devices = tables.devices.count()
        self.tacs = tables.tacs.count()
        self.clones = tables.clones.count()
        self.pairs = tables.pairs.count()

    def device_chunks(self, rows: int = 50_000) -> Iterator[bytes]:
        """Packed device rows (:data:`DEVICE_ROW` bytes each), in key order."""
        return _chunks(self.tables.devices.packed_items(), rows)

    def tac_chunks(self, rows: int = 20_000) -> Iterator[bytes]:
        """Packed TAC rows: 8 digits, 2-byte length, value."""
        parts: list[bytes] = []
        for key, value in self.tables.tacs.packed_items():
            parts.append(key + len(value).to_bytes(2, "big") + value)
            if len(parts) >= rows:
                yield b"".join(parts)
                parts = []
        if parts:
            yield b"".join(parts)

    def clone_chunks(self, rows: int = 50_000) -> Iterator[bytes]:
        """Packed clone rows (:data:`CLONE_ROW` bytes each), in key order."""
        return _chunks(self.tables.clones.packed_items(), rows)

    def pair_chunks(self, rows: int = 50_000) -> Iterator[bytes]:
        """Packed pair rows (:data:`PAIR_ROW` bytes each), in key order."""
        return _chunks(self.tables.pairs.items(), rows)

    def digests(self) -> list[tuple[str, int, bytes]]:
        """(range, rows, SHA-256) per range: ``devices:NN`` by the first two TAC digits,
        then ``tacs``, ``clones`` and ``pairs``."""
        digests = [hashlib.sha256() for _ in range(_RANGES)]
        counts = [0] * _RANGES
        n, end = 0, _RANGE_SPAN.to_bytes(_KEY, "big")
        for key, value in self.tables.devices.packed_items():
            while key >= end and n < _RANGES - 1:
                n += 1
                end = ((n + 1) * _RANGE_SPAN).to_bytes(_KEY, "big")
            digests[n].update(key)
            digests[n].update(value)
            counts[n] += 1
        out = [(f"devices:{i:02d}", counts[i], digests[i].digest()) for i in range(_RANGES)]
        digest, count = hashlib.sha256(), 0
        for key, value in self.tables.tacs.packed_items():
            digest.update(key + len(value).to_bytes(2, "big") + value)
            count += 1
        out.append(("tacs", count, digest.digest()))
        for name, chunks in (("clones", self.clone_chunks()), ("pairs", self.pair_chunks())):
            digest, count = hashlib.sha256(), 0
            size = CLONE_ROW if name == "clones" else PAIR_ROW
            for chunk in chunks:
                digest.update(chunk)
                count += len(chunk) // size
            out.append((name, count, digest.digest()))
        return out


def _chunks(items: Iterator[tuple[bytes, bytes]], rows: int) -> Iterator[bytes]:
    parts: list[bytes] = []
    for key, value in items:
        parts.append(key)
        parts.append(value)
        if len(parts) >= 2 * rows:
            yield b"".join(parts)
            parts = []
    if parts:
        yield b"".join(parts)


@contextlib.contextmanager
def hot_snapshot(store: Store) -> Iterator[HotSnapshot]:
    """A consistent view of the hot table and its sequence (one read transaction)."""
    with store.snapshot() as tables:
        yield HotSnapshot(tables)


def digests(store: Store) -> tuple[int, list[tuple[str, int, bytes]]]:
    """The hot table's per-range digests and the sequence they are at."""
    with hot_snapshot(store) as snap:
        return snap.seq, snap.digests()
