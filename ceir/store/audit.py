"""The append-only audit log: who changed which device, when, from where, old -> new.

Every accepted change to a device is one entry, keyed by a sequence number that only
grows, and indexed by device. An entry names its *origin* — one feed file import or one
request — whose record (in ``imports``) names the principal, the channel and the file
(name and SHA-256) or request. Entries hold records and tokens, never personal data.

Appending happens inside the caller's write transaction, so a change and its entry
commit together or not at all.

The log is a **chain**: each entry carries the hash of the one before it (SHA-256 over
the previous entry's sequence number, its bytes and the fixed fields of its origin: actor,
kind, file, digest, request). Editing an entry or its origin's actor breaks the link of
the next entry; rewriting the whole chain changes the head hash, which ``ceir verify``
prints so that an operator can keep it elsewhere and check it later (``--expect-head``).
Entries written before the chain existed carry no link; the chain starts after them.
"""

from __future__ import annotations

import enum
import getpass
import hashlib
import json
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ceir.record import RECORD_SIZE, Record
from ceir.store import Store
from ceir.store import changes as change_log
from ceir.store.tables import Tables

if TYPE_CHECKING:  # numpy is loaded by the bulk import only (append_columns)
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "Action",
    "AuditEntry",
    "Change",
    "Columns",
    "append",
    "append_columns",
    "flag_set_at",
    "get_origin",
    "history",
    "local_actor",
    "new_origin",
    "put_origin",
]

# at, origin, line, action, presence (1: old, 2: new), key, old, new
_ENTRY = struct.Struct(f">IIIBB8s{RECORD_SIZE}s{RECORD_SIZE}s")
_EMPTY = bytes(RECORD_SIZE)
_SEQ = struct.Struct(">Q")
HASH_BYTES = 32
GENESIS = bytes(HASH_BYTES)
"""The link of the first entry: no entry before it."""
_ORIGIN_FIELDS = ("actor", "kind", "file", "digest", "request")


class Action(enum.IntEnum):
    """What a change did. Feed kinds register; the rest change a state."""

    MANUFACTURER = 1
    CUSTOMS = 2
    GRANDFATHER = 3
    VISITOR = 4
    EXCEPTION = 5
    BLOCK = 6
    UNBLOCK = 7
    PURGE = 8


class Change(NamedTuple):
    """One device change to append: the caller knows everything but the sequence.

    ``old`` and ``new`` are records, packed (:meth:`Record.pack`, what bulk writers have
    at hand) or not; None for no record.
    """

    key: bytes
    action: Action
    old: Record | bytes | None
    new: Record | bytes | None
    line: int = 0
    """Row number in the origin file (1-based data row); 0 for a request."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored change."""

    seq: int
    at: int
    """Unix seconds when the change was committed."""
    origin: int
    line: int
    action: Action
    key: bytes
    old: Record | None
    new: Record | None


def _packed(record: Record | bytes | None) -> bytes | None:
    return record.pack() if isinstance(record, Record) else record


def _pack(change: Change, at: int, origin: int) -> bytes:
    old, new = _packed(change.old), _packed(change.new)
    return _ENTRY.pack(
        at,
        origin,
        change.line,
        change.action,
        (old is not None) | (new is not None) << 1,
        change.key,
        _EMPTY if old is None else old,
        _EMPTY if new is None else new,
    )


def unpack_entry(seq: int, value: bytes) -> AuditEntry:
    """The entry numbered *seq*, stored as *value*."""
    return _unpack(seq, value)


def _unpack(seq: int, value: bytes) -> AuditEntry:
    at, origin, line, action, presence, key, old, new = _ENTRY.unpack(value[: _ENTRY.size])
    return AuditEntry(
        seq,
        at,
        origin,
        line,
        Action(action),
        key,
        Record.unpack(old) if presence & 1 else None,
        Record.unpack(new) if presence & 2 else None,
    )


def fingerprint(info: dict[str, Any] | None) -> bytes:
    """What of an origin the chain covers: the fields that say who wrote, from what."""
    fixed = {name: (info or {}).get(name) for name in _ORIGIN_FIELDS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).digest()


def link(seq: int, value: bytes, origin: bytes) -> bytes:
    """The hash entry *seq* (stored as *value*, origin fingerprint *origin*) hands on."""
    return hashlib.sha256(_SEQ.pack(seq) + value + origin).digest()


def origin_of(value: bytes) -> int:
    """The origin id stored in a packed entry."""
    return int(_ENTRY.unpack(value[: _ENTRY.size])[1])


def stored_link(value: bytes) -> bytes | None:
    """The previous entry's hash a packed entry carries (None: written before the chain)."""
    return value[_ENTRY.size :] if len(value) == _ENTRY.size + HASH_BYTES else None


def head(tables: Tables) -> bytes:
    """The hash the last entry hands on (:data:`GENESIS` for an empty log)."""
    last = tables.audit.last()
    value = tables.audit.get(last) if last else None
    if value is None:
        return GENESIS
    return link(last, value, fingerprint(tables.imports.get(origin_of(value))))


def append(tables: Tables, changes: Sequence[Change], at: int, origin: int) -> int:
    """Append *changes* in order inside a write transaction, each linked to the one
    before it; returns the first seq."""
    first = tables.audit.last() + 1
    if changes:
        prev = head(tables)
        print_ = fingerprint(tables.imports.get(origin))
        packed = []
        for seq, c in enumerate(changes, first):
            value = _pack(c, at, origin) + prev
            packed.append((c.key, value))
            prev = link(seq, value, print_)
        tables.audit.append(first, packed)
        # The same changes, for replicas: only the key and the new record (no audit detail),
        # in key order as append_columns writes them (stable: a key's later change stays later).
        ordered = sorted(changes, key=lambda c: c.key)
        change_log.record(tables, devices=[(c.key, _packed(c.new)) for c in ordered])
    return first


