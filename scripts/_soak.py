"""Soak: serve under steady mixed load for a while; report errors and the server's memory.

Starts ``ceir serve`` (default: one worker per core) on a fresh store (demo data), then
runs a bounded closed-loop load on loopback: unary CheckIMEI, batches, streams,
CheckPacked and DeviceCheck, with connection churn (a new channel every few seconds)
and every answer checked against the demo data. Every ``--interval`` seconds it samples
the RSS of the server's processes (supervisor and workers) from /proc. At the end it
compares the RSS after warm-up with the RSS at the end: memory must stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ceir.imei import parse
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Status
from ceir.store import demo, open_store
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, eir_pb2, eir_pb2_grpc


@dataclass
class Tally:
    calls: int = 0
    imeis: int = 0
    errors: int = 0
    wrong: int = 0
    throttled: int = 0
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_kib(pid: int) -> int:
    """RSS of *pid* and all its descendants (the supervisor and its workers), KiB."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        if p != pid:
            total += sum(rss_kib(c) for c in _children(p))
    return total


def expected_answers(db: Path) -> dict[str, tuple[int, int]]:
    """What the server must answer for each demo IMEI (status, reason), from the store."""
    now = time.time()
    with open_store(db, readonly=True) as store:
        checker = Checker(store, Policy(Status.BLACKLISTED), clock=lambda: now)
        imeis = [d.imei for d in demo.devices(int(now))]
        got = checker.check_many([eir_pb2.CheckIMEIRequest(imei=i) for i in imeis])
    return {i: (r.status, r.reason) for i, r in zip(imeis, got.responses, strict=True)}


async def one_call(kind: str, picks: list[str], e: Any, d: Any) -> list[tuple[str, int, int]]:
    """Make one call of *kind* for *picks*; (imei, status, reason) for each answer."""
    requests = [eir_pb2.CheckIMEIRequest(imei=i) for i in picks]
    if kind == "unary":
        r = await e.CheckIMEI(requests[0], timeout=10)
        return [(picks[0], r.status, r.reason)]
    if kind == "batch":
        batch = eir_pb2.CheckIMEIBatchRequest(requests=requests)
        r = await e.CheckIMEIBatch(batch, timeout=10)
        return [(i, a.status, a.reason) for i, a in zip(picks, r.responses, strict=True)]
    if kind == "stream":
        parts = [picks[k::4] for k in range(4)]
        msgs = [eir_pb2.CheckIMEIBatchRequest(requests=requests[k::4]) for k in range(4)]
        answers = []
        call = e.CheckIMEIStream(iter(msgs), timeout=10)
        k = 0
        async for r in call:
            answers += [(i, a.status, a.reason) for i, a in zip(parts[k], r.responses, strict=True)]
            k += 1
        return answers
    if kind == "packed":
        keys = b"".join(parse(i).key for i in picks)
        r = await e.CheckPacked(eir_pb2.CheckPackedRequest(keys=keys), timeout=10)
        return [(i, b & 3, b >> 2) for i, b in zip(picks, r.results, strict=True)]
    r = await d.LookupDevice(device_check_pb2.LookupDeviceRequest(imei=picks[0]), timeout=10)
    if r.imei != picks[0]:
        raise AssertionError(f"LookupDevice answered {r.imei} for {picks[0]}")
    return []


async def worker(address: str, expected: dict[str, tuple[int, int]], tally: Tally,
                 stop: asyncio.Event, rng: random.Random) -> None:  # fmt: skip
    imeis = list(expected)
    kinds = ("unary", "batch", "stream", "packed", "consumer")
    while not stop.is_set():
        async with grpc.aio.insecure_channel(address) as channel:
            eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
            dc = device_check_pb2_grpc.DeviceCheckStub(channel)
            churn_at = time.monotonic() + rng.uniform(2, 6)  # then a new connection
            while not stop.is_set() and time.monotonic() < churn_at:
                kind = rng.choice(kinds)
                picks = [rng.choice(imeis) for _ in range(rng.randrange(1, 200))]
                try:
                    answers = await one_call(kind, picks, eir, dc)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and kind == "consumer":
                        tally.throttled += 1
                        await asyncio.sleep(0.05)
                    else:
                        tally.error(f"{kind}:{exc.code().name}")
                    continue
                except AssertionError:
                    tally.wrong += 1
                    continue
                tally.calls += 1
                tally.imeis += max(1, len(answers))
                tally.wrong += sum((s, r) != expected[i] for i, s, r in answers)


