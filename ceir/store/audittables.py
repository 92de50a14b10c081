"""The audit log's tables as one view: ``audit``, ``audit_links`` and the entries that
``details`` values keep (:mod:`ceir.store.details`). See :mod:`ceir.store.audit` for
what an entry holds."""

from __future__ import annotations

import heapq
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ceir.store._view import View as _View
from ceir.store._view import put_ascending
from ceir.store.details import entry_of

__all__ = ["AuditLog"]

_U64 = struct.Struct(">Q")


class AuditLog:
    """``audit`` and ``audit_links``: changes by device, their batches by first number.

    An entry's key is the device key and its 8-byte sequence number, so a device's
    history is one prefix scan; its value is opaque here (:mod:`ceir.store.audit`). A
    *batch* (one append: a file's batch or one request) is one ``audit_links`` value
    under its first sequence number: what the batch's entries share, once. The entry of
    a device's creation by a bulk import is kept in its ``details`` value instead
    (:mod:`ceir.store.details`); every read here sees both, by number.
    """

    __slots__ = ("_details", "_links", "_log", "_txn")

    def __init__(self, txn: Any, log: Any, links: Any, details: Any = None) -> None:
        self._txn = txn
        self._log = _View(txn, log)
        self._links = _View(txn, links)
        self._details = _View(txn, details)

    def last_batch(self) -> tuple[int, bytes] | None:
        """(first sequence number, value) of the last batch, or None."""
        key = self._links._last_key()
        if key is None:
            return None
        value = self._links._get(key)
        return None if value is None else (int(_U64.unpack(key)[0]), value)

    def append(self, first: int, pairs: Sequence[tuple[bytes, bytes]], batch: bytes) -> None:
        """A batch: (entry key, value) pairs sorted by key, numbered from *first*."""
        put_ascending(self._txn, self._log._db, pairs)
        self._txn.cursor(self._links._db).putmulti([(_U64.pack(first), batch)], append=True)

    def batch_of(self, seq: int) -> tuple[int, bytes] | None:
        """(first sequence number, value) of the batch holding entry *seq*, or None."""
        if self._links._db is None:
            return None
        cursor = self._txn.cursor(self._links._db)
        found = cursor.set_range(_U64.pack(seq + 1)) and cursor.prev()
        if not found and not cursor.last():
            return None
        key = bytes(cursor.key())
        if key > _U64.pack(seq):
            return None
        return int(_U64.unpack(key)[0]), bytes(cursor.value())

    def batches(self, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """(first sequence number, value) of every batch starting above *after*."""
        for key, value in self._links._items(_U64.pack(after + 1)):
            yield int(_U64.unpack(key)[0]), value

    def of_device(self, key: bytes) -> Iterator[tuple[int, bytes]]:
        """(sequence number, value) of every change to device *key*, oldest first."""
        for _key, found in self.of_devices([key]):
            yield from found

    def of_devices(self, keys: Iterable[bytes]) -> Iterator[tuple[bytes, list[tuple[int, bytes]]]]:
        """(key, its (sequence number, value) changes oldest first) for each of *keys*
        (sorted is fastest): :meth:`of_device` for many devices through one cursor."""
        if self._log._db is None:
            return
        cursor = self._txn.cursor(self._log._db)
        kept = self._txn.cursor(self._details._db) if self._details._db is not None else None
        for key in keys:
            found = []
            if cursor.set_range(key):
                for entry, value in cursor:
                    if entry[:8] != key:
                        break
                    found.append((int(_U64.unpack(entry[8:])[0]), bytes(value)))
            if kept is not None and kept.set_range(key):
                for dkey, stored in kept:
                    if dkey[:8] != key:
                        break
                    if (pair := entry_of(bytes(stored))) is not None:
                        found.append(pair)
                found.sort()
            yield key, found

    def items(self) -> Iterator[tuple[bytes, int, bytes]]:
        """(device key, sequence number, value) of every entry, by device then number."""
        for key, found in self.by_device():
            for seq, value in found:
                yield key, seq, value

    def by_device(self) -> Iterator[tuple[bytes, list[tuple[int, bytes]]]]:
        """(device key, its (number, value) entries oldest first) for every audited
        device, in key order: ``audit`` and the entries ``details`` keep, merged."""
        return _merged(self._log._items(), self._details._items())

    def delete(self, key: bytes, seq: int) -> bool:
        return bool(self._txn.delete(key + _U64.pack(seq), db=self._log._db))


def _merged(
    log: Iterator[tuple[bytes, bytes]], details: Iterator[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, list[tuple[int, bytes]]]]:
    """(device, entries by number) from ``audit``'s and ``details``' items, both in key
    order (device first), merged by device."""

    def logged() -> Iterator[tuple[bytes, list[tuple[int, bytes]]]]:
        for device, group in itertools.groupby(log, key=lambda kv: kv[0][:8]):
            yield device, [(int(_U64.unpack(k[8:])[0]), v) for k, v in group]

    def kept() -> Iterator[tuple[bytes, list[tuple[int, bytes]]]]:
        for device, group in itertools.groupby(details, key=lambda kv: kv[0][:8]):
            found = [pair for _k, v in group if (pair := entry_of(v)) is not None]
            if found:
                yield device, found

    for device, parts in itertools.groupby(
        heapq.merge(logged(), kept(), key=lambda group: group[0]), key=lambda group: group[0]
    ):
        found = [pair for _device, pairs in parts for pair in pairs]
        yield device, sorted(found)
