"""The benchmark: one command, one run, one table (``./scripts/bench``).

Extends :mod:`loadtest.bench_core` (store generation, in-process floor rows) to every
way of asking ceir, and to what a user would pick instead, on the same keys:

- in-process: bare ``txn.get`` (the floor), ``Store.get_many`` (the store read path),
  ``Checker.check_batch`` (the bulk path the server runs), ``check_many``, ``check_packed``;
- an empty grpcio unary handler (what one call costs with nothing to do);
- ceir over gRPC with 1 and N worker processes: CheckIMEI unary, CheckIMEIBatch of 1,000,
  CheckIMEIStream with 1 and 1,000 IMEIs per message, the coalescing client, CheckPacked;
- the same at 1M devices (for the 10M-vs-1M target);
- Redis (Debian ``redis-server``, installed with apt-get when missing, started and stopped
  here on loopback): ``MGET`` of 1,000 and one ``GET`` per key, from redis-py;
- SQLite ``WITHOUT ROWID``: point lookups in one read transaction, ``IN`` batches of 1,000;
- N5g-eir over HTTP/2 (:mod:`loadtest.bench_n5g`): the HTTP/2 server candidates, then
  h2load against the face with 1 and N workers and unary gRPC beside it (``--no-n5g``).

Each row: IMEIs/s, server CPU µs per IMEI (the server processes' CPU; for in-process rows
this process's CPU), per-call latency p50/p99, and the ratio to the floor. Then the
issue's targets, each met or not. Stores are built once under --dir and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc

from ceir.client import Client
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.server.supervisor import default_workers
from ceir.store import LMDB_VERSION, open_store
from ceir.v1 import eir_pb2
from loadtest import bench_core
from loadtest.alternatives import build_sqlite, load_redis, redis_rows, redis_server, sqlite_rows
from loadtest.bench_core import WRONG, Workload, build_store
from loadtest.measure import Row, measure, pct
from loadtest.serverproc import ServerProcess, cpu_seconds

SERVICE = "/ceir.v1.EquipmentIdentityRegister/"


# -- in-process rows -------------------------------------------------------------------


def row_check_batch(checker: Checker, work: Workload) -> Row:
    imeis = work.imeis
    batches = [
        eir_pb2.CheckIMEIBatchRequest(
            requests=[eir_pb2.CheckIMEIRequest(imei=i) for i in imeis[s : s + work.batch]]
        ).SerializeToString()
        for s in range(0, len(imeis), work.batch)
    ]
    first = eir_pb2.CheckIMEIBatchRequest.FromString(batches[0]).requests
    if checker.check_batch(first) != checker.check_many(first).SerializeToString():
        raise AssertionError("check_batch and check_many disagree")

    def run() -> None:
        parse = eir_pb2.CheckIMEIBatchRequest.FromString
        for data in batches:
            checker.check_batch(parse(data).requests)

    name = f"Checker.check_batch {work.batch:,} (parse+answer)"
    return bench_core._rate(name, len(imeis), run)


def inprocess_rows(db: Path, work: Workload, group: str, *, full: bool) -> list[Row]:
    with open_store(db, readonly=True) as store:
        checker = Checker(store, Policy())
        rows = [bench_core.row_floor(store, work), bench_core.row_store(store, work)]
        rows.append(row_check_batch(checker, work))
        if full:
            rows += [
                bench_core.row_check_many(checker, work),
                bench_core.row_check_packed(checker, work),
            ]
    return [dataclasses.replace(r, group=group) for r in rows]


# -- gRPC rows ---------------------------------------------------------------------------


class Requests:
    """Prebuilt, serialized requests over the workload's IMEIs (all registered)."""

    def __init__(self, work: Workload) -> None:
        imeis = work.imeis
        self.singles = [eir_pb2.CheckIMEIRequest(imei=i).SerializeToString() for i in imeis]
        self.one = [
            eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei=i)]
            ).SerializeToString()
            for i in imeis[:50_000]
        ]
        self.batches = [
            eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei=i) for i in imeis[s : s + work.batch]]
            ).SerializeToString()
            for s in range(0, len(imeis), work.batch)
        ]
        self.packed = [
            eir_pb2.CheckPackedRequest(keys=b"".join(chunk)).SerializeToString()
            for chunk in work.chunks()
        ]
        self.imeis = imeis
        self.batch = work.batch


def _channels(address: str, count: int) -> list[Any]:
    # One connection per channel; SO_REUSEPORT spreads connections over the workers.
    return [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]


