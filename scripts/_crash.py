"""Crash safety: SIGKILL `ceir serve` and running imports at random moments, many rounds.

Each round starts `ceir serve` (one or two worker processes) and one to three
`ceir import` processes on the same
store (new feed files, and files whose import an earlier round killed), waits a random
time, then SIGKILLs every one of them that is still running (the server's whole process
group). After each kill:

- ``ceir verify`` must pass: the store opens cleanly, every table decodes, the audit log
  is 1..N without gaps;
- every write acknowledged before the kill is present: each import that exited 0, with
  the records its file asked for, and each lost/stolen report the server answered OK
  (a thread sends them over gRPC throughout the round);
- the restarted server answers those devices (checked by CheckIMEIBatch at the start of
  the next round).

At the end every killed import is run to completion and the audit log must hold exactly
one entry per accepted device: a resumed import neither loses nor repeats rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ceir.imei import check_digit, parse
from ceir.record import Reason
from ceir.store import open_store
from ceir.store.audit import entries
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc

CLI = [sys.executable, "-c", "from ceir.cli import run; run()"]
REPORT_TAC = "86999999"  # lost/stolen reports over gRPC: apart from the feed files' devices


@dataclass
class Feed:
    path: Path
    imeis: list[str]
    acknowledged: bool = False
    attempts: int = 0


@dataclass
class Reports:
    """Lost/stolen reports sent over gRPC: the ones the server acknowledged."""

    next_serial: int = 0
    acknowledged: list[str] = field(default_factory=list)


@dataclass
class Result:
    rounds: int = 0
    kills: int = 0
    killed_imports: int = 0
    acknowledged_imports: int = 0
    acknowledged_rpcs: int = 0
    checked_writes: int = 0
    losses: int = 0
    problems: list[str] = field(default_factory=list)


def ceir(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ceir {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result


def make_feeds(workdir: Path, files: int, rows: int) -> list[Feed]:
    feeds = []
    for i in range(files):
        path = workdir / f"manufacturer-{i:03}.csv"
        start = 10_000_000 + i * rows
        ceir("gen", "manufacturer", str(path), "--rows", str(rows), "--start", str(start),
             "--seed", str(i), "-q")  # fmt: skip
        with path.open() as f:
            imeis = [row["imei"] for row in csv.DictReader(f)]
        feeds.append(Feed(path, imeis))
    return feeds


def start_server(db: Path, workers: int) -> tuple[subprocess.Popen[str], int]:
    """`ceir serve` (its supervisor and workers in their own process group)."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--db", str(db), "--port", "0", "--no-demo", "--grace", "1",
         "--workers", str(workers), "--write-rate", "0", "--web", "off", "--sbi", "off"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    raise RuntimeError(f"ceir serve did not start (exit {proc.wait()})")


