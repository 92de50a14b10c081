"""Writers take turns (ceir.store._writer): a write waiting for LMDB's writer lock holds
the turnstile, so another process's next write transaction — an import's next batch —
begins after it, not before (LMDB's own lock lets the process that just committed win it
back: a single write then waits out batch after batch)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ceir.store import open_store
from ceir.store.tables import Tables

pytestmark = pytest.mark.timeout(60)

BUSY = """
import sys
from ceir.store import open_store
store = open_store(sys.argv[1])
def first(txn):
    txn.put(b"order", b"B", db=store.meta)
    print("holding", flush=True)
    sys.stdin.readline()  # hold the writer lock until told
def second(txn):  # at once after the first commits: an import's next batch
    txn.put(b"order", txn.get(b"order", db=store.meta) + b"B", db=store.meta)
store._write_txn(first)
store._write_txn(second)
store.close()
"""


def _queued(lock: Path) -> bool:
    """Whether somebody holds the turnstile (a writer is waiting for LMDB's lock)."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also lets go of the lock if it was taken
    return False


def test_a_waiting_write_goes_before_the_busy_writers_next_one(tmp_path: Path) -> None:
    db = tmp_path / "db"
    store = open_store(db)
    busy = subprocess.Popen(
        [sys.executable, "-c", BUSY, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert busy.stdin is not None
        assert busy.stdout is not None
        assert busy.stdout.readline() == "holding\n"

        def mine(txn: Any) -> None:
            txn.put(b"order", txn.get(b"order", db=store.meta) + b"T", db=store.meta)

        single = threading.Thread(target=store._write_txn, args=(mine,))
        single.start()
        deadline = time.monotonic() + 10
        while not _queued(db / "writers.lock"):
            assert time.monotonic() < deadline, "the waiting write took no turn"
            time.sleep(0.01)
        busy.stdin.write("\n")
        busy.stdin.flush()
        single.join(10)
        assert busy.wait(10) == 0
        order = store._write_txn(lambda txn: bytes(txn.get(b"order", db=store.meta)))
        assert order == b"BTB"
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.wait()
        for pipe in (busy.stdin, busy.stdout):
            if pipe is not None:
                pipe.close()
        store.close()


def test_the_turnstile_is_a_private_file_of_the_store(tmp_path: Path) -> None:
    """writers.lock is made by the first write, 0600 like the store's other files."""
    store = open_store(tmp_path / "db")
    try:

        def nothing(tables: Tables) -> None:
            return None

        store.write(nothing)
        mode = (tmp_path / "db" / "writers.lock").stat().st_mode & 0o777
        assert mode == 0o600
    finally:
        store.close()


def test_a_store_without_meta_sync_keeps_its_writes(tmp_path: Path) -> None:
    """metasync=False (a served import's process) commits as usual; close syncs."""
    store = open_store(tmp_path / "db", metasync=False)
    store._write_txn(lambda txn: txn.put(b"k", b"v", db=store.meta))
    store.close()
    again = open_store(tmp_path / "db", readonly=True)
    try:
        with again._reading(again.meta) as txn:
            assert txn.get(b"k") == b"v"
    finally:
        again.close()