async def ceir_rows(
    address: str,
    cpu: Callable[[], float],
    req: Requests,
    workers: int,
    seconds: float,
    group: str,
    *,
    only_batch: bool = False,
) -> list[Row]:
    channels = _channels(address, max(2, 4 * workers))
    n = len(channels)
    raw = {"request_serializer": None, "response_deserializer": None}
    unary = [ch.unary_unary(SERVICE + "CheckIMEI", **raw) for ch in channels]
    batch = [ch.unary_unary(SERVICE + "CheckIMEIBatch", **raw) for ch in channels]
    packed = [ch.unary_unary(SERVICE + "CheckPacked", **raw) for ch in channels]
    stream = [ch.stream_stream(SERVICE + "CheckIMEIStream", **raw) for ch in channels]
    rows = []
    try:

        async def one(i: int) -> int:
            data = await unary[i % n](req.singles[i % len(req.singles)])
            if eir_pb2.CheckIMEIResponse.FromString(data).reason in WRONG:
                raise AssertionError("wrong answer")
            return 1

        async def many(i: int) -> int:
            data = await batch[i % n](req.batches[i % len(req.batches)])
            answers = eir_pb2.CheckIMEIBatchResponse.FromString(data).responses
            if len(answers) != req.batch or answers[-1].reason in WRONG:
                raise AssertionError("wrong answer in a batch")
            return req.batch

        name = f"CheckIMEIBatch {req.batch:,}/call, {2 * n} in flight"
        if only_batch:
            return [await measure(name, cpu, many, 2 * n, seconds, group)]
        rows.append(await measure("CheckIMEI unary, 64 in flight", cpu, one, 64, seconds, group))
        rows.append(await measure(name, cpu, many, 2 * n, seconds, group))
        for per_message, messages in ((1, req.one), (req.batch, req.batches)):
            calls = [stream[i % n]() for i in range(2 * n if per_message > 1 else 8 * n)]

            async def streamed(
                i: int,
                calls: list[Any] = calls,
                messages: list[bytes] = messages,
                per: int = per_message,
            ) -> int:
                call = calls[i % len(calls)]
                await call.write(messages[i % len(messages)])
                data = await call.read()
                answers = eir_pb2.CheckIMEIBatchResponse.FromString(data).responses
                if len(answers) != per or answers[-1].reason in WRONG:
                    raise AssertionError("wrong answer on a stream")
                return per

            name = f"CheckIMEIStream {per_message:,}/message, {len(calls)} streams"
            rows.append(await measure(name, cpu, streamed, len(calls), seconds, group))
            for call in calls:
                call.cancel()
        rows.append(await _coalesced(address, cpu, req, n, seconds, group))

        async def compact(i: int) -> int:
            data = await packed[i % n](req.packed[i % len(req.packed)])
            results = eir_pb2.CheckPackedResponse.FromString(data).results
            if len(results) != req.batch:
                raise AssertionError("wrong packed answer")
            return req.batch

        name = f"CheckPacked {req.batch:,}/call, {2 * n} in flight"
        rows.append(await measure(name, cpu, compact, 2 * n, seconds, group))
    finally:
        for ch in channels:
            await ch.close()
    return rows


async def _coalesced(
    address: str, cpu: Callable[[], float], req: Requests, clients: int, seconds: float, group: str
) -> Row:
    """ceir.client: per-IMEI submits, coalesced on streams; 2,000 IMEIs outstanding per
    client, each answer submitting the next (closed loop)."""
    nodes = [Client(address, max_batch=req.batch, max_delay=0.001) for _ in range(clients)]
    for node in nodes:
        await node.connect()
    loop = asyncio.get_running_loop()
    imeis = req.imeis
    state = {"done": 0, "stop": 0.0, "wrong": 0}
    latencies: list[float] = []
    clock = time.perf_counter

    def ask(node: Client, i: int) -> None:
        started = clock()

        def done(response: Any, error: Any) -> None:
            if error is not None or response.reason in WRONG:
                state["wrong"] += 1
            state["done"] += 1
            latencies.append(clock() - started)
            if loop.time() < state["stop"]:
                ask(node, i + 7919)

        node.submit(done, imeis[i % len(imeis)])

    async def run(duration: float) -> tuple[int, float]:
        state["done"] = 0
        latencies.clear()
        state["stop"] = loop.time() + duration
        started = clock()
        for k, node in enumerate(nodes):
            for j in range(2000):
                ask(node, k * 100_003 + j)
        while loop.time() < state["stop"] or any(
            node._inflight or node._outbox or node._pending_callbacks for node in nodes
        ):
            await asyncio.sleep(0.01)
        return state["done"], clock() - started

    try:
        await run(min(1.0, seconds / 3))
        before = cpu()
        done, elapsed = await run(seconds)
        used = cpu() - before
    finally:
        for node in nodes:
            await node.close()
    if state["wrong"]:
        raise AssertionError(f"{state['wrong']} wrong or failed answers from the client")
    return Row(
        f"ceir.client coalesced, {clients} x 2,000 outstanding",
        done / elapsed,
        used / done * 1e6,
        pct(latencies, 0.5),
        pct(latencies, 0.99),
        group,
    )