def report_writer(port: int, reports: Reports, stop: threading.Event) -> None:
    """Send ReportLostStolen for fresh IMEIs until stopped (or the server dies)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        while not stop.is_set():
            body = f"{REPORT_TAC}{reports.next_serial:06d}"
            imei = body + str(check_digit(body))
            reports.next_serial += 1
            request = registry_pb2.LostStolenRequest(imei=imei, report_ref=f"POL-{imei}")
            try:
                stub.ReportLostStolen(request, timeout=5)
            except grpc.RpcError:
                return  # killed mid-call: not acknowledged
            reports.acknowledged.append(imei)


def check_store(db: Path, feeds: list[Feed], result: Result, reports: Reports) -> None:
    """verify passes, and every acknowledged device is stored as its feed asked."""
    verified = ceir("verify", "--db", str(db), check=False)
    if verified.returncode != 0:
        result.problems.append(f"round {result.rounds}: verify failed: {verified.stderr}")
    with open_store(db, readonly=True) as store:
        for imei in reports.acknowledged:
            result.checked_writes += 1
            record = store.get(parse(imei).key)
            if record is None or not record.lost_stolen:
                result.losses += 1
                result.problems.append(f"round {result.rounds}: acknowledged report {imei} lost")
        for feed in feeds:
            if not feed.acknowledged:
                continue
            for imei in feed.imeis:
                result.checked_writes += 1
                record = store.get(parse(imei).key)
                if record is None or record.reason is not Reason.REGISTERED:
                    result.losses += 1
                    result.problems.append(
                        f"round {result.rounds}: {imei} of {feed.path.name} lost"
                    )


def check_served(port: int, feeds: list[Feed], result: Result, rng: random.Random) -> None:
    """The restarted server answers a sample of acknowledged devices WHITELISTED."""
    done = [imei for f in feeds if f.acknowledged for imei in f.imeis]
    sample = rng.sample(done, min(len(done), 2000))
    if not sample:
        return
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        batch = eir_pb2.CheckIMEIBatchRequest(
            requests=[eir_pb2.CheckIMEIRequest(imei=i) for i in sample]
        )
        answers = stub.CheckIMEIBatch(batch, timeout=30).responses
    wrong = [i for i, a in zip(sample, answers, strict=True)
             if a.status != common_pb2.EQUIPMENT_STATUS_WHITELISTED]  # fmt: skip
    if wrong:
        result.losses += len(wrong)
        result.problems.append(f"round {result.rounds}: server does not whitelist {wrong[:3]}")


def one_round(db: Path, feeds: list[Feed], result: Result, rng: random.Random,
              max_wait: float, reports: Reports) -> None:  # fmt: skip
    server, port = start_server(db, rng.choice((1, 2)))
    check_served(port, feeds, result, rng)
    stop = threading.Event()
    before = len(reports.acknowledged)
    writer = threading.Thread(target=report_writer, args=(port, reports, stop))
    writer.start()
    pending = [f for f in feeds if not f.acknowledged]
    chosen = rng.sample(pending, min(len(pending), rng.randint(1, 3)))
    imports = []
    for feed in chosen:
        feed.attempts += 1
        proc = subprocess.Popen(
            [*CLI, "import", "manufacturer", str(feed.path), "--db", str(db), "-q",
             "--rejects", str(feed.path.with_suffix(".rejects.csv")),
             # a local import, not the two-person rule under test: 40 x 20,000 rows would
             # pass the rolling 24-hour limit and be staged, and nothing would be written
             "--stage-above", "0",
             # small batches: kills land between commits, so resuming is exercised
             "--batch-rows", str(rng.choice((500, 2000, 50_000)))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        imports.append((feed, proc))
    time.sleep(rng.uniform(0.05, max_wait))
    for feed, proc in imports:
        if proc.poll() is None:
            proc.kill()
            result.killed_imports += 1
        elif proc.returncode == 0:
            feed.acknowledged = True
            result.acknowledged_imports += 1
        else:
            result.problems.append(f"import of {feed.path.name} failed: {proc.stderr.read()}")
        proc.communicate()
    os.killpg(server.pid, signal.SIGKILL)  # the supervisor and every worker at once
    server.communicate()
    stop.set()
    writer.join()
    result.acknowledged_rpcs += len(reports.acknowledged) - before
    result.kills += 1 + sum(1 for _, p in imports if p.returncode == -9)
    check_store(db, feeds, result, reports)


def finish(db: Path, feeds: list[Feed], result: Result, reports: Reports) -> None:
    """Complete every import; the audit log must hold exactly one entry per device."""
    for feed in feeds:
        if not feed.acknowledged:
            ceir("import", "manufacturer", str(feed.path), "--db", str(db), "-q",
                 "--rejects", str(feed.path.with_suffix(".rejects.csv")),
                 "--stage-above", "0")  # fmt: skip
            feed.acknowledged = True
    check_store(db, feeds, result, reports)
    with open_store(db, readonly=True) as store:
        keys = [
            e.key for e in entries(store) if e.new is not None and e.new.reason == Reason.REGISTERED
        ]
    expected = sum(len(f.imeis) for f in feeds)
    if len(keys) != expected or len(set(keys)) != expected:
        result.problems.append(
            f"audit log has {len(keys)} registrations ({len(set(keys))} distinct) for "
            f"{expected} devices: rows lost or repeated by resumed imports"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--files", type=int, default=0, help="feed files (default: 2 per round)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per feed file")
    parser.add_argument("--max-wait", type=float, default=2.0, help="most seconds before a kill")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="ceir-crash-"))
    db = workdir / "db"
    tacs = workdir / "tacs.csv"
    ceir("gen", "tac", str(tacs), "--rows", "500", "-q")
    ceir("import", "tac", str(tacs), "--db", str(db), "--create", "-q")
    feeds = make_feeds(workdir, args.files or 2 * args.rounds, args.rows)
    result = Result()
    reports = Reports()
    print(
        f"crash test: {args.rounds} rounds, {len(feeds)} files of {args.rows:,} rows, in {workdir}"
    )
    for _ in range(args.rounds):
        result.rounds += 1
        one_round(db, feeds, result, rng, args.max_wait, reports)
        print(f"  round {result.rounds:>3}: acknowledged imports {result.acknowledged_imports:>3}, "
              f"acknowledged RPC reports {result.acknowledged_rpcs:>5}, "
              f"killed imports {result.killed_imports:>3}, writes checked "
              f"{result.checked_writes:>10,}, losses {result.losses}", flush=True)  # fmt: skip
    distinct = sum(len(f.imeis) for f in feeds if f.acknowledged) + len(reports.acknowledged)
    finish(db, feeds, result, reports)
    for problem in result.problems[:20]:
        print(f"PROBLEM: {problem}")
    print(f"rounds {result.rounds}, processes SIGKILLed {result.kills} (imports "
          f"{result.killed_imports}), acknowledged imports {result.acknowledged_imports}, "
          f"acknowledged RPC writes {result.acknowledged_rpcs:,}, distinct acknowledged "
          f"writes {distinct:,} (checked {result.checked_writes:,} times over all rounds), "
          f"losses {result.losses}, problems {len(result.problems)}")  # fmt: skip
    if result.problems or result.losses:
        print(f"store and feeds kept for a post-mortem in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
