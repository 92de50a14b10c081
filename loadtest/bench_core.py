"""First figures for the lookup core, all against one generated store, in one run.

Rows, each a function below, measured in the same run so the ratios mean something:

- ``floor``: bare ``txn.get`` over random existing keys in one read transaction;
- ``store``: :meth:`Store.get_many` per batch (one read transaction each);
- ``check_many`` / ``check_packed``: the in-process read path of CheckIMEI and CheckPacked
  on prebuilt requests;
- ``unary`` / ``batch`` / ``packed``: CheckIMEI, CheckIMEIBatch and CheckPacked over gRPC on
  loopback against ``ceir serve`` in a subprocess, from one grpc.aio client process.

Answers are checked against the generated data (every key exists, so none may be
NOT_REGISTERED or INVALID_IMEI): the first batch of each in-process row (untimed), and over
gRPC each unary answer, the last answer of each batch and every packed byte, so a fast
wrong path cannot pass. Usage: ``./scripts/bench-core [--entries N] [--seconds S] ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from ceir.imei import check_digit
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Reason, Record, Source, Status
from ceir.store import LMDB_VERSION, Store, open_store
from ceir.v1 import eir_pb2, eir_pb2_grpc
from loadtest.measure import Row, measure
from loadtest.serverproc import ServerProcess

SEED = 20200915
# Every queried key exists, so these reasons mean a wrong answer.
WRONG = frozenset({int(Reason.NOT_REGISTERED), int(Reason.INVALID_IMEI)})


@dataclass(frozen=True)
class Workload:
    keys: list[bytes]
    """Random existing keys, in query order."""
    batch: int

    @property
    def imeis(self) -> list[str]:
        return [_canonical(k) for k in self.keys]

    def chunks(self) -> list[list[bytes]]:
        return [self.keys[i : i + self.batch] for i in range(0, len(self.keys), self.batch)]

    def requests(
        self,
    ) -> tuple[
        list[eir_pb2.CheckIMEIRequest],
        list[eir_pb2.CheckIMEIBatchRequest],
        list[eir_pb2.CheckPackedRequest],
    ]:
        """The keys as unary requests, batches of :attr:`batch` and packed calls."""
        singles = [eir_pb2.CheckIMEIRequest(imei=i) for i in self.imeis]
        batches = [
            eir_pb2.CheckIMEIBatchRequest(requests=singles[s : s + self.batch])
            for s in range(0, len(singles), self.batch)
        ]
        packed = [eir_pb2.CheckPackedRequest(keys=b"".join(chunk)) for chunk in self.chunks()]
        return singles, batches, packed


def _canonical(key: bytes) -> str:
    body = f"{int.from_bytes(key, 'big'):014d}"
    return body + str(check_digit(body))


# -- the store ---------------------------------------------------------------------


def build_store(path: Path, entries: int) -> list[bytes]:
    """A store of *entries* random registered devices at *path* (reused if already built).

    Returns every key. A twentieth are stolen and a twentieth temporary (unexpired), so
    the decision cache and the expiry path both take part.
    """
    rng = random.Random(SEED)
    keys = sorted(b.to_bytes(8, "big") for b in rng.sample(range(10**13, 10**14), entries))
    with open_store(path) as store:
        if store.device_count() == entries:
            return keys
        if store.device_count():
            sys.exit(f"{path} holds another store; remove it or pass another --db")
        now = int(time.time())
        kinds = (
            Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=now),
            Record(Reason.REGISTERED, Source.CUSTOMS, lost_stolen=True, registered_at=now),
            Record(Reason.TEMPORARY, Source.OPERATOR, registered_at=now, expires_at=now + 10**7),
        )
        weights = (18, 1, 1)
        chosen = rng.choices(kinds, weights, k=entries)
        for start in range(0, entries, 200_000):
            end = start + 200_000
            store.put_devices(zip(keys[start:end], chosen[start:end], strict=True))
    return keys


# -- in-process rows ---------------------------------------------------------------


REPEAT = 3


def _rate(name: str, n: int, run: Callable[[], object]) -> Row:
    """The best of REPEAT runs of *run* (n IMEIs each): a shared machine only adds noise."""
    best_wall = best_cpu = float("inf")
    for _ in range(REPEAT):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return Row(name, n / best_wall, best_cpu / n * 1e6)


def row_floor(store: Store, work: Workload) -> Row:
    """Bare txn.get for every key in one read transaction: what LMDB costs from Python
    (the store's read view hands out the transaction's bound ``get`` itself)."""

    def run() -> None:
        with store.read() as reads:
            get = reads.get
            for key in work.keys:
                get(key)

    return _rate("bare txn.get, one read txn (floor)", len(work.keys), run)


def row_store(store: Store, work: Workload) -> Row:
    chunks = work.chunks()
    if None in store.get_many(chunks[0]):
        raise AssertionError("an existing key read as missing")

    def run() -> None:
        for chunk in chunks:
            store.get_many(chunk)

    return _rate(f"Store.get_many, {work.batch:,}/txn", len(work.keys), run)


def row_check_many(checker: Checker, work: Workload) -> Row:
    imeis = work.imeis
    requests = [
        [eir_pb2.CheckIMEIRequest(imei=i) for i in imeis[s : s + work.batch]]
        for s in range(0, len(imeis), work.batch)
    ]
    for r in checker.check_many(requests[0]).responses:
        if r.reason in WRONG:
            raise AssertionError(f"wrong answer for {r.imei}: {r.reason}")

    def run() -> None:
        for batch in requests:
            checker.check_many(batch)

    return _rate(f"Checker.check_many, {work.batch:,}/batch", len(imeis), run)


def row_check_packed(checker: Checker, work: Workload) -> Row:
    blobs = [b"".join(chunk) for chunk in work.chunks()]
    if (Reason.NOT_REGISTERED << 2) | Status.BLACKLISTED in checker.check_packed(blobs[0]):
        raise AssertionError("an existing key answered NOT_REGISTERED")

    def run() -> None:
        for blob in blobs:
            checker.check_packed(blob)

    return _rate(f"Checker.check_packed, {work.batch:,}/batch", len(work.keys), run)


# -- gRPC rows ---------------------------------------------------------------------


async def grpc_rows(server: ServerProcess, work: Workload, args: argparse.Namespace) -> list[Row]:
    singles, batches, packed = work.requests()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)

        async def unary(i: int) -> int:
            r = await stub.CheckIMEI(singles[i % len(singles)])
            if r.reason in WRONG:
                raise AssertionError(f"wrong answer for {r.imei}")
            return 1

        async def batch(i: int) -> int:
            r = await stub.CheckIMEIBatch(batches[i % len(batches)])
            if r.responses[-1].reason in WRONG:
                raise AssertionError("wrong answer in a batch")
            return len(r.responses)

        async def compact(i: int) -> int:
            results = (await stub.CheckPacked(packed[i % len(packed)])).results
            if (Reason.NOT_REGISTERED << 2) | Status.BLACKLISTED in results:
                raise AssertionError("an existing key answered NOT_REGISTERED")
            return len(results)

        c, b, s = args.unary_concurrency, args.batch_concurrency, args.seconds
        cpu = server.cpu_seconds
        return [
            await measure(f"CheckIMEI unary, {c} in flight", cpu, unary, c, s),
            await measure(f"CheckIMEIBatch {work.batch:,}/call, {b} in flight", cpu, batch, b, s),
            await measure(f"CheckPacked {work.batch:,}/call, {b} in flight", cpu, compact, b, s),
        ]


# -- the report --------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    floor = rows[0].imeis_per_s
    print(f"{'row':<46} {'IMEIs/s':>12} {'us/IMEI':>9} {'vs floor':>9} {'CPU us/IMEI':>12}")
    for row in rows:
        print(
            f"{row.name:<46} {row.imeis_per_s:>12,.0f} {1e6 / row.imeis_per_s:>9.2f}"
            f" {row.imeis_per_s / floor:>8.1%} {row.cpu_us:>12.2f}"
        )
    print(
        f"in-process rows: best of {REPEAT}, CPU of this process; "
        "gRPC rows: CPU of the ceir serve process"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench-core",
        description="Lookups/s of the store's read path against a bare txn.get floor, and "
        "CheckIMEI / CheckIMEIBatch / CheckPacked throughput on loopback, on one generated store.",
    )
    parser.add_argument(
        "--db", type=Path, default=Path("var/bench-core"), help="store to build or reuse"
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="devices in the store")
    parser.add_argument("--lookups", type=int, default=500_000, help="keys per in-process row")
    parser.add_argument("--batch", type=int, default=1_000, help="IMEIs per batch / packed call")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each gRPC row")
    parser.add_argument(
        "--unary-concurrency", type=int, default=64, help="CheckIMEI calls in flight"
    )
    parser.add_argument("--batch-concurrency", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--no-grpc", action="store_true", help="only the in-process rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    keys = build_store(args.db, args.entries)
    took = time.perf_counter() - started
    print(f"store {args.db}: {args.entries:,} devices (built or opened in {took:.1f} s)")
    rng = random.Random(SEED + 1)
    work = Workload([rng.choice(keys) for _ in range(args.lookups)], args.batch)
    with open_store(args.db, readonly=True) as store:
        checker = Checker(store, Policy())
        rows = [
            row_floor(store, work),
            row_store(store, work),
            row_check_many(checker, work),
            row_check_packed(checker, work),
        ]
    if not args.no_grpc:
        # One worker: the server CPU per IMEI is one process's; no other face.
        extra = ("--web", "off", "--s13", "off", "--sbi", "off")
        with ServerProcess(args.db, workers=1, extra=extra) as server:
            rows += asyncio.run(grpc_rows(server, work, args))
    print(
        f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, lmdb {LMDB_VERSION}, "
        f"{os.cpu_count()} CPUs; {args.lookups:,} random existing keys; one client process"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