EMPTY_SERVER = """
import asyncio, sys, grpc, uvloop
async def main():
    async def nothing(request, context):
        return b""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Empty", {"Call": grpc.unary_unary_rpc_method_handler(nothing)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await server.wait_for_termination()
uvloop.run(main())
"""


async def empty_row(seconds: float, group: str) -> Row:
    """Calls/s of a grpcio aio handler that does nothing (same client as the unary row)."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed program
        [sys.executable, "-c", EMPTY_SERVER], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        address = process.stderr.readline().split()[-1]
        channels = _channels(address, 4)
        calls = [ch.unary_unary("/bench.Empty/Call") for ch in channels]
        payload = eir_pb2.CheckIMEIRequest(imei="352099001761481").SerializeToString()

        async def call(i: int) -> int:
            await calls[i % 4](payload)
            return 1

        row = await measure(
            "empty grpcio unary handler, 64 in flight",
            lambda: cpu_seconds(process.pid),
            call,
            64,
            seconds,
            group,
        )
        for ch in channels:
            await ch.close()
        return row
    finally:
        process.terminate()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def grpc_rows(
    db: Path, work: Workload, workers: int, seconds: float, group: str, *, only_batch: bool = False
) -> list[Row]:
    req = Requests(work)
    with ServerProcess(db, workers=workers) as server:
        rows = ceir_rows(
            server.address, server.cpu_seconds, req, workers, seconds, group, only_batch=only_batch
        )
        return _run_async(rows)


def _run_async(coro: Awaitable[Any]) -> Any:
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


# -- the report ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row], floor: Row) -> None:
    print(
        f"\n{'row':<52} {'IMEIs/s':>11} {'CPU µs/IMEI':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'vs floor':>9}"
    )
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            print(f"-- {group}")
        print(
            f"{row.name:<52} {row.imeis_per_s:>11,.0f} {_fmt(row.cpu_us, '.2f'):>12} "
            f"{_fmt(row.p50_ms, '.2f'):>8} {_fmt(row.p99_ms, '.2f'):>8} "
            f"{row.imeis_per_s / floor.imeis_per_s:>8.0%}"
        )


def _find(rows: list[Row], group: str, start: str) -> Row:
    return next(r for r in rows if r.group == group and r.name.startswith(start))


def targets(rows: list[Row], groups: dict[str, str]) -> list[tuple[str, bool, str]]:
    """The issue's targets measurable here: (target, met, figures)."""
    big, one, many, small = groups["10m"], groups["w1"], groups["wn"], groups["1m"]
    store = _find(rows, big, "Store.get_many")
    out = []
    for name in ("CheckIMEIBatch", "CheckIMEIStream 1,000"):
        row = _find(rows, one, name)
        ratio = (row.cpu_us or 0) / (store.cpu_us or 1)
        out.append(
            (
                f"{name} server CPU/IMEI <= 2x store read path",
                ratio <= 2,
                f"{row.cpu_us:.2f} µs vs {store.cpu_us:.2f} µs = {ratio:.2f}x",
            )
        )
    best = max(
        (r for r in rows if r.group == many and not r.name.startswith("CheckIMEI unary")),
        key=lambda r: r.imeis_per_s,
    )
    mget = next(r for r in rows if r.name.startswith("Redis MGET"))
    ratio = best.imeis_per_s / mget.imeis_per_s
    out.append(
        (
            "whole box IMEIs/s >= 2x Redis MGET-1,000",
            ratio >= 2,
            f"{best.name}: {best.imeis_per_s:,.0f}/s vs {mget.imeis_per_s:,.0f}/s = {ratio:.2f}x",
        )
    )
    empty = next(r for r in rows if r.name.startswith("empty grpcio"))
    unary = _find(rows, one, "CheckIMEI unary")
    ratio = empty.imeis_per_s / unary.imeis_per_s
    out.append(
        (
            "unary within 1.2x of an empty grpcio handler (1 process each)",
            ratio <= 1.2,
            f"{unary.imeis_per_s:,.0f} vs {empty.imeis_per_s:,.0f} calls/s = {ratio:.2f}x",
        )
    )
    for label, a, b in (
        (
            "gRPC batch, N workers",
            _find(rows, many, "CheckIMEIBatch"),
            _find(rows, small, "CheckIMEIBatch"),
        ),
        (
            "in-process check_batch",
            _find(rows, big, "Checker.check_batch"),
            _find(rows, small, "Checker.check_batch"),
        ),
    ):
        ratio = a.imeis_per_s / b.imeis_per_s
        out.append(
            (
                f"10M >= 0.8x 1M ({label})",
                ratio >= 0.8,
                f"{a.imeis_per_s:,.0f} vs {b.imeis_per_s:,.0f}/s = {ratio:.2f}",
            )
        )
    return out


