"""Import throughput and store size, measured against a bare csv read in the same run.

Generates (once, cached in --dir) a TAC file and an N-row manufacturer CSV, reads the
CSV with the csv module alone (the floor), imports it into a fresh store with
``ceir.feeds.importer.import_file`` (both passes, audit, details: what ``ceir import``
does), and prints rows/s of each, their ratio, and the store's size per device.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.store import open_store


def bare_read(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    with path.open(encoding="utf-8", newline="") as f:
        for _row in csv.reader(f):
            n += 1
    return n - 1, time.perf_counter() - started


def live_bytes(db: Path) -> int:
    """Bytes of the pages the store's tables use (the file also holds free pages)."""
    with open_store(db, readonly=True) as store:
        return store.used_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ceir-bench"))
    parser.add_argument("--dirt", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    tacs = args.dir / "tac.csv"
    feed = args.dir / f"manufacturer-{args.rows}-{args.dirt}-{args.seed}.csv"
    if not tacs.exists():
        generate(Kind.TAC, POOL, tacs)
    if not feed.exists():
        started = time.perf_counter()
        partial = feed.with_suffix(".partial")
        generate(Kind.MANUFACTURER, args.rows, partial, dirt=args.dirt, seed=args.seed)
        partial.rename(feed)
        print(f"generated {feed} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    size = feed.stat().st_size
    rows, csv_s = bare_read(feed)  # also warms the page cache for the import
    rows, csv_s = bare_read(feed)
    db = args.dir / "store"
    shutil.rmtree(db, ignore_errors=True)
    with open_store(db) as store:
        import_file(store, Kind.TAC, tacs, actor="bench")
        started = time.perf_counter()
        summary = import_file(
            store,
            Kind.MANUFACTURER,
            feed,
            actor="bench",
            options=Options(max_new_devices=args.rows, max_bad_ratio=1.0),
        )
        import_s = time.perf_counter() - started
        devices = store.device_count()
    live = live_bytes(db)
    data = db / "data.mdb"
    file_bytes = data.stat().st_size
    disk_bytes = os.stat(data).st_blocks * 512
    csv_rate, import_rate = rows / csv_s, rows / import_s
    print(f"feed        {feed} ({rows:,} rows, {size / 1e6:,.0f} MB)")
    print(f"summary     {summary.line()}")
    print(f"csv read    {csv_s:8.1f} s  {csv_rate:12,.0f} rows/s   (csv.reader, nothing else)")
    print(f"ceir import {import_s:8.1f} s  {import_rate:12,.0f} rows/s   (check + write pass)")
    print(f"ratio       {csv_rate / import_rate:8.1f} x  slower than the bare read")
    print(
        f"store       {devices:,} devices; data.mdb {file_bytes / 1e9:.2f} GB "
        f"({file_bytes / devices:.0f} B/device), on disk {disk_bytes / 1e9:.2f} GB "
        f"({disk_bytes / devices:.0f} B/device); pages in use {live / 1e9:.2f} GB "
        f"({live / devices:.0f} B/device; the rest is LMDB's free list, reused as it grows)"
    )


if __name__ == "__main__":
    main()
