"""bench-scale's lookup rows: bare ``txn.get`` in this process, CheckIMEIBatch and
CheckPacked against ``ceir serve`` in a child process, and the same-run comparison of
stores of different sizes.

The gRPC client runs in this process, the server in another (one worker, its CPU read
from /proc), so the server's CPU per IMEI is the box's cost of an answer. Before a
timed row every batch of the workload is asked once: the server's map then holds every
page the row reads, as in a server that has run for a while (a fresh process would
otherwise count its first page faults at large N only). Answers are checked: every key
exists, so NOT_REGISTERED or INVALID_IMEI means a wrong answer.

:func:`compare` measures several stores in turns (A, B, A, B, ...) with the same client
and the same workload size, and keeps each store's best turn: the ratio of the rates
is then not the difference between two moments of a shared machine.

Run as ``python -m loadtest.scale_lookups --sizes 1000000,20000000,100000000`` it builds
hot-table-only stores of those sizes (the generator's IMEIs, ``devices`` written in key
order and repacked, as ``ceir import`` leaves it: ~30 B/device; no registry) in a few
minutes each, and compares them: how lookups alone scale with N, without the imports.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np

from ceir.feeds import Kind
from ceir.feeds.gen import POOL, device_imei, tac_entry
from ceir.record import Reason, Record, Source, Status
from ceir.store import open_store
from ceir.store.compact import repack_devices
from ceir.v1 import eir_pb2_grpc
from loadtest import bench_core
from loadtest.measure import Row, closed_loop, measure
from loadtest.serverproc import ServerProcess

FORMS = ("floor", "batch", "packed")
_OFF = ("--web", "off", "--s13", "off", "--sbi", "off")  # the gRPC face only
_NOT_FOUND = (Reason.NOT_REGISTERED << 2) | Status.BLACKLISTED
Rates = dict[str, dict[str, float]]
"""form -> {"imeis_per_s": ..., "cpu_us": ...}."""


def workload(indexes: range, lookups: int, batch: int) -> bench_core.Workload:
    """*lookups* random existing keys among the serial *indexes* (the generator's IMEIs)."""
    rng = random.Random(len(indexes))
    picks = [rng.choice(indexes) for _ in range(lookups)]
    keys = [int(device_imei(i)[:14]).to_bytes(8, "big") for i in picks]
    return bench_core.Workload(keys, batch)


async def _grpc(
    server: ServerProcess, work: bench_core.Workload, concurrency: int, seconds: float
) -> list[Row]:
    _, batches, packed = work.requests()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)

        async def batch(i: int) -> int:
            r = await stub.CheckIMEIBatch(batches[i % len(batches)])
            if r.responses[-1].reason in bench_core.WRONG:
                raise AssertionError("wrong answer in a batch")
            return len(r.responses)

        async def compact(i: int) -> int:
            results = (await stub.CheckPacked(packed[i % len(packed)])).results
            if _NOT_FOUND in results:
                raise AssertionError("an existing key answered NOT_REGISTERED")
            return len(results)

        rows = []
        calls: tuple[tuple[str, Callable[[int], Awaitable[int]], int], ...] = (
            ("batch", batch, len(batches)),
            ("packed", compact, len(packed)),
        )
        for name, call, n in calls:
            for i in range(n):  # every batch once: the pages the row reads are mapped
                await call(i)
            await closed_loop(call, concurrency, 0.2)
            rows.append(await measure(name, server.cpu_seconds, call, concurrency, seconds))
        return rows


def rates(db: Path, work: bench_core.Workload, concurrency: int, seconds: float) -> Rates:
    """The three rows on the store at *db*: floor in this process, then the server's."""
    with open_store(db, readonly=True) as store:
        rows = [bench_core.row_floor(store, work)]
    with ServerProcess(db, workers=1, extra=_OFF) as server:
        rows += asyncio.run(_grpc(server, work, concurrency, seconds))
    return {
        name: {"imeis_per_s": r.imeis_per_s, "cpu_us": r.cpu_us or float("nan")}
        for name, r in zip(FORMS, rows, strict=True)
    }


