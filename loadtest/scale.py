"""National scale on one box (issue 12): import, bytes per device and lookups at 1 M, 10 M
and N devices, from one run.

Builds one store in stages: manufacturer feeds of 1 M, 9 M and N - 10 M devices (disjoint
serial ranges, the IMEIs ``ceir gen manufacturer`` makes; generated with numpy), each
imported with ``ceir import`` in a child process, whose peak RSS is read from ``wait4``.
Each stage's file is also read by a bare ``csv.reader`` pass, the floor its rows/s are
compared with (the last stage's is reported). After each stage: the bytes each table
uses per device (hot: devices + TACs; registry: the rest), and lookups — bare ``txn.get``
in this process, and CheckIMEIBatch / CheckPacked against ``ceir serve`` in a child
process, its CPU per IMEI. At the end the store is compacted in place by ``ceir compact``
(file size before and after). Prints a table and writes ``result.json``.

Stages are reused: ``--resume`` continues a stopped run after its last finished stage
(``stages.json`` in ``--dir``), and ``--keep-feeds`` keeps the generated feeds, which a
later run with the same ``--dir`` imports instead of generating them again.
Usage: ``./scripts/bench-scale [--devices N] [--dir DIR] [--resume] [--keep-feeds]``.
"""

from __future__ import annotations

import argparse
import asyncio
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

import numpy as np

from ceir.feeds import Kind
from ceir.feeds.gen import POOL, device_imei, generate, tac_entry
from ceir.lookup import check_digits
from ceir.store import open_store
from loadtest import bench_core
from loadtest.measure import bare_read

_REGION = 50_000_000  # ceir.feeds.gen: serial indexes per kind
_CHUNK = 1_000_000
HOT = ("devices", "tacs")


def write_feed(path: Path, start: int, n: int, seed: int) -> None:
    """A clean manufacturer CSV of the devices with serial index start .. start + n - 1
    (the IMEIs, brands, models, TPP and maker fields ``ceir gen manufacturer --start``
    writes), CRLF line ends as csv.writer's; dates drawn from 2023-01-01 + 900 days.
    Built with numpy, a million rows at a time: rows are laid out by byte offset."""
    rng = np.random.default_rng(seed)
    days = np.frombuffer(
        "".join(
            time.strftime("%Y-%m-%d", time.gmtime(1_672_531_200 + d * 86_400)) for d in range(900)
        ).encode(),
        np.uint8,
    ).reshape(900, 10)
    rest = []
    for j in range(POOL):
        _, brand, model, _ = tac_entry(j)
        fields = f",{brand},{model},TPP-{j:05d},M{j % 97:04d},"
        rest.append(np.frombuffer(fields.encode(), np.uint8))
    partial = path.with_suffix(".partial")
    with partial.open("wb") as f:
        f.write(b"imei,brand,model,tpp_number,maker_id,produced_at\r\n")
        for a in range(start, start + n, _CHUNK):
            b = min(a + _CHUNK, start + n)
            f.write(_rows(a, b, rest, days[rng.integers(0, 900, b - a)]))
    partial.rename(path)


_TACS = np.array([int(tac_entry(j)[0]) for j in range(POOL)], np.int64)
_SPAN = np.arange(64)  # wider than any field


def _rows(a: int, b: int, rest: list[np.ndarray], dates: np.ndarray) -> bytes:
    """The CSV bytes of serial indexes a .. b - 1 (``device_imei`` in columns)."""
    index = np.arange(a, b, dtype=np.int64)
    j = index % POOL
    body = _TACS[j] * 1_000_000 + (index // POOL * 7919 + 4_711) % 1_000_000
    digits = (body[:, None] // 10 ** np.arange(13, -1, -1, dtype=np.int64) % 10 + 48).astype(
        np.uint8
    )
    check = np.frombuffer(check_digits(digits.tobytes(), 14), np.uint8)
    lengths = 15 + np.array([len(r) for r in rest])[j] + 12
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), np.uint8)
    out[starts[:, None] + _SPAN[:14]] = digits
    out[starts + 14] = check
    for k, fields in enumerate(rest):
        rows = starts[(k - a) % POOL :: POOL]
        out[(rows + 15)[:, None] + _SPAN[: len(fields)]] = fields
    out[(ends - 12)[:, None] + _SPAN[:10]] = dates
    out[ends - 2] = 13
    out[ends - 1] = 10
    return out.tobytes()


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


@dataclass
class Compaction:
    file_before: int
    file_after: int
    hot_after: float
    """Hot table bytes per device after ``ceir compact``."""
    total_after: float
    """Every table's bytes per device after it."""
    seconds: float