@dataclass(frozen=True, slots=True)
class Columns:
    """Many changes at once, in order, as arrays (the bulk import)."""

    keys: npt.NDArray[np.uint64]
    """Integer IMEI bodies (the store keys' values)."""
    actions: npt.NDArray[np.uint8]
    old: npt.NDArray[np.bytes_]
    new: npt.NDArray[np.bytes_]
    """Packed records ('S12'); rows without one are masked by *presence*."""
    presence: npt.NDArray[np.uint8]
    """1: has an old record, 2: has a new one (as in an entry)."""
    lines: npt.NDArray[np.uint32]


def _entry_dtype() -> Any:
    """The numpy layout of :data:`_ENTRY` (without the chain link)."""
    import numpy as np

    dtype = np.dtype(
        [
            ("at", ">u4"),
            ("origin", ">u4"),
            ("line", ">u4"),
            ("action", "u1"),
            ("presence", "u1"),
            ("key", "S8"),
            ("old", "S12"),
            ("new", "S12"),
        ]
    )
    if dtype.itemsize != _ENTRY.size:  # pragma: no cover - the two layouts are one
        raise AssertionError("audit entry layouts differ")
    return dtype


def append_columns(tables: Tables, changes: Columns, at: int, origin: int) -> int:
    """:func:`append` of *changes* given as arrays: the same entries and index."""
    import numpy as np

    first = tables.audit.last() + 1
    n = len(changes.keys)
    if not n:
        return first
    table = np.zeros(n, _entry_dtype())
    table["at"], table["origin"] = at, origin
    table["line"], table["action"] = changes.lines, changes.actions
    table["presence"] = changes.presence
    keys = changes.keys.astype(">u8").view("S8")
    table["key"], table["old"], table["new"] = keys, changes.old, changes.new
    raw, size, key_raw = table.tobytes(), _ENTRY.size, keys.tobytes()
    key_list = [key_raw[i : i + 8] for i in range(0, 8 * n, 8)]
    # The chain, as append() links it: entry + the previous link; link = H(seq, value, origin).
    prev, print_, sha = head(tables), fingerprint(tables.imports.get(origin)), hashlib.sha256
    seq_raw = np.arange(first, first + n, dtype=">u8").tobytes()
    values = []
    for i in range(n):
        value = raw[i * size : (i + 1) * size] + prev
        values.append(value)
        prev = sha(seq_raw[8 * i : 8 * i + 8] + value + print_).digest()
    order = np.argsort(changes.keys, kind="stable").tolist()
    tables.audit.append_ordered(first, key_list, values, order)
    new_raw, has_new = changes.new.tobytes(), (changes.presence & 2).astype(bool).tolist()
    news = [new_raw[12 * i : 12 * i + 12] if has_new[i] else None for i in range(n)]
    # In key order (stable, so a later change to a key still comes later): each entry is
    # then one key range, which a replica's B-tree takes about twice as fast as feed order.
    change_log.record(tables, devices=[(key_list[i], news[i]) for i in order])
    return first


def history(store: Store, key: bytes) -> list[AuditEntry]:
    """Every change to the device under *key*, oldest first."""
    with store.snapshot() as tables:
        return [_unpack(seq, value) for seq, value in tables.audit.of_device(key)]


def flag_set_at(tables: Tables, keys: Sequence[bytes], flag: int) -> dict[bytes, int]:
    """For each of *keys* (sorted), Unix seconds of the last change that set *flag* in its
    record (a change from a record without it, or from none); 0 if no change did. Decodes
    only what it needs: the lists' block dates read it for every blocked device."""
    out = {}
    unpack = _ENTRY.unpack_from
    for key, values in tables.audit.of_devices(keys):
        at = 0
        for value in values:
            when, _origin, _line, _action, presence, _key, old, new = unpack(value)
            if presence & 2 and new[2] & flag and not (presence & 1 and old[2] & flag):
                at = when
        out[key] = int(at)
    return out


def entries(store: Store, after: int = 0) -> Iterator[AuditEntry]:
    """Every entry with a sequence number above *after*, in order."""
    with store.snapshot() as tables:
        for seq, value in tables.audit.after(after):
            yield _unpack(seq, value)


def local_actor() -> str:
    """Who runs a local command, as the audit log names them: ``local:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "unknown"
    return f"local:{user}@{socket.gethostname()}"


# -- origins: one file import or one request ---------------------------------------


def new_origin(tables: Tables, info: dict[str, Any]) -> int:
    """Record a new origin inside a write transaction; returns its id (1, 2, ...)."""
    origin = tables.imports.last() + 1
    tables.imports.put(origin, {**info, "id": origin})
    return origin


def put_origin(tables: Tables, origin: int, info: dict[str, Any]) -> None:
    """Replace the record of *origin* inside a write transaction."""
    tables.imports.put(origin, info)


def read_origin(tables: Tables, origin: int) -> dict[str, Any] | None:
    """The record of *origin* as *tables* see it, or None."""
    return tables.imports.get(origin)


def get_origin(store: Store, origin: int) -> dict[str, Any] | None:
    """The record of *origin*, or None."""
    with store.snapshot() as tables:
        return tables.imports.get(origin)
