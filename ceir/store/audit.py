"""The append-only audit log: who changed which device, when, from where, old -> new.

Every accepted change to a device is one entry, numbered by a sequence that only grows
and keyed by the device first (so ``ceir audit IMEI`` is one prefix scan, no index). An
entry holds only what differs per device: the file line, the action and the old record;
the new record is what the device's next entry found as its old one, or, for its last
entry, the device's current record. What a *batch* of entries shares — one file batch
or one request: its origin, time, count — is stored once, in ``audit_links``. An
origin's record (in ``imports``) names the principal, the channel and the file (name
and SHA-256) or request. Entries hold records and tokens, never personal data.

Appending happens inside the caller's write transaction, so a change and its entry
commit together or not at all.

The log is a **chain of batches**: each batch stores the SHA-256 digest of its entries
(each with its key, number, line, action, old and new record, in order) and the link of
the batch before it, where a batch's link is the SHA-256 of its number, its stored value
and the fixed fields of its origin (actor, kind, file, digest, request). Editing an
entry, or a device record its last entry left, breaks its batch's digest; editing an
origin's actor breaks the next batch's link; rewriting the whole chain changes the head
hash, which ``ceir verify`` prints so that an operator can keep it elsewhere and check it
later (``--expect-head``).
"""

from __future__ import annotations

import enum
import getpass
import hashlib
import itertools
import json
import socket
import struct
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
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
    "Batch",
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

# An entry's value: line, flags (the action, and whether it has an old / a new record),
# then the old record if it has one.
_VALUE = struct.Struct(">IB")
_ACTION, _HAS_OLD, _HAS_NEW = 0x0F, 0x10, 0x20
# What a batch's digest covers of each entry: key, number, line, flags, old, new.
_HASHED = struct.Struct(f">8sQIB{RECORD_SIZE}s{RECORD_SIZE}s")
# A batch (``audit_links`` value): origin, time, entries, their digest, the link before.
_BATCH = struct.Struct(">III32s32s")
_EMPTY = bytes(RECORD_SIZE)
_SEQ = struct.Struct(">Q")
HASH_BYTES = 32
GENESIS = bytes(HASH_BYTES)
"""The link before the first batch: no batch before it."""
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
    SUSPECTED = 9
    GREYLISTED = 10
    DUPLICATE_BLOCKED = 11
    CLEARED = 12
    PAIRED = 13
    UNPAIRED = 14


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


class Batch(NamedTuple):
    """What the entries of one append share (an ``audit_links`` value)."""

    origin: int
    at: int
    size: int
    """How many entries."""
    digest: bytes
    prev: bytes
    """The link of the batch before (:data:`GENESIS` for the first)."""

    def pack(self) -> bytes:
        return _BATCH.pack(self.origin, self.at, self.size, self.digest, self.prev)

    @classmethod
    def unpack(cls, value: bytes) -> Batch:
        return cls(*_BATCH.unpack(value))


def fingerprint(info: dict[str, Any] | None) -> bytes:
    """What of an origin the chain covers: the fields that say who wrote, from what."""
    fixed = {name: (info or {}).get(name) for name in _ORIGIN_FIELDS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).digest()


def link(first: int, value: bytes, origin: bytes) -> bytes:
    """The hash the batch numbered from *first* (stored as *value*, origin fingerprint
    *origin*) hands on."""
    return hashlib.sha256(_SEQ.pack(first) + value + origin).digest()


def hashed(key: bytes, seq: int, value: bytes, new: bytes | None) -> bytes:
    """What a batch's digest covers of the entry *seq* of device *key* (stored as
    *value*) whose new record is *new*."""
    line, flags = _VALUE.unpack_from(value)
    old = value[_VALUE.size : _VALUE.size + RECORD_SIZE] if flags & _HAS_OLD else _EMPTY
    return _HASHED.pack(key, seq, line, flags, old, _EMPTY if new is None else new)


def old_of(value: bytes) -> bytes | None:
    """The old record a stored entry holds, packed (None: it had none)."""
    if not _VALUE.unpack_from(value)[1] & _HAS_OLD:
        return None
    return value[_VALUE.size : _VALUE.size + RECORD_SIZE]


def has_new(value: bytes) -> bool:
    """Whether a stored entry left its device a record (False: it deleted it)."""
    return bool(_VALUE.unpack_from(value)[1] & _HAS_NEW)


def head(tables: Tables) -> bytes:
    """The hash the last batch hands on (:data:`GENESIS` for an empty log)."""
    last = tables.audit.last_batch()
    if last is None:
        return GENESIS
    first, value = last
    origin = Batch.unpack(value).origin
    return link(first, value, fingerprint(tables.imports.get(origin)))


def _last_seq(tables: Tables) -> int:
    last = tables.audit.last_batch()
    return 0 if last is None else last[0] + Batch.unpack(last[1]).size - 1