def compact(db: Path) -> Compaction:
    """``ceir compact`` of *db* in a child process: the file before and after."""
    before = (db / "data.mdb").stat().st_size
    started = time.perf_counter()
    _quiet(ceir("compact", "--db", str(db)))
    seconds = time.perf_counter() - started
    devices, tables, after = sizes(db)
    hot = sum(tables[t] for t in HOT)
    return Compaction(before, after, hot / devices, sum(tables.values()) / devices, seconds)


def stage_sizes(total: int, at: tuple[int, ...]) -> list[int]:
    """Devices added by each stage: up to each of *at* below *total*, then up to *total*."""
    marks = [*sorted(m for m in set(at) if 0 < m < total), total]
    return [b - a for a, b in zip([0, *marks], marks, strict=False)]


def fresh_store(db: Path, progress: Path) -> None:
    """An empty store at *db* holding the generator's TACs; no stage to resume."""
    shutil.rmtree(db, ignore_errors=True)
    progress.unlink(missing_ok=True)
    for stale in db.parent.glob(f"{db.name}.*-key"):
        stale.unlink()
    tacs = db.parent / "tac.csv"
    generate(Kind.TAC, POOL, tacs)
    _quiet(ceir("import", "tac", str(tacs), "--db", str(db), "--create", "-q"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir: Path = args.dir
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "store"
    progress = work_dir / "stages.json"
    base = (Kind.MANUFACTURER.code - 1) * _REGION
    result: dict[str, Any] = {"devices": args.devices, "stages": [], "imports": []}
    if args.resume and progress.exists() and (db / "data.mdb").exists():
        result.update(json.loads(progress.read_text()), devices=args.devices)
        print(f"resuming after {len(result['stages'])} stage(s) in {db}", file=sys.stderr)
    else:
        fresh_store(db, progress)
    done = sum(i["rows"] for i in result["imports"])
    for n in stage_sizes(args.devices, args.stages)[len(result["stages"]) :]:
        feed = work_dir / f"manufacturer-{base + done}-{n}.csv"
        if not feed.exists():  # kept from an earlier run with --keep-feeds: reused
            started = time.perf_counter()
            write_feed(feed, base + done, n, seed=done)
            took = time.perf_counter() - started
            print(f"generated {n:,} rows in {took:.0f} s", file=sys.stderr)
        bare_read(feed)  # the first pass warms the page cache, as for the import
        rows, seconds, _cpu = bare_read(feed)
        imp = run_import(db, Kind.MANUFACTURER, feed, n)
        print(
            f"  {imp.summary}; peak RSS {imp.peak_rss_mib:,.0f} MiB, "
            f"anonymous {imp.peak_anon_mib:,.0f} MiB",
            file=sys.stderr,
        )
        if not args.keep_feeds:
            feed.unlink()
        result["imports"].append({**asdict(imp), "csv_rows_per_s": rows / seconds})
        done += n
        devices, tables, file_bytes = sizes(db)
        hot = sum(tables[t] for t in HOT)
        stage = Stage(
            devices, hot / devices, (sum(tables.values()) - hot) / devices, tables, file_bytes
        )
        stage.lookups = lookups(db, range(base, base + done), args)
        result["stages"].append(asdict(stage))
        progress.write_text(json.dumps(result, indent=2) + "\n")  # a rerun resumes here
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # so far, should it stop
        print(f"  {devices:,} devices: {stage.lookups}", file=sys.stderr)
    last = result["imports"][-1]
    result["csv_rows_per_s"] = last["csv_rows_per_s"]
    result["import_rows_per_s"] = last["rows"] / last["seconds"]
    result["import_vs_csv"] = result["import_rows_per_s"] / result["csv_rows_per_s"]
    result["peak_rss_mib"] = max(i["peak_rss_mib"] for i in result["imports"])
    result["peak_anon_mib"] = max(i["peak_anon_mib"] for i in result["imports"])
    result["file_bytes"] = result["stages"][-1]["file_bytes"]
    result["compaction"] = asdict(compact(db))
    result["compacted_bytes"] = result["compaction"]["file_after"]
    progress.unlink(missing_ok=True)  # the store is compacted: no stage to resume
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
    done = result["compaction"]
    print(
        f"file        {done['file_before'] / 1e9:.2f} GB after the imports "
        f"({done['file_before'] / n:.0f} B/device), {done['file_after'] / 1e9:.2f} GB after "
        f"`ceir compact` ({done['file_after'] / n:.0f} B/device; hot {done['hot_after']:.1f}, "
        f"all tables {done['total_after']:.1f} B/device) in {done['seconds']:.0f} s"
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
    parser.add_argument(
        "--keep-feeds",
        action="store_true",
        help="keep the generated feeds in --dir (a later run with the same --dir reuses them)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped run in --dir after its last finished stage",
    )
    args = parser.parse_args(argv)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
