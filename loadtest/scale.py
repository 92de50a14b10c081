"""National scale on one box (issue 12): import, bytes per device and lookups at 1 M, 10 M
and N devices, from one run.

Builds one store in stages: manufacturer feeds of 1 M, 9 M and N - 10 M devices (disjoint
serial ranges, the IMEIs ``ceir gen manufacturer`` makes), each imported with ``ceir
import`` in a child process, whose peak RSS is read from ``wait4``. The last (largest)
stage's file is also read by a bare ``csv.reader`` pass, the floor its rows/s are compared
with. After each stage: the bytes each table uses per device (hot: devices + TACs;
registry: the rest), and lookups — bare ``txn.get`` in this process, and CheckIMEIBatch /
CheckPacked against ``ceir serve`` in a child process, its CPU per IMEI. At the end the
store is compacted with ``ceir backup`` (file size before and after). Prints a table and
writes ``result.json``. Usage: ``./scripts/bench-scale [--devices N] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ceir.feeds import Kind
from ceir.feeds.gen import POOL, device_imei, generate, tac_entry
from ceir.store import open_store
from loadtest import bench_core

_REGION = 50_000_000  # ceir.feeds.gen: serial indexes per kind
_CHUNK = 1_000_000
HOT = ("devices", "tacs")


def write_feed(path: Path, start: int, n: int, seed: int) -> None:
    """A clean manufacturer CSV of the devices with serial index start .. start + n - 1
    (those of ``ceir gen manufacturer --start``), CRLF as csv.writer writes it; dates
    drawn from 2023-01-01 + 900 days."""
    rng = random.Random(seed)
    days = [time.strftime("%Y-%m-%d", time.gmtime(1_672_531_200 + d * 86_400)) for d in range(900)]
    rest = []
    for j in range(POOL):
        _, brand, model, _ = tac_entry(j)
        rest.append(f",{brand},{model},TPP-{j:05d},M{j % 97:04d},")
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        f.write("imei,brand,model,tpp_number,maker_id,produced_at\r\n")
        for a in range(start, start + n, _CHUNK):
            b = min(a + _CHUNK, start + n)
            picks = rng.choices(days, k=b - a)
            f.write(
                "".join(
                    f"{device_imei(i)}{rest[i % POOL]}{d}\r\n"
                    for i, d in zip(range(a, b), picks, strict=True)
                )
            )
    partial.rename(path)


def bare_read(path: Path) -> tuple[int, float]:
    """Rows and seconds of a csv.reader pass over *path* (nothing else done)."""
    started = time.perf_counter()
    n = 0
    with path.open(encoding="utf-8", newline="") as f:
        for _row in csv.reader(f):
            n += 1
    return n - 1, time.perf_counter() - started


def ceir(*args: str) -> list[str]:
    return [sys.executable, "-c", "from ceir.cli import run; run()", *args]


def _quiet(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - fixed args


@dataclass
class ImportRun:
    rows: int
    seconds: float
    peak_rss_mib: float
    """Peak RSS (wait4's ru_maxrss): includes the store's file-backed map pages it read."""
    peak_anon_mib: float
    """Peak anonymous RSS, sampled every 0.2 s: the import's own memory."""
    summary: str


def run_import(db: Path, kind: Kind, path: Path, rows: int) -> ImportRun:
    """``ceir import`` of *path* in a child process: seconds, peak RSS, summary line."""
    command = ceir(
        "import", kind.value, str(path), "--db", str(db), "-q", "--stage-above", "0",
        "--stage-lost-stolen-above", "0",
        "--max-new-devices", str(max(rows, 1)), "--max-bad-ratio", "1",
        "--rejects", str(path.with_suffix(".rejects.csv")),
    )  # fmt: skip
    started = time.perf_counter()
    anon = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:  # noqa: S603
        while True:  # -q: the output is one line, it waits in the pipe
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # its rusage: peak RSS
            if pid:
                break
            anon = max(anon, _anon_kib(child.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out = child.stdout.read() if child.stdout else ""
    if child.returncode:
        sys.exit(f"ceir import exited {child.returncode}: {out}")
    line = out.strip().splitlines()[-1]
    return ImportRun(rows, seconds, usage.ru_maxrss / 1024, anon / 1024, line)


def _anon_kib(pid: int) -> int:
    """The process's anonymous resident memory (KiB): its RSS without the pages of files
    it maps (the store's LMDB map is file-backed, and counts in the RSS as it is read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Stage:
    devices: int
    hot_bytes_per_device: float
    registry_bytes_per_device: float
    tables: dict[str, int]
    file_bytes: int
    lookups: dict[str, dict[str, float]] = field(default_factory=dict)


def sizes(db: Path) -> tuple[int, dict[str, int], int]:
    with open_store(db, readonly=True) as store:
        return store.device_count(), store.table_bytes(), (db / "data.mdb").stat().st_size


def lookups(db: Path, indexes: range, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Lookup rows at the store's current size: bare txn.get, CheckIMEIBatch, CheckPacked."""
    rng = random.Random(len(indexes))
    picks = [rng.choice(indexes) for _ in range(args.lookups)]
    keys = [int(device_imei(i)[:14]).to_bytes(8, "big") for i in picks]
    work = bench_core.Workload(keys, args.batch)
    with open_store(db, readonly=True) as store:
        rows = [bench_core.row_floor(store, work)]
    server = bench_core.ServerProcess(db, workers=1)
    try:
        grpc_args = argparse.Namespace(
            unary_concurrency=16, batch_concurrency=args.concurrency, seconds=args.seconds
        )
        rows += asyncio.run(bench_core.grpc_rows(server, work, grpc_args))[1:]
    finally:
        server.stop()
    names = ("floor", "batch", "packed")
    return {
        name: {"imeis_per_s": r.imeis_per_s, "cpu_us": r.cpu_us or float("nan")}
        for name, r in zip(names, rows, strict=True)
    }


def compact(db: Path, into: Path) -> int:
    """``ceir backup`` (a compacted copy) of *db* into *into*; the copy's file size."""
    shutil.rmtree(into, ignore_errors=True)
    _quiet(ceir("backup", str(into), "--db", str(db)))
    size = (into / "data.mdb").stat().st_size
    shutil.rmtree(into, ignore_errors=True)
    return size


def stage_sizes(total: int, at: tuple[int, ...]) -> list[int]:
    """Devices added by each stage: up to each of *at* below *total*, then up to *total*."""
    marks = [*sorted(m for m in set(at) if 0 < m < total), total]
    return [b - a for a, b in zip([0, *marks], marks, strict=False)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir: Path = args.dir
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "store"
    shutil.rmtree(db, ignore_errors=True)
    for stale in db.parent.glob(f"{db.name}.*-key"):
        stale.unlink()
    tacs = work_dir / "tac.csv"
    generate(Kind.TAC, POOL, tacs)
    _quiet(ceir("import", "tac", str(tacs), "--db", str(db), "--create", "-q"))
    base = (Kind.MANUFACTURER.code - 1) * _REGION
    result: dict[str, Any] = {"devices": args.devices, "stages": [], "imports": []}
    done = 0
    last_csv: tuple[int, float] = (0, 0.0)
    for n in stage_sizes(args.devices, args.stages):
        feed = work_dir / f"manufacturer-{done}-{n}.csv"
        started = time.perf_counter()
        write_feed(feed, base + done, n, seed=done)
        print(f"generated {n:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        last_csv = bare_read(feed)
        last_csv = bare_read(feed)  # the second pass: page cache warm, as for the import
        imp = run_import(db, Kind.MANUFACTURER, feed, n)
        print(
            f"  {imp.summary}; peak RSS {imp.peak_rss_mib:,.0f} MiB, "
            f"anonymous {imp.peak_anon_mib:,.0f} MiB",
            file=sys.stderr,
        )
        feed.unlink()
        result["imports"].append(asdict(imp))
        done += n
        devices, tables, file_bytes = sizes(db)
        hot = sum(tables[t] for t in HOT)
        stage = Stage(
            devices, hot / devices, (sum(tables.values()) - hot) / devices, tables, file_bytes
        )
        stage.lookups = lookups(db, range(base, base + done), args)
        result["stages"].append(asdict(stage))
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # so far, should it stop
        print(f"  {devices:,} devices: {stage.lookups}", file=sys.stderr)
    rows, seconds = last_csv
    result["csv_rows_per_s"] = rows / seconds
    last = result["imports"][-1]
    result["import_rows_per_s"] = last["rows"] / last["seconds"]
    result["import_vs_csv"] = result["import_rows_per_s"] / result["csv_rows_per_s"]
    result["peak_rss_mib"] = max(i["peak_rss_mib"] for i in result["imports"])
    result["peak_anon_mib"] = max(i["peak_anon_mib"] for i in result["imports"])
    result["file_bytes"] = result["stages"][-1]["file_bytes"]
    result["compacted_bytes"] = compact(db, work_dir / "compacted")
    if not args.keep:
        shutil.rmtree(db, ignore_errors=True)
    return result


def report(result: dict[str, Any]) -> None:
    n = result["devices"]
    last = result["imports"][-1]
    print(f"bench-scale: {n:,} devices, one store, imported in {len(result['imports'])} files")
    print(
        f"import      {result['import_rows_per_s']:>12,.0f} rows/s  (last file, {last['rows']:,} "
        f"rows, {last['seconds']:.0f} s)  vs bare csv.reader {result['csv_rows_per_s']:,.0f} "
        f"rows/s: {result['import_vs_csv']:.2f}x"
    )
    print(
        f"peak RSS    {result['peak_rss_mib']:>12,.0f} MiB (largest ceir import; with the "
        f"store's mapped pages), anonymous {result['peak_anon_mib']:,.0f} MiB"
    )
    print(
        f"{'devices':>12} {'hot B/dev':>10} {'total B/dev':>12} {'file B/dev':>11} "
        f"{'txn.get/s':>11} {'Batch/s':>10} {'Packed/s':>10} {'Batch CPU':>10} {'vs get':>7}"
    )
    for s in result["stages"]:
        lk = s["lookups"]
        total = s["hot_bytes_per_device"] + s["registry_bytes_per_device"]
        print(
            f"{s['devices']:>12,} {s['hot_bytes_per_device']:>10.1f} {total:>12.1f} "
            f"{s['file_bytes'] / s['devices']:>11.0f} {lk['floor']['imeis_per_s']:>11,.0f} "
            f"{lk['batch']['imeis_per_s']:>10,.0f} {lk['packed']['imeis_per_s']:>10,.0f} "
            f"{lk['batch']['cpu_us']:>8.2f}us "
            f"{lk['batch']['cpu_us'] / lk['floor']['cpu_us']:>6.2f}x"
        )
    first, end = result["stages"][0]["lookups"], result["stages"][-1]["lookups"]
    for form in ("batch", "packed"):
        ratio = end[form]["imeis_per_s"] / first[form]["imeis_per_s"]
        print(f"{form:<7} at {n:,} vs at the first stage: {ratio:.2f}x")
    print(
        f"file        {result['file_bytes'] / 1e9:.2f} GB after the imports, "
        f"{result['compacted_bytes'] / 1e9:.2f} GB compacted by `ceir backup` "
        f"({result['compacted_bytes'] / n:.0f} B/device)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench-scale", description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000_000, help="devices at the end")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ceir-scale",
        help="work directory (feeds, store)",
    )
    parser.add_argument(
        "--stages",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=(1_000_000, 10_000_000),
        help="device counts at which lookups are measured before the last (comma-separated)",
    )
    parser.add_argument("--lookups", type=int, default=200_000, help="keys per lookup row")
    parser.add_argument("--batch", type=int, default=1_000, help="IMEIs per batch / packed call")
    parser.add_argument("--concurrency", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each gRPC row")
    parser.add_argument("--out", type=Path, default=Path("result.json"), help="the JSON result")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args(argv)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
