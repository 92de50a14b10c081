"""The append-only audit log: who changed which device, when, from where, old -> new.

Every accepted change to a device is one entry, keyed by a sequence number that only
grows, and indexed by device. An entry names its *origin* — one feed file import or one
request — whose record (in ``imports``) names the principal, the channel and the file
(name and SHA-256) or request. Entries hold records and tokens, never personal data.

Appending happens inside the caller's write transaction, so a change and its entry
commit together or not at all.
"""

from __future__ import annotations

import enum
import getpass
import json
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ceir.record import RECORD_SIZE, Record
from ceir.store import Store

__all__ = [
    "Action",
    "AuditEntry",
    "Change",
    "append",
    "get_origin",
    "history",
    "local_actor",
    "new_origin",
    "put_origin",
]

_SEQ = struct.Struct(">Q")
_ORIGIN = struct.Struct(">I")
# at, origin, line, action, presence (1: old, 2: new), key, old, new
_ENTRY = struct.Struct(f">IIIBB8s{RECORD_SIZE}s{RECORD_SIZE}s")
_EMPTY = bytes(RECORD_SIZE)


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


def _unpack(seq: int, value: bytes) -> AuditEntry:
    at, origin, line, action, presence, key, old, new = _ENTRY.unpack(value)
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


def _last_key(txn: Any, db: Any) -> bytes | None:
    cursor = txn.cursor(db)
    return bytes(cursor.key()) if cursor.last() else None


def append(txn: Any, store: Store, changes: Sequence[Change], at: int, origin: int) -> int:
    """Append *changes* in order inside write transaction *txn*; returns the first seq."""
    last = _last_key(txn, store.dbs["audit"])
    first = 1 if last is None else _SEQ.unpack(last)[0] + 1
    if not changes:
        return first
    seqs = [_SEQ.pack(n) for n in range(first, first + len(changes))]
    entries = [(seq, _pack(c, at, origin)) for seq, c in zip(seqs, changes, strict=True)]
    txn.cursor(store.dbs["audit"]).putmulti(entries, append=True)
    index = sorted([(c.key, seq) for seq, c in zip(seqs, changes, strict=True)])
    txn.cursor(store.dbs["audit_idx"]).putmulti(index, dupdata=True)
    return first


def history(store: Store, key: bytes) -> list[AuditEntry]:
    """Every change to the device under *key*, oldest first."""
    audit, index = store.dbs["audit"], store.dbs["audit_idx"]
    if audit is None or index is None:
        return []
    out = []
    with store.snapshot() as txn:
        cursor = txn.cursor(index)
        if cursor.set_key(key):
            for seq in cursor.iternext_dup():
                value = txn.get(seq, db=audit)
                if value is not None:
                    out.append(_unpack(_SEQ.unpack(seq)[0], value))
    return out


def entries(store: Store, after: int = 0) -> Iterator[AuditEntry]:
    """Every entry with a sequence number above *after*, in order."""
    audit = store.dbs["audit"]
    if audit is None:
        return
    with store.snapshot() as txn:
        cursor = txn.cursor(audit)
        if not cursor.set_range(_SEQ.pack(after + 1)):
            return
        for seq, value in cursor:
            yield _unpack(_SEQ.unpack(seq)[0], value)


def local_actor() -> str:
    """Who runs a local command, as the audit log names them: ``local:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "unknown"
    return f"local:{user}@{socket.gethostname()}"


# -- origins: one file import or one request ---------------------------------------


def new_origin(txn: Any, store: Store, info: dict[str, Any]) -> int:
    """Record a new origin inside *txn*; returns its id (1, 2, ...)."""
    db = store.dbs["imports"]
    last = _last_key(txn, db)
    origin = 1 if last is None else _ORIGIN.unpack(last)[0] + 1
    put_origin(txn, store, origin, {**info, "id": origin})
    return origin


def put_origin(txn: Any, store: Store, origin: int, info: dict[str, Any]) -> None:
    """Replace the record of *origin* inside *txn*."""
    value = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
    txn.put(_ORIGIN.pack(origin), value, db=store.dbs["imports"])


def read_origin(txn: Any, store: Store, origin: int) -> dict[str, Any] | None:
    """The record of *origin* in *txn*, or None."""
    db = store.dbs["imports"]
    value = None if db is None else txn.get(_ORIGIN.pack(origin), db=db)
    return None if value is None else dict(json.loads(value))


def get_origin(store: Store, origin: int) -> dict[str, Any] | None:
    """The record of *origin*, or None."""
    with store.snapshot() as txn:
        return read_origin(txn, store, origin)