def append(
    tables: Tables,
    changes: Sequence[Change],
    at: int,
    origin: int,
    details: Mapping[tuple[bytes, int], bytes | None] | None = None,
    code: int = 0,
    shared: bool = False,
) -> int:
    """Append *changes* inside a write transaction as one batch, numbered in key order
    (a device's changes in the order given); returns the first number.

    *details*: the packed fields (None: delete) the changes register by (device, feed-kind
    *code*), written here too, as :func:`append_columns` does: the value a device's
    creation registers keeps that change's entry."""
    first = _last_seq(tables) + 1
    rest = dict(details or {})
    ordered = sorted(changes, key=lambda c: c.key)
    once = Counter(c.key for c in ordered)
    pairs, covered, created, tag = [], [], [], bytes((code,))
    for seq, c in enumerate(ordered, first):
        old, new = _packed(c.old), _packed(c.new)
        flags = int(c.action) | (_HAS_OLD if old is not None else 0)
        flags |= _HAS_NEW if new is not None else 0
        value = _VALUE.pack(c.line, flags) + (old or b"")
        covered.append(_HASHED.pack(c.key, seq, c.line, flags, old or _EMPTY, new or _EMPTY))
        fields = rest.get((c.key, code)) if old is None and new is not None else None
        if fields is not None and once[c.key] == 1:
            del rest[c.key, code]
            created.append(((c.key + tag, fields), (seq, value)))
        else:
            pairs.append((c.key + _SEQ.pack(seq), value))
    if details is not None:
        tables.details.put(rest, shared)
        kept = [tables.details.suffix(seq, value) for _p, (seq, value) in created]
        tables.details.put_created([p for p, _e in created], kept, shared)
    if not changes:
        return first
    digest = hashlib.sha256(b"".join(covered)).digest()
    batch = Batch(origin, at, len(ordered), digest, head(tables))
    tables.audit.append(first, pairs, batch.pack())
    # The same changes, for replicas: only the key and the new record (no audit detail),
    # in key order as append_columns writes them (stable: a key's later change stays later).
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


def append_columns(
    tables: Tables,
    changes: Columns,
    at: int,
    origin: int,
    details: Sequence[bytes] | None = None,
    code: int = 0,
    shared: bool = False,
    encoded: bool = False,
) -> int:
    """:func:`append` of *changes* given as arrays: the same entries, batch and log.

    *details*: the packed fields each change registers under feed-kind *code* (in the
    changes' order; *shared* and *encoded* as in :meth:`Details.put_sorted
    <ceir.store.details.Details.put_sorted>`), written here too: a change that creates
    its device keeps its entry in that value (one node in the registry, not two)
    instead of an ``audit`` row."""
    import numpy as np

    first = _last_seq(tables) + 1
    n = len(changes.keys)
    if not n:
        return first
    order = np.argsort(changes.keys, kind="stable")
    presence = changes.presence[order]
    table = np.zeros(
        n,
        [("key", ">u8"), ("seq", ">u8"), ("line", ">u4"), ("flags", "u1"),
         ("old", "S12"), ("new", "S12")],
    )  # fmt: skip
    table["key"], table["seq"] = changes.keys[order], np.arange(first, first + n)
    table["line"] = changes.lines[order]
    table["flags"] = (changes.actions[order] & _ACTION) | np.where(presence & 1, _HAS_OLD, 0)
    table["flags"] |= np.where(presence & 2, _HAS_NEW, 0).astype(np.uint8)
    table["old"], table["new"] = changes.old[order], changes.new[order]
    if table.itemsize != _HASHED.size:  # pragma: no cover - the two layouts are one
        raise AssertionError("audit entry layouts differ")
    digest = hashlib.sha256(table.tobytes()).digest()
    raw = _key_seq(table)
    keys = [raw[i : i + 16] for i in range(0, 16 * n, 16)]
    small = np.zeros(n, [("line", ">u4"), ("flags", "u1")])
    small["line"], small["flags"] = table["line"], table["flags"]
    vraw, size = small.tobytes(), _VALUE.size
    values = [vraw[i : i + size] for i in range(0, size * n, size)]
    if np.any(presence & 1):
        old_raw = table["old"].tobytes()
        for i in np.flatnonzero(presence & 1).tolist():
            values[i] += old_raw[RECORD_SIZE * i : RECORD_SIZE * (i + 1)]
    batch = Batch(origin, at, n, digest, head(tables))
    logged: Sequence[int] = range(n)
    if details is not None:
        logged = _put_details(
            tables, table, small, presence, order, details, (code, shared, encoded)
        )
    tables.audit.append(first, [(keys[i], values[i]) for i in logged], batch.pack())
    new_raw, with_new = table["new"].tobytes(), (presence & 2).astype(bool).tolist()
    devices = [
        (keys[i][:8], new_raw[RECORD_SIZE * i : RECORD_SIZE * (i + 1)] if with_new[i] else None)
        for i in range(n)
    ]
    # In key order (stable, so a later change to a key still comes later): each entry is
    # then one key range, which a replica's B-tree takes about twice as fast as feed order.
    change_log.record(tables, devices=devices)
    return first


