"""The base of every typed table view (one table inside one transaction), and the
field joins of ``details`` values and TAC entries."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["SEP", "TOKEN_BYTES", "View", "pack_fields", "put_ascending", "unpack_fields"]

SEP = "\x1f"
"""Between the fields of a ``details`` value and of a TAC entry."""
TOKEN_BYTES = 16
"""An identity token's length (:mod:`ceir.store.identity`)."""


def pack_fields(*values: str) -> bytes:
    """A ``details`` value: the fields, ``\\x1f``-joined, UTF-8."""
    return SEP.join(values).encode()


def unpack_fields(value: bytes) -> list[str]:
    return bytes(value).decode().split(SEP)


class View:
    """One table inside one transaction."""

    __slots__ = ("_db", "_txn")

    def __init__(self, txn: Any, db: Any) -> None:
        self._txn = txn
        self._db = db

    def _get(self, key: bytes) -> bytes | None:
        if self._db is None:
            return None
        value = self._txn.get(key, db=self._db)
        return None if value is None else bytes(value)

    def _items(self, start: bytes = b"", prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) from *start* (or the first key) while keys begin with *prefix*."""
        if self._db is None:
            return
        cursor = self._txn.cursor(self._db)
        if not (cursor.set_range(start) if start else cursor.first()):
            return
        n = len(prefix)
        for key, value in cursor:
            if key[:n] != prefix:
                break
            yield bytes(key), bytes(value)

    def _keys(self) -> Iterator[bytes]:
        for key, _value in self._items():
            yield key

    def _last_key(self) -> bytes | None:
        if self._db is None:
            return None
        cursor = self._txn.cursor(self._db)
        return bytes(cursor.key()) if cursor.last() else None

    def _put(self, items: Mapping[bytes, bytes | None]) -> None:
        """Put the pairs sorted by key; a None value deletes its key."""
        puts = sorted((k, v) for k, v in items.items() if v is not None)
        if puts:
            self._txn.cursor(self._db).putmulti(puts)
        for key in sorted(k for k, v in items.items() if v is None):
            self._txn.delete(key, db=self._db)

    def count(self) -> int:
        return 0 if self._db is None else int(self._txn.stat(self._db)["entries"])

    def put_sorted(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        """Put (raw key, value) pairs already sorted by key (the bulk import)."""
        put_ascending(self._txn, self._db, pairs)


def put_ascending(txn: Any, db: Any, pairs: Sequence[tuple[bytes, bytes]]) -> None:
    """Put (key, value) pairs in strictly ascending key order into table *db*: those
    above the table's last key are appended (``MDB_APPEND``: pages filled, no search),
    the others put in order."""
    if not pairs:
        return
    cursor = txn.cursor(db)
    last = bytes(cursor.key()) if cursor.last() else None
    cut = 0 if last is None else bisect.bisect_right(pairs, last, key=_first)
    if cut:
        cursor.putmulti(pairs[:cut] if cut < len(pairs) else pairs)
    if cut < len(pairs):
        tail = pairs[cut:] if cut else pairs
        _consumed, added = cursor.putmulti(tail, append=True)
        if added != len(tail):  # pragma: no cover - the keys were not ascending
            raise ValueError("put_ascending: keys are not in strictly ascending order")


def _first(pair: tuple[bytes, bytes]) -> bytes:
    return pair[0]
