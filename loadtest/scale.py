"""National scale on one box (issue 12): import, bytes per device and lookups at 1 M, 10 M
and N devices, from one run.

Builds one store in stages: manufacturer feeds of 1 M, 9 M and N - 10 M devices (disjoint
serial ranges, the IMEIs ``ceir gen manufacturer`` makes; generated with numpy), each
imported with ``ceir import`` in a child process, whose peak RSS is read from ``wait4``.
Each stage's file is also read by a bare ``csv.reader`` pass, the floor its rows/s are
compared with (the last stage's is reported). After each stage: the bytes each table
uses per device (hot: devices + TACs; registry: the rest), and lookups
(:mod:`loadtest.scale_lookups`). At the end the store is compacted in place by ``ceir
compact`` (file size before and after), and the stores copied after the --compare-at
stages (default: 1 M) are measured again in turns with the final one, same client,
same run: the ratio of N to 1 M. Prints a table and writes ``result.json``.

Every phase (generate, csv baseline, import — which repacks the hot table at its end —,
lookups, copy, compact, compare) is timed into ``result.json`` and announced on stderr
with the elapsed time; a running import prints a progress line every --progress-every
seconds. A stage whose feed and store growth cannot fit on the disk stops the run with
one line before it starts. Feeds are deleted once imported unless --keep-feeds.

Stages are reused: ``--resume`` continues a stopped run (``stages.json`` in ``--dir``):
after its last recorded import or stage; an import stopped midway is run again on the
same feed (``ceir import`` resumes where it stopped; the feed is generated again,
identical, if it is gone). ``--keep-feeds`` keeps the generated feeds, which a later
run with the same ``--dir`` imports instead of generating them again.
Usage: ``./scripts/bench-scale [--devices N] [--dir DIR] [--resume] [--keep-feeds]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ceir.errors import CeirError
from ceir.feeds import Kind
from ceir.feeds.gen import POOL, generate, tac_entry
from ceir.lookup import check_digits
from ceir.store import open_store
from loadtest import scale_lookups
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


def run_import(
    db: Path, kind: Kind, path: Path, rows: int, clock: Clock | None = None, every: float = 60
) -> ImportRun:
    """``ceir import`` of *path* in a child process: seconds, peak RSS, summary line; with
    *clock*, a progress line every *every* seconds (devices in the store so far)."""
    command = ceir(
        "import", kind.value, str(path), "--db", str(db), "-q", "--stage-above", "0",
        "--stage-lost-stolen-above", "0",
        "--max-new-devices", str(max(rows, 1)), "--max-bad-ratio", "1",
        "--rejects", str(path.with_suffix(".rejects.csv")),
    )  # fmt: skip
    started = time.perf_counter()
    before = sizes(db)[0] if clock else 0
    anon = 0
    next_line = started + every
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:  # noqa: S603
        while True:  # -q: the output is one line, it waits in the pipe
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # its rusage: peak RSS
            if pid:
                break
            anon = max(anon, _anon_kib(child.pid))
            if clock and time.perf_counter() >= next_line:
                next_line += every
                clock.log(_import_progress(db, before, rows, time.perf_counter() - started, anon))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out = child.stdout.read() if child.stdout else ""
    if child.returncode:
        sys.exit(f"ceir import exited {child.returncode}: {out}")
    line = out.strip().splitlines()[-1]
    return ImportRun(rows, seconds, usage.ru_maxrss / 1024, anon / 1024, line)


def _import_progress(db: Path, before: int, rows: int, seconds: float, anon_kib: int) -> str:
    """One progress line of a running import: devices it committed so far, file, disk."""
    try:
        devices, _tables, file_bytes = sizes(db)
    except CeirError as exc:  # mid-resize, say: the next line will tell
        return f"  importing, {seconds:,.0f} s ({exc})"
    added = devices - before
    return (
        f"  importing: {added:,} of {rows:,} rows committed in {seconds:,.0f} s "
        f"({added / seconds:,.0f} rows/s so far); file {file_bytes / 1e9:,.2f} GB, "
        f"{free_gb(db.parent):,.1f} GB free, import RssAnon {anon_kib / 1024:,.0f} MiB"
    )


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


def live_bytes(db: Path) -> int:
    with open_store(db, readonly=True) as store:
        return store.used_bytes()


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
    for old in db.parent.glob("at-*"):  # the copies of an earlier run's stages
        shutil.rmtree(old, ignore_errors=True)
    for stale in db.parent.glob(f"{db.name}.*-key"):
        stale.unlink()
    tacs = db.parent / "tac.csv"
    generate(Kind.TAC, POOL, tacs)
    _quiet(ceir("import", "tac", str(tacs), "--db", str(db), "--create", "-q"))


class Clock:
    """Elapsed time since the run began, on every progress line; phase timings."""

    def __init__(self, phases: list[dict[str, Any]]) -> None:
        self.started = time.perf_counter()
        self.phases = phases

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        print(f"[{elapsed / 60:6.1f} min, {stamp} UTC] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def phase(self, stage: int, name: str) -> Iterator[None]:
        """Times one phase of the stage that ends at *stage* devices."""
        self.log(f"{name} ({stage:,} devices) ...")
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.phases.append({"stage": stage, "phase": name, "seconds": round(seconds, 2)})
        self.log(f"{name} ({stage:,} devices) took {seconds:,.0f} s")


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def check_disk(work_dir: Path, least: int, likely: int, what: str) -> None:
    """Stops the run, one line, when *what* cannot fit even in the *least* bytes it may
    take (what is live in the store per device so far, plus the feed); warns when the
    *likely* bytes (the file's growth per device so far) come close to the free space."""
    free = shutil.disk_usage(work_dir).free
    if least > free:
        sys.exit(
            f"bench-scale: {what} needs at least {least / 1e9:,.1f} GB and {work_dir} has "
            f"{free / 1e9:,.1f} GB free; free some disk or pass --dir on a larger one "
            "(--resume continues from here)"
        )
    if likely > 0.9 * free:
        print(f"bench-scale: warning: {what} may need {likely / 1e9:,.1f} GB of the "
              f"{free / 1e9:,.1f} GB free in {work_dir}", file=sys.stderr)  # fmt: skip


def _feed_bytes(n: int) -> int:
    """The size of a generated feed of *n* rows (the fields repeat every POOL rows)."""
    fields = sum(len(",".join(tac_entry(j)[1:3])) + 18 for j in range(POOL)) / POOL
    return int(n * (15 + fields + 12))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir: Path = args.dir
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "store"
    progress = work_dir / "stages.json"
    base = (Kind.MANUFACTURER.code - 1) * _REGION
    result: dict[str, Any] = {"devices": args.devices, "stages": [], "imports": [], "phases": []}
    clock = Clock(result["phases"])
    if args.resume and progress.exists() and (db / "data.mdb").exists():
        _resume(result, clock, db, progress, args.devices)
    else:
        fresh_store(db, progress)
    plan = stage_sizes(args.devices, args.stages)
    if len(result["stages"]) < len(plan):
        result.pop("compaction", None)  # compacted before the stages were all done: again
    clock.log(f"plan: {len(plan)} stage(s) of {', '.join(f'{n:,}' for n in plan)} devices; "
              f"{free_gb(work_dir):,.1f} GB free in {work_dir}")  # fmt: skip
    done = sum(i["rows"] for i in result["imports"])
    for k, n in enumerate(plan):
        if k < len(result["stages"]):
            continue
        target = done + n if k == len(result["imports"]) else done
        if k == len(result["imports"]):  # not imported yet (or stopped while importing)
            _import_stage(args, clock, result, db, base + done, n)
            done += n
            progress.write_text(json.dumps(result, indent=2) + "\n")
        _measure_stage(args, clock, result, db, base, target)
        progress.write_text(json.dumps(result, indent=2) + "\n")  # a rerun resumes here
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # so far, should it stop
    last = result["imports"][-1]
    result["csv_rows_per_s"] = last["csv_rows_per_s"]
    result["import_rows_per_s"] = last["rows"] / last["seconds"]
    result["import_vs_csv"] = result["import_rows_per_s"] / result["csv_rows_per_s"]
    result["peak_rss_mib"] = max(i["peak_rss_mib"] for i in result["imports"])
    result["peak_anon_mib"] = max(i["peak_anon_mib"] for i in result["imports"])
    result["file_bytes"] = result["stages"][-1]["file_bytes"]
    if not result.get("compaction"):
        live = live_bytes(db)
        check_disk(work_dir, live, live + live // 10, "`ceir compact` (a live-size copy)")
        with clock.phase(args.devices, "compact"):
            result["compaction"] = asdict(compact(db))
        progress.write_text(json.dumps(result, indent=2) + "\n")
    result["compacted_bytes"] = result["compaction"]["file_after"]
    result["compare"] = _compare(args, clock, result, db, base)
    progress.unlink(missing_ok=True)  # the run is complete: nothing to resume
    total = sum(p["seconds"] for p in result["phases"])
    clock.log(f"done: {total / 60:,.1f} min in the phases")
    if not args.keep:
        shutil.rmtree(db, ignore_errors=True)
        for copy in work_dir.glob("at-*"):
            shutil.rmtree(copy, ignore_errors=True)
    return result


def _resume(result: dict[str, Any], clock: Clock, db: Path, progress: Path, devices: int) -> None:
    """*result* as the stopped run recorded it in *progress*, checked against the store."""
    result.update(json.loads(progress.read_text()), devices=devices)
    result.setdefault("phases", [])
    clock.phases = result["phases"]
    done = sum(i["rows"] for i in result["imports"])
    found = sizes(db)[0]
    if found < done:  # the store is not the one the record describes
        sys.exit(
            f"bench-scale: {db} holds {found:,} devices, the record of the run {progress} "
            f"{done:,}: start again without --resume"
        )
    clock.log(f"resuming after {len(result['imports'])} import(s) in {db} ({found:,} devices)")


def _import_stage(
    args: argparse.Namespace, clock: Clock, result: dict[str, Any], db: Path, start: int, n: int
) -> None:
    """Generate (or reuse) the feed of serial indexes start .. start + n - 1, read it with
    a bare csv.reader, import it; the feed is deleted after unless --keep-feeds."""
    done = sum(i["rows"] for i in result["imports"])
    stage = done + n
    feed = args.dir / f"manufacturer-{start}-{n}.csv"
    feed_bytes = 0 if feed.exists() else _feed_bytes(n)
    live = [live_bytes(db) / done] if done else [100.0]
    grown = [s["file_bytes"] / s["devices"] for s in result["stages"]] or [700.0]
    least, likely = (feed_bytes + int(n * max(per)) for per in (live, grown))
    check_disk(args.dir, least, likely, f"the stage to {stage:,} devices")
    reused = feed.exists()  # kept from an earlier run with --keep-feeds: reused
    if not reused:
        with clock.phase(stage, "generate"):
            write_feed(feed, start, n, seed=done)
    with clock.phase(stage, "csv baseline"):
        if reused:  # a new feed is in the page cache already, as for the import
            bare_read(feed)
        rows, seconds, _cpu = bare_read(feed)
    with clock.phase(stage, "import"):  # ceir import repacks the hot table at its end
        imp = run_import(db, Kind.MANUFACTURER, feed, n, clock, args.progress_every)
    clock.log(f"  {imp.summary}; peak RSS {imp.peak_rss_mib:,.0f} MiB, "
              f"anonymous {imp.peak_anon_mib:,.0f} MiB; {n / imp.seconds:,.0f} rows/s, "
              f"bare csv.reader {rows / seconds:,.0f} rows/s")  # fmt: skip
    result["imports"].append({**asdict(imp), "csv_rows_per_s": rows / seconds})
    if not args.keep_feeds:
        feed.unlink()
        feed.with_suffix(".rejects.csv").unlink(missing_ok=True)


def _measure_stage(
    args: argparse.Namespace, clock: Clock, result: dict[str, Any], db: Path, base: int, n: int
) -> None:
    """Bytes per table and the lookup rows at *n* devices; a copy of the store kept for
    the final comparison when *n* is one of --compare-at."""
    devices, tables, file_bytes = sizes(db)
    hot = sum(tables[t] for t in HOT)
    stage = Stage(
        devices, hot / devices, (sum(tables.values()) - hot) / devices, tables, file_bytes
    )
    with clock.phase(n, "lookups"):
        work = scale_lookups.workload(range(base, base + n), args.lookups, args.batch)
        stage.lookups = scale_lookups.rates(db, work, args.concurrency, args.seconds)
    clock.log(f"  {devices:,} devices: hot {stage.hot_bytes_per_device:.1f} B/device, "
              f"registry {stage.registry_bytes_per_device:.1f}, file "
              f"{file_bytes / devices:,.0f}; {scale_lookups.brief(stage.lookups)}")  # fmt: skip
    if n in args.compare_at and n < args.devices:
        copy = args.dir / f"at-{n}"
        shutil.rmtree(copy, ignore_errors=True)
        with clock.phase(n, "copy for the comparison"):
            _quiet(ceir("backup", str(copy), "--db", str(db)))
    result["stages"].append(asdict(stage))


def _compare(
    args: argparse.Namespace, clock: Clock, result: dict[str, Any], db: Path, base: int
) -> dict[str, Any]:
    """The kept copies and the final store measured in turns, same client, same run."""
    stores = {
        f"{n}": (args.dir / f"at-{n}", scale_lookups.workload(range(base, base + n),
                                                              args.lookups, args.batch))
        for n in sorted(args.compare_at)
        if n < args.devices and (args.dir / f"at-{n}" / "data.mdb").exists()
    }  # fmt: skip
    if not stores:
        return {}
    stores[f"{args.devices}"] = (
        db,
        scale_lookups.workload(range(base, base + args.devices), args.lookups, args.batch),
    )
    with clock.phase(args.devices, "compare"):
        best = scale_lookups.compare(stores, args.rounds, args.concurrency, args.seconds, clock.log)
    return {"rounds": args.rounds, "best": best}


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
        print(f"{form:<7} at {n:,} vs at the first stage (each measured then): {ratio:.2f}x")
    done = result["compaction"]
    print(
        f"file        {done['file_before'] / 1e9:.2f} GB after the imports "
        f"({done['file_before'] / n:.0f} B/device), {done['file_after'] / 1e9:.2f} GB after "
        f"`ceir compact` ({done['file_after'] / n:.0f} B/device; hot {done['hot_after']:.1f}, "
        f"all tables {done['total_after']:.1f} B/device) in {done['seconds']:.0f} s"
    )
    compare_report(result)
    phases = ", ".join(
        f"{p['phase']} {p['stage']:,}: {p['seconds']:,.0f}" for p in result["phases"]
    )
    print(f"phases (s): {phases}")


def compare_report(result: dict[str, Any]) -> None:
    """The final comparison: each store's best turn, and N against each smaller store."""
    compared = result.get("compare") or {}
    best: dict[str, scale_lookups.Rates] = compared.get("best", {})
    if not best:
        return
    print(f"same run, in turns (best of {compared['rounds']}; stores compacted):")
    for name, got in best.items():
        print(f"  {int(name):>12,} devices: {scale_lookups.brief(got)}")
    end = best[str(result["devices"])]
    for name in list(best)[:-1]:
        print(f"  at {result['devices']:,} vs at {int(name):,}: "
              f"{scale_lookups.ratios(end, best[name])}")  # fmt: skip


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
        type=lambda text: tuple(int(v) for v in text.split(",") if v),
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
    parser.add_argument(
        "--compare-at",
        type=lambda text: frozenset(int(v) for v in text.split(",") if v),
        default=frozenset({1_000_000}),
        help="stage sizes whose store is copied and measured again beside the final one, "
        "in turns, at the end (comma-separated; empty: none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of the final comparison")
    parser.add_argument(
        "--progress-every", type=float, default=60.0, help="seconds between import progress lines"
    )
    args = parser.parse_args(argv)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
