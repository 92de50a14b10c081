"""What a user would pick instead of ceir, on the same keys: Redis and SQLite.

- Redis: Debian's ``redis-server`` (installed with apt-get when missing), started on
  loopback for the run and stopped after it, loaded with every (key, record) of the
  store; ``MGET`` of 1,000 keys and one ``GET`` per key from redis-py, two client threads.
- SQLite: one ``WITHOUT ROWID`` table of the same pairs; point lookups inside one read
  transaction, and ``IN`` queries of 1,000 keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ceir.store import open_store
from loadtest import bench_core
from loadtest.bench_core import Workload
from loadtest.measure import Row, pct
from loadtest.serverproc import cpu_seconds

# -- Redis -------------------------------------------------------------------------------


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    print("redis-server missing: apt-get update && apt-get install -y redis-server", flush=True)
    # The Debian package, through the system's package manager (on PATH by design).
    subprocess.run(["apt-get", "update", "-qq"], check=True)  # noqa: S607
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "redis-server"],  # noqa: S607
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed and apt-get did not install it")
    return found


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[tuple[int, int]]:
    """A throwaway redis-server on loopback: (port, pid). Stopped on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603 - the installed redis-server, fixed args
        [
            _redis_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        client.close()
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def load_redis(port: int, db: Path) -> None:
    import redis

    client = redis.Redis(port=port)
    with open_store(db, readonly=True) as store, store.snapshot() as tables:
        chunk: dict[bytes, bytes] = {}
        for key, value in tables.devices.packed_items():
            chunk[key] = value
            if len(chunk) == 20_000:
                client.mset(chunk)
                chunk = {}
        if chunk:
            client.mset(chunk)
    client.close()


def redis_rows(port: int, pid: int, work: Workload, seconds: float, group: str) -> list[Row]:
    import redis

    chunks = work.chunks()
    rows = []
    for name, per_call in (
        ("Redis MGET 1,000 (redis-py), 2 clients", True),
        ("Redis GET per key (redis-py), 2 clients", False),
    ):
        counts = [0, 0]
        latencies: list[float] = []
        stop = time.monotonic() + seconds

        def client_loop(
            slot: int,
            per_call: bool = per_call,
            stop: float = stop,
            counts: list[int] = counts,
            latencies: list[float] = latencies,
        ) -> None:
            client = redis.Redis(port=port)
            i = slot
            while time.monotonic() < stop:
                started = time.perf_counter()
                if per_call:
                    values = client.mget(chunks[i % len(chunks)])
                    if values[-1] is None:
                        raise AssertionError("Redis lost a key")
                    counts[slot] += len(values)
                else:
                    if client.get(work.keys[i % len(work.keys)]) is None:
                        raise AssertionError("Redis lost a key")
                    counts[slot] += 1
                latencies.append(time.perf_counter() - started)
                i += 2
            client.close()

        before = cpu_seconds(pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(s,)) for s in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        done = sum(counts)
        used = cpu_seconds(pid) - before
        rows.append(
            Row(
                name,
                done / elapsed,
                used / done * 1e6,
                pct(latencies, 0.5),
                pct(latencies, 0.99),
                group,
            )
        )
    return rows


# -- SQLite ------------------------------------------------------------------------------


def build_sqlite(path: Path, db: Path) -> None:
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = sqlite3.connect(partial)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE devices (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    with open_store(db, readonly=True) as store, store.snapshot() as tables:
        con.executemany("INSERT INTO devices VALUES (?, ?)", tables.devices.packed_items())
    con.commit()
    con.close()
    partial.rename(path)


def sqlite_rows(path: Path, work: Workload, group: str) -> list[Row]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB, as a tuned user would
    keys = work.keys

    def point() -> None:
        cur = con.cursor()
        cur.execute("BEGIN")
        execute = cur.execute
        for key in keys:
            if execute("SELECT value FROM devices WHERE key = ?", (key,)).fetchone() is None:
                raise AssertionError("SQLite lost a key")
        cur.execute("COMMIT")

    marks = ",".join("?" * work.batch)  # placeholders only: the keys are bound parameters
    query = f"SELECT key, value FROM devices WHERE key IN ({marks})"  # noqa: S608

    def batched() -> None:
        for chunk in work.chunks():
            if len(chunk) == work.batch and len(con.execute(query, chunk).fetchall()) != len(
                set(chunk)
            ):
                raise AssertionError("SQLite lost a key")

    rows = [
        bench_core._rate("SQLite WITHOUT ROWID point lookups, one txn", len(keys), point),
        bench_core._rate("SQLite WITHOUT ROWID IN (1,000 keys)", len(keys), batched),
    ]
    con.close()
    return [dataclasses.replace(r, group=group) for r in rows]
