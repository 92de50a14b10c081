"""Import throughput and store size, measured against a bare csv read in the same run.

For each kind (default: manufacturer and operator-dump) generates (once, cached in --dir)
an N-row CSV with ``ceir gen``'s generator, reads it with the csv module alone (the
floor; the second of two passes, so the page cache is warm as for the import), imports
it into a fresh store with ``ceir.feeds.importer.import_file`` (both passes, audit,
details, change log: what ``ceir import`` does), and prints rows/s of each and their
ratio (issue 12: import >= 0.5x the bare read, at least 0.2x), and the store's bytes
per device: the hot table (devices + TACs), the registry (the rest), the file; and the
import's peak memory. ``--base N`` imports into a copy of a store that already holds N
devices (the national case: a file's keys spread over a big table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import threading
import time
from pathlib import Path

from ceir.feeds import Kind, gen
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.store import open_store
from loadtest.measure import bare_read

HOT = ("devices", "tacs")


class PeakMemory:
    """Peak resident memory of this process while the block runs: all of it (``VmHWM``,
    which counts the store's memory-mapped file pages the import touched: clean, and
    reclaimable) and its anonymous part (``RssAnon``, sampled every 0.1 s: what the import
    itself holds)."""

    def __init__(self) -> None:
        self.anon_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _status() -> dict[str, int]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "VmHWM"):
                out[name] = int(value.split()[0])
        return out

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.anon_kib = max(self.anon_kib, self._status().get("RssAnon", 0))

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        status = self._status()
        self.anon_kib = max(self.anon_kib, status.get("RssAnon", 0))
        self.hwm_kib = status.get("VmHWM", 0)


def feed_file(args: argparse.Namespace, kind: Kind) -> Path:
    # Over a --base store the file's devices come after the base's (serial indexes
    # --base on): new devices spread over the whole key range of the stored ones.
    name = f"{kind.value}-{args.rows}-{args.dirt}-{args.seed}"
    feed = args.dir / (f"{name}-after-{args.base}.csv" if args.base else f"{name}.csv")
    if not feed.exists():
        start = (kind.code - 1) * gen.REGION + args.base if args.base else -1
        started = time.perf_counter()
        partial = feed.with_suffix(".partial")
        generate(kind, args.rows, partial, dirt=args.dirt, seed=args.seed, start=start)
        partial.rename(feed)
        print(f"generated {feed} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return feed


def base_store(args: argparse.Namespace, kind: Kind, tacs: Path, db: Path) -> None:
    """*db*: a copy of a store already holding --base devices of *kind* (built once, from
    another seed's feed, and kept in --dir)."""
    base = args.dir / f"base-{kind.value}-{args.base}"
    if not (base / "data.mdb").exists():
        shutil.rmtree(base, ignore_errors=True)
        feed = args.dir / f"base-{kind.value}-{args.base}.csv"
        if not feed.exists():
            generate(kind, args.base, feed, seed=args.seed + 1000)
        started = time.perf_counter()
        with open_store(base) as store:
            import_file(store, Kind.TAC, tacs, actor="bench")
            options = Options(max_new_devices=args.base, max_bad_ratio=1.0)
            import_file(store, kind, feed, actor="bench", options=options)
        print(f"built {base} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    shutil.rmtree(db, ignore_errors=True)
    shutil.copytree(base, db)
    if base.with_suffix(".token-key").exists():
        shutil.copy(base.with_suffix(".token-key"), db.with_suffix(".token-key"))


def one_kind(args: argparse.Namespace, kind: Kind, tacs: Path) -> dict[str, object]:
    feed = feed_file(args, kind)
    bare_read(feed)  # warms the page cache for the import
    rows, csv_s, csv_cpu = bare_read(feed)
    db = args.dir / "store"
    shutil.rmtree(db, ignore_errors=True)
    if args.base:
        base_store(args, kind, tacs, db)
    with open_store(db) as store:
        if not args.base:
            import_file(store, Kind.TAC, tacs, actor="bench")
        before = store.device_count()
        started, cpu = time.perf_counter(), time.process_time()
        with PeakMemory() as peak:
            summary = import_file(
                store,
                kind,
                feed,
                actor="bench",
                options=Options(max_new_devices=args.rows, max_bad_ratio=1.0),
                bulk=None if args.path == "auto" else args.path == "bulk",
            )
        import_cpu = time.process_time() - cpu
        import_s = time.perf_counter() - started
        devices = store.device_count()
        tables = store.table_bytes()
    file_bytes = (db / "data.mdb").stat().st_size
    hot = sum(tables[t] for t in HOT)
    csv_rate, import_rate = rows / csv_s, rows / import_s
    per = max(devices, 1)
    into = f" into a store of {before:,} devices" if before else ""
    print(f"{kind.value}: {feed.name} ({rows:,} rows, {feed.stat().st_size / 1e6:,.0f} MB){into}")
    print(f"  summary     {summary.line()}")
    print(f"  csv read    {csv_s:8.1f} s  {csv_rate:12,.0f} rows/s   (csv.reader, nothing else)")
    print(f"  ceir import {import_s:8.1f} s  {import_rate:12,.0f} rows/s   (check + write pass)")
    print(f"  ratio       {import_rate / csv_rate:8.3f} x  the bare read's rows/s")
    # On a shared, loaded box wall time is mostly waiting for a core: CPU seconds (this
    # process's user + system) say what each pass costs.
    print(
        f"  cpu         csv {csv_cpu:.1f} s, import {import_cpu:.1f} s: "
        f"ratio {csv_cpu / import_cpu:.3f} x  by CPU time"
    )
    print(
        f"  store       {devices:,} devices; hot {hot / per:.1f} B/device (devices + TACs), "
        f"registry {(sum(tables.values()) - hot) / per:.1f} B/device, "
        f"file {file_bytes / per:.0f} B/device"
    )
    big = sorted(tables.items(), key=lambda kv: -kv[1])[:8]
    print("  tables      " + ", ".join(f"{name} {size / per:.1f}" for name, size in big))
    print(
        f"  peak memory {peak.anon_kib / 1024:,.0f} MiB anonymous (RssAnon), "
        f"{peak.hwm_kib / 1024:,.0f} MiB resident with the store's mapped pages (VmHWM)"
    )
    return {
        "kind": kind.value,
        "rows": rows,
        "base_devices": before,
        "csv_rows_per_s": csv_rate,
        "import_rows_per_s": import_rate,
        "ratio": import_rate / csv_rate,
        "csv_cpu_s": csv_cpu,
        "import_cpu_s": import_cpu,
        "cpu_ratio": csv_cpu / import_cpu,
        "devices": devices,
        "tables": tables,
        "file_bytes": file_bytes,
        "peak_anon_mib": peak.anon_kib / 1024,
        "peak_rss_mib": peak.hwm_kib / 1024,
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
    parser.add_argument(
        "--base",
        type=int,
        default=0,
        help="import into a copy of a store already holding this many devices of the kind "
        "(another seed's feed; built once and kept in --dir)",
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