def compare(
    stores: dict[str, tuple[Path, bench_core.Workload]],
    rounds: int,
    concurrency: int,
    seconds: float,
    log: Callable[[str], None],
) -> dict[str, Rates]:
    """Each store measured *rounds* times in turns; per store and form the best turn
    (highest IMEIs/s, with its CPU per IMEI)."""
    best: dict[str, Rates] = {}
    for turn in range(rounds):
        for name, (db, work) in stores.items():
            got = rates(db, work, concurrency, seconds)
            mine = best.setdefault(name, got)
            for form in FORMS:
                if got[form]["imeis_per_s"] > mine[form]["imeis_per_s"]:
                    mine[form] = got[form]
            log(f"compare turn {turn + 1}/{rounds}, {name}: {brief(got)}")
    return best


def ratios(got: Rates, base: Rates) -> str:
    """Per form: IMEIs/s of *got* over *base*, and the same by CPU per IMEI (base's over
    got's: what one core does), the steadier of the two on a shared machine."""
    return ", ".join(
        f"{form} {got[form]['imeis_per_s'] / base[form]['imeis_per_s']:.2f}x "
        f"(by CPU {base[form]['cpu_us'] / got[form]['cpu_us']:.2f}x)"
        for form in FORMS
    )


def brief(got: Rates) -> str:
    return ", ".join(
        f"{form} {got[form]['imeis_per_s']:,.0f}/s ({got[form]['cpu_us']:.2f} us)" for form in FORMS
    )


# -- hot-table-only stores -------------------------------------------------------------

BASE = (Kind.MANUFACTURER.code - 1) * 50_000_000  # ceir.feeds.gen: the manufacturer serials
_TACS = np.array([int(tac_entry(j)[0]) for j in range(POOL)], np.int64)
_PUT = 2_000_000


def bodies(start: int, n: int) -> np.ndarray:
    """The 14-digit bodies of serial indexes start .. start + n - 1 (``device_imei``)."""
    index = np.arange(start, start + n, dtype=np.int64)
    return _TACS[index % POOL] * 1_000_000 + (index // POOL * 7919 + 4_711) % 1_000_000


def hot_store(db: Path, n: int) -> None:
    """A store at *db* whose ``devices`` holds the first *n* manufacturer serials, each a
    registered device, written in key order and repacked (reused if it holds *n*)."""
    if (db / "data.mdb").exists():
        with open_store(db, readonly=True) as store:
            if store.device_count() == n:
                return
        shutil.rmtree(db)
    keys = np.sort(bodies(BASE, n)).astype(">u8").tobytes()
    value = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1_700_000_000).pack()
    with open_store(db) as store:
        for a in range(0, n, _PUT):
            chunk = keys[8 * a : 8 * min(a + _PUT, n)]
            pairs = [(chunk[i : i + 8], value) for i in range(0, len(chunk), 8)]
            store.write(lambda tables, pairs=pairs: tables.devices.put_sorted(pairs))
        repack_devices(store)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scale_lookups",
        description="Lookups at several N on hot-table-only stores, measured in turns in "
        "one run: bare txn.get, CheckIMEIBatch and CheckPacked (server CPU per IMEI).",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1_000_000, 20_000_000, 100_000_000],
        help="devices in each store (comma-separated)",
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "ceir-scale-hot", help="stores"
    )
    parser.add_argument("--lookups", type=int, default=200_000, help="keys per row")
    parser.add_argument("--batch", type=int, default=1_000, help="IMEIs per call")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each gRPC row")
    parser.add_argument("--rounds", type=int, default=3, help="turns per store")
    parser.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S', time.gmtime())} UTC] {message}", file=sys.stderr)

    stores = {}
    for n in args.sizes:
        started = time.perf_counter()
        hot_store(args.dir / f"hot-{n}", n)
        log(f"store of {n:,} devices ready in {time.perf_counter() - started:,.0f} s")
        work = workload(range(BASE, BASE + n), args.lookups, args.batch)
        stores[f"{n}"] = (args.dir / f"hot-{n}", work)
    best = compare(stores, args.rounds, args.concurrency, args.seconds, log)
    first = best[f"{args.sizes[0]}"]
    print(f"best of {args.rounds} turns; in turns, one client, one run")
    for name, got in best.items():
        print(f"{int(name):>12,} devices: {brief(got)}; vs the first: {ratios(got, first)}")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
