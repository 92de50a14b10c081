"""Compaction: a store's file brought back to its live size, its hot table packed.

LMDB never shrinks its file: the pages that copy-on-write frees go on a free list and
are reused by later writes, so right after bulk imports the file is about twice the
data it holds. :func:`compact`, for a store nobody has open:

1. repacks the hot table and ``details`` in key order (:func:`repack_devices`,
   :func:`repack_table`: every leaf page full; ``ceir import`` calls
   :func:`repack_if_loose` after a bulk load too);
2. copies the store with LMDB's compacting copy (free pages dropped) into a scratch
   directory beside it, and checks that every table has as many entries as before;
3. puts the copy's ``data.mdb`` in place of the old one with one ``rename``, under an
   exclusive lock, and only if nobody opened or wrote the store meanwhile.

A failure at any step leaves the store as it was (the repack is one transaction that
changes no contents). It needs free disk for one live-size copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ceir.errors import StoreError
from ceir.record import RECORD_SIZE
from ceir.store.backup import exclusive, fsync_path
from ceir.store.env import Store, exists, open_store

__all__ = [
    "PACKED_TABLES",
    "REPACK_MIN_ADDED",
    "REPACK_MIN_SHARE",
    "REPACK_SLACK",
    "Compacted",
    "compact",
    "devices_slack",
    "repack_devices",
    "repack_if_loose",
    "repack_table",
    "table_entries",
    "table_slack",
]

_DATA = "data.mdb"
_LOCK = "lock.mdb"
_HOT = ("devices", "tacs")
# An LMDB leaf page has a 16-byte header; a device's node is an 8-byte node header, the
# 8-byte key and the 12-byte record (even-aligned), and a 2-byte pointer to it.
_PAGE_HEADER = 16
_DEVICE_NODE = 8 + 8 + RECORD_SIZE + 2
_SCRATCH = b"devices.repack"
_SAMPLE = 4_096
PACKED_TABLES = ("details",)
"""Registry tables repacked with the hot table: one node per device, written by bulk
imports in each batch's key order (random across batches)."""
REPACK_MIN_ADDED = 100_000
"""An import adding at least this many devices repacks ``devices`` when it is loose."""
REPACK_MIN_SHARE = 0.1
"""... and at least this share of the devices the table then holds ..."""
REPACK_SLACK = 1.15
"""... loose: more than this many leaf pages per page it needs packed."""


