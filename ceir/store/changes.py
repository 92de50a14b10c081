"""The change log: every committed change to the hot table, in commit order (an outbox).

Written inside the same write transaction as the change it describes, so a crash between
commit and publish loses nothing: the relay (:mod:`ceir.replication.publisher`) reads it
and publishes what the broker has not got. Each entry holds only what a lookup needs —
device keys, 12-byte records, TAC rows — never personal data or identity tokens.

``changes``: 8-byte big-endian sequence (1, 2, ...) -> 8-byte commit time (Unix ms) +
packed operations. One transaction writes one or more entries, each at most
:data:`MAX_ENTRY_BYTES` of operations, so every entry fits in one broker message.

A body made only of device puts (what an import writes, 21 bytes a device) is stored
compressed (:func:`seal`): its bytes regrouped by position in the 21-byte operation
(every operation's first byte, then every second byte, ...: the keys' high bytes and the
records' repeated fields become long runs) and deflated, ~3 bytes a device. Only the
table view seals and opens bodies (:class:`ceir.store.tables.ChangeLog`): the relay, the
followers and the bootstrap see the operations as they were packed.
"""

from __future__ import annotations

import enum
import struct
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ceir.errors import StoreError
from ceir.record import RECORD_SIZE

if TYPE_CHECKING:
    from ceir.store.env import Store
    from ceir.store.tables import Tables

__all__ = [
    "MAX_ENTRY_BYTES",
    "Entry",
    "Op",
    "Trimmed",
    "entries",
    "first",
    "head",
    "pack_ops",
    "record",
    "trim",
    "unpack_ops",
]

MAX_ENTRY_BYTES = 512 * 1024
"""Operations per entry (bytes). With the envelope and signature a message stays well
under NATS's default ``max_payload`` of 1 MiB."""
_TRIM_BATCH = 1_000
"""Entries deleted per write transaction while trimming, so a long trim never holds the
one writer's lock for long (imports and single writes wait for it)."""
_TAC_LEN = struct.Struct(">H")
_KEY = 8


class Op(enum.IntEnum):
    """What one operation does."""

    DEVICE_PUT = 1
    DEVICE_DELETE = 2
    TAC_PUT = 3
    TAC_DELETE = 4
    CLONE_PUT = 5
    """A device's clone state (:mod:`ceir.store.clonetables`): key, 16-byte value."""
    CLONE_DELETE = 6
    PAIR_PUT = 7
    """A pair: device key; value = namespace (4) + token (16) + kind and time (5)."""
    PAIR_DELETE = 8
    """value = namespace (4) + token (16)."""


# Fixed value sizes of the clone detector's operations (their key is the device's).
_FIXED = {Op.CLONE_PUT: 16, Op.CLONE_DELETE: 0, Op.PAIR_PUT: 25, Op.PAIR_DELETE: 20}


@dataclass(frozen=True, slots=True)
class Entry:
    """One change-log entry."""

    seq: int
    committed_ms: int
    body: bytes
    """Packed operations (:func:`unpack_ops`)."""


def _device_op(key: bytes, value: bytes | None) -> bytes:
    if value is None:
        return bytes((Op.DEVICE_DELETE,)) + key
    return bytes((Op.DEVICE_PUT,)) + key + value


def _tac_op(key: bytes, value: bytes | None) -> bytes:
    if value is None:
        return bytes((Op.TAC_DELETE,)) + key
    return bytes((Op.TAC_PUT,)) + key + _TAC_LEN.pack(len(value)) + value


def clone_op(op: Op, key: bytes, value: bytes = b"") -> bytes:
    """One operation of the clone detector's (:data:`Op.CLONE_PUT` ... :data:`Op.PAIR_DELETE`)."""
    if len(value) != _FIXED[op] or len(key) != _KEY:
        raise StoreError(f"{op.name} needs an 8-byte key and a {_FIXED[op]}-byte value")
    return bytes((op,)) + key + value


def pack_ops(
    devices: Iterable[tuple[bytes, bytes | None]] = (),
    tacs: Iterable[tuple[bytes, bytes | None]] = (),
    others: Iterable[bytes] = (),
) -> list[bytes]:
    """Pack device and TAC changes (value None: deleted) into bodies of at most
    :data:`MAX_ENTRY_BYTES` each, in the order given (TACs after devices, then *others*:
    operations packed by :func:`clone_op`)."""
    bodies: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    ops = [_device_op(k, v) for k, v in devices] + [_tac_op(k, v) for k, v in tacs]
    ops += others
    for op in ops:
        if size + len(op) > MAX_ENTRY_BYTES and parts:
            bodies.append(b"".join(parts))
            parts, size = [], 0
        parts.append(op)
        size += len(op)
    if parts:
        bodies.append(b"".join(parts))
    return bodies


_DEVICE_PUT = 1 + _KEY + RECORD_SIZE
_DEVICE_PUT_ROW = [("op", "u1"), ("key", f"V{_KEY}"), ("record", f"V{RECORD_SIZE}")]