async def sampler(pid: int, tally: Tally, stop: asyncio.Event, interval: float,
                  started: float) -> None:  # fmt: skip
    while True:
        tally.samples.append((time.monotonic() - started, rss_kib(pid), tally.calls, tally.errors))
        t, kib, calls, errors = tally.samples[-1]
        print(f"  {t:>7.0f} s  RSS {kib / 1024:>7.1f} MiB  calls {calls:>9,}  errors {errors}",
              flush=True)  # fmt: skip
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue
        return


async def run(address: str, pid: int, args: argparse.Namespace, db: Path) -> Tally:
    tally = Tally()
    stop = asyncio.Event()
    expected = expected_answers(db)
    started = time.monotonic()
    tasks = [asyncio.create_task(worker(address, expected, tally, stop, random.Random(i)))
             for i in range(args.concurrency)]  # fmt: skip
    sample = asyncio.create_task(sampler(pid, tally, stop, args.interval, started))
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.gather(*tasks, sample)
    tally.samples.append((time.monotonic() - started, rss_kib(pid), tally.calls, tally.errors))
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--interval", type=float, default=0.0, help="RSS sample period (s)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=0.0, help="s before the memory baseline")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--workers", type=int, default=0, help="ceir serve --workers")
    args = parser.parse_args()
    args.interval = args.interval or max(1.0, args.duration / 20)
    args.warmup = args.warmup or min(60.0, args.duration * 0.2)
    workdir = Path(tempfile.mkdtemp(prefix="ceir-soak-"))
    db = workdir / "db"
    server = subprocess.Popen(
        [sys.executable, "-c", "from ceir.cli import run; run()", "serve", "--db", str(db),
         "--port", "0", "--consumer-rate", "200", "--consumer-burst", "400", "--grace", "5",
         "--workers", str(args.workers), "--web", "off", "--sbi", "off"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stderr is not None
    port = 0
    for line in server.stderr:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    if not port:
        print("ceir serve did not start", file=sys.stderr)
        return 2
    print(f"soak: {args.duration:g} s, {args.concurrency} clients, server pid {server.pid} "
          f"on 127.0.0.1:{port}")  # fmt: skip
    try:
        tally = asyncio.run(run(f"127.0.0.1:{port}", server.pid, args, db))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    base = next((kib for t, kib, _, _ in tally.samples if t >= args.warmup), tally.samples[0][1])
    end = tally.samples[-1][1]
    growth = (end - base) / base if base else 0.0
    flat = growth <= args.max_growth
    print(f"calls {tally.calls:,} ({tally.calls / args.duration:,.0f}/s), IMEIs {tally.imeis:,}, "
          f"errors {tally.errors} {tally.error_kinds or ''}, wrong answers {tally.wrong}, "
          f"throttled {tally.throttled}")  # fmt: skip
    print(f"server RSS: start {tally.samples[0][1] / 1024:.1f} MiB, after warm-up "
          f"{base / 1024:.1f} MiB, end {end / 1024:.1f} MiB ({growth:+.1%}; "
          f"{'flat' if flat else 'GROWING'}); server exit {code}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({
            "duration": args.duration, "calls": tally.calls, "imeis": tally.imeis,
            "errors": tally.errors, "wrong": tally.wrong, "throttled": tally.throttled,
            "rss_kib": [(round(t, 1), kib) for t, kib, _, _ in tally.samples],
            "rss_growth": growth, "server_exit": code,
        }, indent=1))  # fmt: skip
    if tally.errors == 0 and tally.wrong == 0 and flat and code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"store kept for a post-mortem in {workdir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
