"""Compaction: a store's file brought back to its live size, its hot table packed.

LMDB never shrinks its file: the pages that copy-on-write frees go on a free list and
are reused by later writes, so right after bulk imports the file is about twice the
data it holds. :func:`compact`, for a store nobody has open:

1. repacks the hot table in key order (:meth:`Store.repack_devices
   <ceir.store.env.Store.repack_devices>`: every leaf page full);
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
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb

from ceir.errors import StoreError
from ceir.store.backup import exclusive
from ceir.store.env import Store, exists, open_store

__all__ = ["Compacted", "compact"]

_DATA = "data.mdb"
_LOCK = "lock.mdb"
_HOT = ("devices", "tacs")


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
            store.repack_devices()
            hot_after = _hot(store)
            counts = store.table_entries()
            scratch.mkdir(mode=0o700)
            try:
                store.env.copy(str(scratch), compact=True)
            except lmdb.Error as exc:
                raise StoreError(f"cannot copy {path} to {scratch}: {exc}") from exc
        written = _stamp(path)
        with open_store(scratch, readonly=True) as copy:
            copied = copy.table_entries()
        if copied != counts:
            raise StoreError(f"the compacted copy of {path} lost entries; the store is unchanged")
        (scratch / _LOCK).unlink(missing_ok=True)
        os.chmod(scratch / _DATA, 0o600)
        _fsync(scratch / _DATA)
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
            _fsync(path)
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