def device_puts(body: bytes) -> Iterator[tuple[bytes, bytes]] | None:
    """The (key, record) pairs of a body made only of device puts (what imports write),
    decoded in one pass; None for any other body (use :func:`unpack_ops`)."""
    import numpy as np

    n, rest = divmod(len(body), _DEVICE_PUT)
    if rest or body[::_DEVICE_PUT] != bytes((Op.DEVICE_PUT,)) * n:
        return None
    # Void fields: tolist() gives the exact bytes (an S field would strip trailing NULs).
    rows = np.frombuffer(body, _DEVICE_PUT_ROW)
    return zip(rows["key"].tolist(), rows["record"].tolist(), strict=True)


_SEALED = b"\xf0"
"""The first byte of a sealed body (never an :class:`Op`)."""
_SEAL_MIN = 64
"""Device puts below this many are stored as they are (single writes)."""


def seal(body: bytes) -> bytes:
    """*body* as stored: compressed when it is only device puts (:func:`open_body`
    reverses it)."""
    n = len(body) // _DEVICE_PUT
    if n < _SEAL_MIN or device_puts(body) is None:
        return body
    import numpy as np

    planes = np.frombuffer(body, np.uint8).reshape(n, _DEVICE_PUT).T.tobytes()
    return _SEALED + zlib.compress(planes, 1)


def open_body(stored: bytes) -> bytes:
    """The packed operations of a stored body (:func:`seal`); StoreError if damaged."""
    if stored[:1] != _SEALED:
        return stored
    import numpy as np

    try:
        planes = zlib.decompress(stored[1:])
    except zlib.error as exc:
        raise StoreError(f"change-log entry does not decompress: {exc}") from exc
    n, rest = divmod(len(planes), _DEVICE_PUT)
    if rest:
        raise StoreError("change-log entry is truncated")
    return np.frombuffer(planes, np.uint8).reshape(_DEVICE_PUT, n).T.tobytes()


def unpack_ops(body: bytes) -> Iterator[tuple[Op, bytes, bytes | None]]:
    """(op, key, value or None) for each operation in *body*; StoreError if malformed."""
    i, end = 0, len(body)
    try:
        while i < end:
            op = Op(body[i])
            key = body[i + 1 : i + 1 + _KEY]
            i += 1 + _KEY
            if op is Op.DEVICE_PUT:
                value: bytes | None = body[i : i + RECORD_SIZE]
                i += RECORD_SIZE
            elif op is Op.TAC_PUT:
                (n,) = _TAC_LEN.unpack_from(body, i)
                value = body[i + 2 : i + 2 + n]
                i += 2 + n
            elif op in _FIXED:
                value = body[i : i + _FIXED[op]]
                i += _FIXED[op]
            else:
                value = None
            if i > end or len(key) != _KEY:
                raise StoreError("change-log entry is truncated")
            yield op, key, value
    except (ValueError, struct.error) as exc:
        raise StoreError(f"malformed change-log entry at byte {i}") from exc


def record(
    tables: Tables,
    devices: Sequence[tuple[bytes, bytes | None]] = (),
    tacs: Sequence[tuple[bytes, bytes | None]] = (),
    *,
    others: Sequence[bytes] = (),
    at_ms: int | None = None,
) -> int:
    """Append the changes to the log inside a write transaction; returns the last sequence
    written (the head as it was when there is nothing to write)."""
    seq, _ = tables.changes.last()
    if not devices and not tacs and not others:
        return seq
    bodies = pack_ops(devices, tacs, others)
    tables.changes.append(seq + 1, int(time.time() * 1000) if at_ms is None else at_ms, bodies)
    return seq + len(bodies)


def head(store: Store) -> tuple[int, int]:
    """(last sequence, its commit time in Unix ms); (0, 0) for an empty log."""
    with store.snapshot() as tables:
        return tables.changes.last()


def entries(store: Store, after: int, limit: int) -> list[Entry]:
    """Up to *limit* entries with a sequence above *after*, in order."""
    with store.snapshot() as tables:
        return [Entry(*row) for row in tables.changes.after(after, limit)]


def first(store: Store) -> int:
    """The lowest sequence the log still holds (0 for an empty log)."""
    with store.snapshot() as tables:
        return tables.changes.first()


@dataclass(frozen=True, slots=True)
class Trimmed:
    """What one :func:`trim` removed, and where the log now starts."""

    entries: int
    bytes: int
    first: int
    """The lowest sequence left (0: the log is empty)."""


def trim(store: Store, *, below: int, before_ms: int) -> Trimmed:
    """Delete the entries numbered below *below* (those the stream acknowledged) that were
    committed before *before_ms* (past retention), oldest first, in short transactions.

    The head entry is never deleted: the log's last sequence is the next change's
    predecessor (:func:`record`), so the numbering goes on after any trim.
    """
    entries = size = 0
    while True:

        def run(tables: Tables) -> tuple[int, int]:
            last, _ = tables.changes.last()
            return tables.changes.trim(min(below, last), before_ms, _TRIM_BATCH)

        count, freed = store.write(run)
        entries += count
        size += freed
        if count < _TRIM_BATCH:
            return Trimmed(entries, size, first(store))