def warm(path: Path) -> None:
    """Read a file once so every row starts from the page cache, not from the disk."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="The ceir benchmark: in-process floor, every gRPC form with 1 and N workers, "
        "Redis and SQLite on the same keys; one table and the targets.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ceir-lookup-bench",
        help="where the stores are built once and reused (not in the repository)",
    )
    parser.add_argument("--entries", type=int, default=10_000_000, help="devices, big store")
    parser.add_argument("--small", type=int, default=1_000_000, help="devices, small store")
    parser.add_argument("--lookups", type=int, default=300_000, help="random keys per row")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each timed row")
    parser.add_argument("--workers", type=int, default=0, help="N (0: one per core)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis rows")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite rows")
    parser.add_argument(
        "--no-n5g", action="store_true", help="skip the N5g-eir rows (loadtest.bench_n5g)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser.parse_args(argv)


def _n5g_rows(db: Path, work: Workload, workers: int, seconds: float) -> list[Row]:
    """N5g-eir over HTTP/2 on *db*, by h2load, with unary gRPC beside it (printed here);
    a third as many requests per h2load row as --lookups."""
    import shutil

    from loadtest import bench_n5g

    if shutil.which("h2load") is None:
        print("\nN5g-eir rows skipped: h2load is not installed (apt-get install nghttp2-client)")
        return []
    requests = max(2_000, len(work.keys) // 3)
    rows = bench_n5g.all_rows(db, work.keys, workers, requests, seconds)
    bench_n5g.print_rows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workers = args.workers or default_workers()
    args.dir.mkdir(parents=True, exist_ok=True)
    big_db, small_db = args.dir / f"store-{args.entries}", args.dir / f"store-{args.small}"
    started = time.perf_counter()
    big_keys = build_store(big_db, args.entries)
    print(f"store {big_db}: {args.entries:,} devices ({time.perf_counter() - started:.0f} s)")
    small_keys = build_store(small_db, args.small)
    warm(big_db / "data.mdb")
    warm(small_db / "data.mdb")
    import random

    rng = random.Random(bench_core.SEED + 1)
    big = Workload([rng.choice(big_keys) for _ in range(args.lookups)], 1000)
    small = Workload([rng.choice(small_keys) for _ in range(args.lookups)], 1000)
    del big_keys, small_keys
    groups = {
        "10m": f"in-process, {args.entries:,} devices",
        "empty": "gRPC baseline",
        "w1": "ceir gRPC, 1 worker process",
        "wn": f"ceir gRPC, {workers} worker processes",
        "1m": f"{args.small:,} devices",
        "alt": f"what a user would pick instead, {args.entries:,} keys",
    }
    rows = inprocess_rows(big_db, big, groups["10m"], full=True)
    floor = rows[0]
    rows.append(_run_async(empty_row(args.seconds, groups["empty"])))
    rows += grpc_rows(big_db, big, 1, args.seconds, groups["w1"])
    rows += grpc_rows(big_db, big, workers, args.seconds, groups["wn"])
    rows += inprocess_rows(small_db, small, groups["1m"], full=False)[:3]
    rows += grpc_rows(small_db, small, workers, args.seconds, groups["1m"], only_batch=True)
    if not args.no_redis:
        with redis_server(args.dir / "redis") as (port, pid):
            t = time.perf_counter()
            load_redis(port, big_db)
            print(f"redis: loaded {args.entries:,} keys in {time.perf_counter() - t:.0f} s")
            rows += redis_rows(port, pid, big, args.seconds, groups["alt"])
    if not args.no_sqlite:
        path = args.dir / f"sqlite-{args.entries}.db"
        t = time.perf_counter()
        build_sqlite(path, big_db)
        warm(path)
        print(f"sqlite: {path} ready in {time.perf_counter() - t:.0f} s")
        rows += sqlite_rows(path, big, groups["alt"])
    print(
        f"\npython {sys.version.split()[0]}, grpcio {grpc.__version__}, lmdb {LMDB_VERSION}, "
        f"sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {workers} workers; "
        f"{args.lookups:,} random registered keys per row; client in this one process"
    )
    print_table(rows, floor)
    results = []
    if not (args.no_redis or args.no_sqlite):
        print("\ntargets:")
        for target, met, figures in targets(rows, groups):
            print(f"  [{'MET' if met else 'NOT MET'}] {target}: {figures}")
            results.append({"target": target, "met": met, "figures": figures})
    if not args.no_n5g:
        rows += _n5g_rows(small_db, small, workers, args.seconds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rows": [asdict(r) for r in rows], "targets": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