def _put_details(
    tables: Tables,
    table: Any,
    small: Any,
    presence: Any,
    order: Any,
    details: Sequence[bytes],
    how: tuple[int, bool, bool],
) -> list[int]:
    """Write the *details* of the entries (*table* and their 5-byte values *small* in
    key order; *order*: the changes' index of each): a creation's value keeps its entry.
    Returns the entries that still need an ``audit`` row, in key order."""
    import numpy as np

    code, shared, encoded = how
    made = presence == 2
    coded = np.empty(len(table), [("key", ">u8"), ("code", "u1")])
    coded["key"], coded["code"] = table["key"], code
    raw, js = coded.tobytes(), order.tolist()
    idx, rest = np.flatnonzero(made).tolist(), np.flatnonzero(~made).tolist()
    kept = tables.details.suffixes(table["seq"][made], small[made].tobytes())
    created = [(raw[9 * i : 9 * i + 9], details[js[i]]) for i in idx]
    tables.details.put_created(created, kept, shared, encoded=encoded)
    changed = [(raw[9 * i : 9 * i + 9], details[js[i]]) for i in rest]
    tables.details.put_sorted(changed, shared, encoded=encoded)
    return rest


def _key_seq(table: Any) -> bytes:
    """The 16-byte entry keys (device key, number) of a structured array, joined."""
    import numpy as np

    both = np.empty((len(table), 2), ">u8")
    both[:, 0], both[:, 1] = table["key"], table["seq"]
    return both.tobytes()


def _entries(tables: Tables, key: bytes, stored: list[tuple[int, bytes]]) -> list[AuditEntry]:
    """The entries of device *key* from its stored (number, value) pairs, oldest first:
    each entry's new record is the next one's old, the last one's the device's record."""
    batches: dict[int, Batch] = {}
    out = []
    current = tables.devices.packed(key)
    for i, (seq, value) in enumerate(stored):
        line, flags = _VALUE.unpack_from(value)
        old = old_of(value)
        new = old_of(stored[i + 1][1]) if i + 1 < len(stored) else current
        found = tables.audit.batch_of(seq)
        batch = batches.setdefault(found[0], Batch.unpack(found[1])) if found else None
        out.append(
            AuditEntry(
                seq,
                batch.at if batch else 0,
                batch.origin if batch else 0,
                line,
                Action(flags & _ACTION),
                key,
                None if old is None else Record.unpack(old),
                Record.unpack(new) if new is not None and flags & _HAS_NEW else None,
            )
        )
    return out


def history(store: Store, key: bytes) -> list[AuditEntry]:
    """Every change to the device under *key*, oldest first."""
    with store.snapshot() as tables:
        return _entries(tables, key, list(tables.audit.of_device(key)))


def flag_set_at(tables: Tables, keys: Sequence[bytes], flag: int) -> dict[bytes, int]:
    """For each of *keys* (sorted), Unix seconds of the last change that set *flag* in its
    record (a change from a record without it, or from none); 0 if no change did. Decodes
    only what it needs: the lists' block dates read it for every blocked device."""
    out = {}
    times: dict[int, int] = {}  # batch -> its time
    for key, stored in tables.audit.of_devices(keys):
        at = 0
        current = tables.devices.packed(key)
        for i, (seq, value) in enumerate(stored):
            if not has_new(value):
                continue
            new = old_of(stored[i + 1][1]) if i + 1 < len(stored) else current
            old = old_of(value)
            if new is not None and new[2] & flag and not (old is not None and old[2] & flag):
                at = _batch_time(tables, seq, times)
        out[key] = int(at)
    return out


def _batch_time(tables: Tables, seq: int, times: dict[int, int]) -> int:
    """The time of the batch holding entry *seq* (0 if none), remembered in *times*."""
    found = tables.audit.batch_of(seq)
    if found is None:
        return 0
    if found[0] not in times:
        times[found[0]] = Batch.unpack(found[1]).at
    return times[found[0]]


def entries(store: Store, after: int = 0) -> Iterator[AuditEntry]:
    """Every entry with a sequence number above *after*, in order (reads the whole log:
    for tests and checks of small stores)."""
    with store.snapshot() as tables:
        found: list[AuditEntry] = []
        by_device = itertools.groupby(tables.audit.items(), key=lambda item: item[0])
        for key, items in by_device:
            found.extend(_entries(tables, key, [(seq, value) for _k, seq, value in items]))
    yield from sorted((e for e in found if e.seq > after), key=lambda e: e.seq)


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
