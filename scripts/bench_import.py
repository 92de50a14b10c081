"""Import throughput and store size, measured against a bare csv read in the same run.

For each kind (default: manufacturer and operator-dump) generates (once, cached in --dir)
an N-row CSV with ``ceir gen``'s generator, reads it with the csv module alone (the
floor; the second of two passes, so the page cache is warm as for the import), imports
it into a fresh store with ``ceir.feeds.importer.import_file`` (both passes, audit,
details, change log: what ``ceir import`` does), and prints rows/s of each and their
ratio (issue 12: import >= 0.5x the bare read, at least 0.2x), and the store's bytes
per device: the hot table (devices + TACs), the registry (the rest), the file.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.store import open_store

HOT = ("devices", "tacs")


def bare_read(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    with path.open(encoding="utf-8", newline="") as f:
        for _row in csv.reader(f):
            n += 1
    return n - 1, time.perf_counter() - started


def feed_file(args: argparse.Namespace, kind: Kind) -> Path:
    feed = args.dir / f"{kind.value}-{args.rows}-{args.dirt}-{args.seed}.csv"
    if not feed.exists():
        started = time.perf_counter()
        partial = feed.with_suffix(".partial")
        generate(kind, args.rows, partial, dirt=args.dirt, seed=args.seed)
        partial.rename(feed)
        print(f"generated {feed} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return feed


def one_kind(args: argparse.Namespace, kind: Kind, tacs: Path) -> dict[str, object]:
    feed = feed_file(args, kind)
    rows, csv_s = bare_read(feed)  # also warms the page cache for the import
    rows, csv_s = bare_read(feed)
    db = args.dir / "store"
    shutil.rmtree(db, ignore_errors=True)
    with open_store(db) as store:
        import_file(store, Kind.TAC, tacs, actor="bench")
        started = time.perf_counter()
        summary = import_file(
            store,
            kind,
            feed,
            actor="bench",
            options=Options(max_new_devices=args.rows, max_bad_ratio=1.0),
            bulk=None if args.path == "auto" else args.path == "bulk",
        )
        import_s = time.perf_counter() - started
        devices = store.device_count()
        tables = store.table_bytes()
    file_bytes = (db / "data.mdb").stat().st_size
    hot = sum(tables[t] for t in HOT)
    csv_rate, import_rate = rows / csv_s, rows / import_s
    per = max(devices, 1)
    print(f"{kind.value}: {feed.name} ({rows:,} rows, {feed.stat().st_size / 1e6:,.0f} MB)")
    print(f"  summary     {summary.line()}")
    print(f"  csv read    {csv_s:8.1f} s  {csv_rate:12,.0f} rows/s   (csv.reader, nothing else)")
    print(f"  ceir import {import_s:8.1f} s  {import_rate:12,.0f} rows/s   (check + write pass)")
    print(f"  ratio       {import_rate / csv_rate:8.2f} x  the bare read's rows/s")
    print(
        f"  store       {devices:,} devices; hot {hot / per:.1f} B/device (devices + TACs), "
        f"registry {(sum(tables.values()) - hot) / per:.1f} B/device, "
        f"file {file_bytes / per:.0f} B/device"
    )
    big = sorted(tables.items(), key=lambda kv: -kv[1])[:6]
    print("  tables      " + ", ".join(f"{name} {size / per:.1f}" for name, size in big))
    return {
        "kind": kind.value,
        "rows": rows,
        "csv_rows_per_s": csv_rate,
        "import_rows_per_s": import_rate,
        "ratio": import_rate / csv_rate,
        "devices": devices,
        "tables": tables,
        "file_bytes": file_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench-import", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/ceir-bench"))
    parser.add_argument("--dirt", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kinds",
        default="manufacturer,operator-dump",
        help="comma-separated feed kinds to measure",
    )
    parser.add_argument(
        "--path",
        choices=("auto", "bulk", "rows"),
        default="auto",
        help="the importer's path: by file size (as ceir import), bulk, or row by row",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    tacs = args.dir / "tac.csv"
    if not tacs.exists():
        generate(Kind.TAC, POOL, tacs)
    results = [one_kind(args, Kind(k), tacs) for k in args.kinds.split(",")]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
