"""Clone detection's figures: CheckIMEI with sighting recording on vs off, and the clone
scenario (loadtest/clones.py).

Part 0 is the worker's share alone: the CheckIMEI servicer called in this process on the
same store, with the recording handoff (:class:`ceir.sightings.Handoff`) and without,
alternating rounds; CPU time per IMEI (batches of 1,000 with IMSIs, and unary calls).

Part 1 starts ``ceir serve`` (one worker) on one store of ``--devices`` registered devices,
alternately with ``--no-observe`` and with recording on (off, on, off, on), and drives it
from this process: unary CheckIMEI with an IMSI (``--concurrency`` calls in flight) and
CheckIMEIBatch of 1,000 with IMSIs; every device has one SIM, so recording adds sightings
but flags nothing. Throughput and p99 are compared within the run.

Part 2 is the scenario: five replicas, the central, a real nats-server, simulated days.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import grpc

from ceir.record import Reason, Record, Source
from ceir.store import open_store
from ceir.v1 import eir_pb2, eir_pb2_grpc
from loadtest.clones import OPERATORS, ScenarioConfig, body, imsi, run
from loadtest.edge import Node


async def _unary(address: str, n: int, seconds: float, concurrency: int) -> tuple[float, float]:
    """(calls per second, p99 seconds) of unary CheckIMEI with an IMSI."""
    latencies: list[float] = []
    rng = random.Random(1)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        await stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=body(0)))
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                i = rng.randrange(n)
                request = eir_pb2.CheckIMEIRequest(imei=body(i), imsi=imsi(OPERATORS[i % 5], i))
                started = time.perf_counter()
                await stub.CheckIMEI(request)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(0.99 * (len(latencies) - 1))]


async def _batch(address: str, n: int, seconds: float) -> float:
    """IMEIs per second of CheckIMEIBatch (1,000 with IMSIs), 4 in flight."""
    rng = random.Random(2)
    done = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                ids = [rng.randrange(n) for _ in range(1000)]
                request = eir_pb2.CheckIMEIBatchRequest(
                    requests=[
                        eir_pb2.CheckIMEIRequest(imei=body(i), imsi=imsi(OPERATORS[i % 5], i))
                        for i in ids
                    ]
                )
                await stub.CheckIMEIBatch(request)
                done += len(ids)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(4)))
        return done / (time.perf_counter() - began)


def _fill(db: Path, devices: int) -> None:
    if db.exists():
        return
    record = Record(Reason.REGISTERED, Source.MANUFACTURER)
    with open_store(db) as store:
        for lo in range(0, devices, 50_000):
            hi = min(devices, lo + 50_000)
            store.put_devices((int(body(i)).to_bytes(8, "big"), record) for i in range(lo, hi))


def worker_share(root: Path, devices: int, rounds: int = 5) -> list[str]:
    """CPU µs per IMEI of the CheckIMEI servicer without and with the handoff."""
    from ceir.clones.site import clone_site
    from ceir.config import Settings
    from ceir.lookup import Checker
    from ceir.policy import Policy
    from ceir.record import Status
    from ceir.server.eir import EquipmentIdentityRegister

    db = root / "bench"
    _fill(db, devices)
    rng = random.Random(3)
    batches = []
    for _ in range(100):
        ids = [rng.randrange(devices) for _ in range(1000)]
        requests = [
            eir_pb2.CheckIMEIRequest(imei=body(i), imsi=imsi(OPERATORS[i % 5], i)) for i in ids
        ]
        batches.append(eir_pb2.CheckIMEIBatchRequest(requests=requests).SerializeToString())
    singles = [
        eir_pb2.CheckIMEIRequest(imei=body(i), imsi=imsi(OPERATORS[i % 5], i))
        for i in (rng.randrange(devices) for _ in range(20_000))
    ]
    with open_store(db) as store:
        site = clone_site(Settings(db=db), store, recorder_socket=root / "unused.sock")
        assert site.handoff is not None
        checker = Checker(store, Policy(Status.BLACKLISTED), paired=site.paired)
        servicers = {
            "off": EquipmentIdentityRegister(checker, 10_000),
            "on": EquipmentIdentityRegister(
                checker, 10_000, observe=site.observe, observe_batch=site.observe_batch
            ),
        }

        async def batch(eir: EquipmentIdentityRegister) -> None:
            for data in batches:
                await eir.CheckIMEIBatch(data, None)

        async def unary(eir: EquipmentIdentityRegister) -> None:
            for request in singles:
                await eir.CheckIMEI(request, None)

        times: dict[str, tuple[list[float], list[float]]] = {"off": ([], []), "on": ([], [])}
        for _ in range(rounds):
            for mode, eir in servicers.items():
                began = time.process_time()
                asyncio.run(batch(eir))
                site.handoff.take()  # the link's packing, every 0.2 s, counted too
                middle = time.process_time()
                asyncio.run(unary(eir))
                site.handoff.take()
                ended = time.process_time()
                times[mode][0].append((middle - began) / (1000 * len(batches)) * 1e6)
                times[mode][1].append((ended - middle) / len(singles) * 1e6)
    (b_off, u_off), (b_on, u_on) = ((min(times[m][0]), min(times[m][1])) for m in ("off", "on"))
    return [
        f"the worker's share, CPU per IMEI (best of {rounds} alternating rounds): "
        f"batch of 1,000 off {b_off:.2f} µs on {b_on:.2f} µs ({b_on / b_off:.2f}x); "
        f"unary off {u_off:.1f} µs on {u_on:.1f} µs ({u_on / u_off:.2f}x)"
    ]


def recording_cost(root: Path, devices: int, seconds: float, concurrency: int) -> list[str]:
    db = root / "bench"
    _fill(db, devices)
    rows: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
    for mode in ("off", "on", "off", "on"):
        extra = ["--no-observe"] if mode == "off" else ["--observe"]
        node = Node(["serve", "--db", str(db), "--no-demo", *extra], root / f"serve-{mode}.log")
        node.start()
        try:
            rate, p99 = asyncio.run(_unary(node.address, devices, seconds, concurrency))
            batch = asyncio.run(_batch(node.address, devices, seconds))
        finally:
            node.stop()
        rows[mode].append((rate, p99, batch))
    out = [
        f"CheckIMEI, 1 worker, {devices:,} devices, {seconds:g} s per run, best of 2 "
        "(off, on, off, on)",
        f"{'recording':<10} {'unary/s':>9} {'p99 ms':>8} {'batch IMEIs/s':>14}",
    ]
    best = {}
    for mode, runs in rows.items():
        rate = max(r[0] for r in runs)
        p99 = min(r[1] for r in runs)
        batch = max(r[2] for r in runs)
        best[mode] = (rate, p99, batch)
        out.append(f"{mode:<10} {rate:>9,.0f} {p99 * 1000:>8.2f} {batch:>14,.0f}")
    (r_off, p_off, b_off), (r_on, p_on, b_on) = best["off"], best["on"]
    out.append(
        f"on/off: unary {r_on / r_off:.2f}x  p99 {p_on / p_off:.2f}x  batch {b_on / b_off:.2f}x"
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=ScenarioConfig.days)
    parser.add_argument("--grace-days", type=int, default=ScenarioConfig.grace_days)
    parser.add_argument("--clone-share", type=float, default=ScenarioConfig.clone_share)
    parser.add_argument("--seconds", type=float, default=10.0, help="per recording run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--skip-share", action="store_true", help="skip part 0")
    parser.add_argument("--skip-recording", action="store_true")
    parser.add_argument("--skip-scenario", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ceir-bench-clones-") as tmp:
        root = Path(tmp)
        if not args.skip_share:
            for line in worker_share(root, args.devices):
                print(line, flush=True)
        if not args.skip_recording:
            for line in recording_cost(root, args.devices, args.seconds, args.concurrency):
                print(line, flush=True)
        if not args.skip_scenario:
            cfg = ScenarioConfig(
                devices=args.devices,
                days=args.days,
                grace_days=args.grace_days,
                clone_share=args.clone_share,
            )
            scenario = root / "scenario"
            scenario.mkdir()
            run(scenario, cfg, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