def devices_slack(store: Store) -> float:
    """Leaf pages of ``devices`` per page it needs when every page is full (1.0:
    packed; random inserts leave pages about 2/3 full, ~1.5)."""
    with store._reading(None) as txn:
        st = txn.stat(store.devices)
    per_page = (int(st["psize"]) - _PAGE_HEADER) // _DEVICE_NODE
    needed = -(-int(st["entries"]) // per_page)
    return int(st["leaf_pages"]) / needed if needed else 1.0


def table_slack(store: Store, name: str) -> float:
    """:func:`devices_slack` of the registry table *name*, its node size estimated from
    its first :data:`_SAMPLE` entries."""
    db = store.dbs[name]
    with store._reading(None) as txn:
        st = txn.stat(db)
        sizes = [
            8 + len(k) + len(v) + (len(k) + len(v)) % 2 + 2
            for k, v in itertools.islice(txn.cursor(db), _SAMPLE)
        ]
    if not sizes:
        return 1.0
    needed = int(st["entries"]) * (sum(sizes) / len(sizes)) / (int(st["psize"]) - _PAGE_HEADER)
    return int(st["leaf_pages"]) / max(1.0, needed)


def repack_table(store: Store, name: str) -> int:
    """:func:`repack_devices` for the registry table *name* (``details``, which bulk
    imports fill in random key order); returns how many entries it moved."""
    return store._write_txn(lambda txn: _repack(store, txn, store.dbs[name]))


def _repack(store: Store, txn: Any, db: Any) -> int:
    scratch = store.env.open_db(_SCRATCH, txn=txn)  # gone again at commit
    _, moved = txn.cursor(scratch).putmulti(txn.cursor(db).iternext(), append=True)
    txn.drop(db, delete=False)
    txn.cursor(db).putmulti(txn.cursor(scratch).iternext(), append=True)
    txn.drop(scratch, delete=True)
    return int(moved)


def repack_devices(store: Store) -> int:
    """Rewrite ``devices`` in key order so that every leaf page is full (30 B per device
    instead of ~45 after random inserts); returns how many devices it moved.

    One write transaction: a copy appended in key order into a scratch table, the table
    emptied, the copy appended back, the scratch table dropped. Readers see the old table
    or the new one, never a part; the contents and the change log do not change. The file
    may grow by twice the hot table for that commit; the pages freed are reused by later
    writes (:func:`compact` gives them back)."""

    return store._write_txn(lambda txn: _repack(store, txn, store.devices))


def repack_if_loose(store: Store, added: int) -> bool:
    """After a write that added *added* devices: repack ``devices`` if that was a bulk
    load (:data:`REPACK_MIN_ADDED`, :data:`REPACK_MIN_SHARE`) and the table's pages are
    loose (:data:`REPACK_SLACK`). Returns whether it repacked.

    A packed table is fragile: an insert into a full page splits it in two half-full
    ones, so a day's few new devices undo much of the packing. The repack costs ~1 µs per
    device in the table, so it is left to loads that add a tenth of it or more (where it
    costs well under a tenth of the import); ``ceir compact`` does it on demand."""
    if added < max(REPACK_MIN_ADDED, REPACK_MIN_SHARE * store.device_count()):
        return False
    packed = False
    if devices_slack(store) > REPACK_SLACK:
        repack_devices(store)
        packed = True
    for name in PACKED_TABLES:
        if table_slack(store, name) > REPACK_SLACK:
            repack_table(store, name)
            packed = True
    return packed


def table_entries(store: Store) -> dict[str, int]:
    """Entries in each table, by name (as ``Store.table_bytes``): what a copy must hold."""
    with store._reading(None) as txn:
        named = {"devices": store.devices, "tacs": store.tacs, "meta": store.meta, **store.dbs}
        return {name: int(txn.stat(db)["entries"]) if db else 0 for name, db in named.items()}


@dataclass(frozen=True, slots=True)
class Compacted:
    """What :func:`compact` did: sizes before and after, in bytes."""

    path: Path
    devices: int
    file_before: int
    file_after: int
    hot_before: int
    hot_after: int
    seconds: float


def compact(path: Path) -> Compacted:
    """Compact the store at *path* in place; StoreError (nothing changed) if it is
    missing, damaged, or open in another process (``ceir serve``, an import)."""
    started = time.monotonic()
    if not exists(path):
        raise StoreError(f"no ceir store at {path}")
    scratch = path.with_name(f".{path.name}.compacting")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with open_store(path) as store, _alone(path):
            devices = store.device_count()
            file_before = _file_size(path)
            hot_before = _hot(store)
            repack_devices(store)
            for name in PACKED_TABLES:
                repack_table(store, name)
            hot_after = _hot(store)
            counts = table_entries(store)
            scratch.mkdir(mode=0o700)
            try:
                store.env.copy(str(scratch), compact=True)
            except lmdb.Error as exc:
                raise StoreError(f"cannot copy {path} to {scratch}: {exc}") from exc
        written = _stamp(path)
        with open_store(scratch, readonly=True) as copy:
            copied = table_entries(copy)
        if copied != counts:
            raise StoreError(f"the compacted copy of {path} lost entries; the store is unchanged")
        (scratch / _LOCK).unlink(missing_ok=True)
        os.chmod(scratch / _DATA, 0o600)
        fsync_path(scratch / _DATA)
        with exclusive(path):
            if _stamp(path) != written:
                raise StoreError(
                    f"store {path} was written while it was being compacted; it is unchanged "
                    "(stop every process using it and run `ceir compact` again)"
                )
            os.replace(scratch / _DATA, path / _DATA)
            # The lock file describes the old file's transactions: the next open makes
            # a new one (nobody can hold it: the exclusive lock says so).
            (path / _LOCK).unlink(missing_ok=True)
            fsync_path(path)
    except OSError as exc:
        raise StoreError(f"cannot compact {path}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Compacted(
        path,
        devices,
        file_before,
        _file_size(path),
        hot_before,
        hot_after,
        time.monotonic() - started,
    )


@contextlib.contextmanager
def _alone(path: Path) -> Iterator[None]:
    """While this process has the store open: refuse if another process has it open
    too, and make any that opens it now wait (LMDB's shared lock on the lock file's
    first byte becomes this process's exclusive one; it is given back on close)."""
    fd = os.open(path / _LOCK, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError as exc:
        os.close(fd)
        raise StoreError(
            f"store {path} is open in another process (is `ceir serve` running?); "
            "stop it first: compaction needs the store to itself"
        ) from exc
    try:
        yield
    finally:
        # Closing the descriptor drops the lock; the store closes right after.
        os.close(fd)


def _hot(store: Store) -> int:
    tables = store.table_bytes()
    return sum(tables[t] for t in _HOT)


def _file_size(path: Path) -> int:
    return (path / _DATA).stat().st_size


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a process writes the data file."""
    st = (path / _DATA).stat()
    return st.st_ino, st.st_size, st.st_mtime_ns
