"""A store's write transactions, and the turns its writers take.

LMDB has one writer at a time, and its writer lock is not fair: a process that commits
and at once begins again (an import writing batch after batch) usually wins the lock back
before a waiting writer is scheduled, so a single write — a ``ReportLostStolen`` in the
serving process while an import runs in another — may wait out many batches. So writers
queue at a turnstile before they ask for LMDB's lock: each takes the turnstile (a lock of
its process, then ``flock`` on ``writers.lock`` in the store directory, shared by every
process that opens the store), begins its write transaction, and lets the turnstile go. A
writer waiting for the lock holds the turnstile meanwhile, so the import's next batch
queues behind it: a single write waits for at most the one write transaction under way.

The turnstile is held only while the LMDB lock is asked for, never while a transaction
runs; a process that dies holding it loses it with its descriptor.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from ceir.errors import StoreError

__all__ = ["WRITERS", "Writer"]

WRITERS = "writers.lock"
"""The turnstile's file in the store directory (empty; only ever locked)."""

T = TypeVar("T")


class Writer:
    """The write side of one open store (:meth:`ceir.store.Store.write` runs through it)."""

    def __init__(self, env: Any, path: Path, *, readonly: bool) -> None:
        self.env = env
        self.path = path
        self.readonly = readonly
        self._local = threading.Lock()
        self._fd = -1  # opened by the first write

    def close(self) -> None:
        with self._local:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        with self._local:  # one thread of this process at a time (flock is per descriptor)
            if self._fd < 0:
                try:
                    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                    self._fd = os.open(self.path / WRITERS, flags, 0o600)
                except OSError as exc:
                    path = self.path / WRITERS
                    raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def run(self, fn: Callable[[Any], T]) -> T:
        """*fn(txn)* in one write transaction, committed; the map grown if it fills (so
        *fn* may run more than once)."""
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only")
        while True:
            try:
                with self._turn():
                    txn = self.env.begin(write=True)
                with txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # another process grew the map; adopt it
            except lmdb.Error as exc:
                raise StoreError(f"cannot write to store {self.path}: {exc}") from exc
