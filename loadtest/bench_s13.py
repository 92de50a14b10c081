"""S13 figures, all in one run so the ratios mean something (``./scripts/bench-s13``).

Rows:

- ``codec``: python-diameter decoding an ECR and encoding its ECA, in this process, with
  the lookup (the face's library path, :meth:`S13Face.answer_ecr`); ``decode`` alone;
- ``hot path``: the same answers from the bytes (:meth:`S13Face.answer_fast`);
- ``s13 1 conn`` / ``s13 N conns``: a Diameter load client (CER first, then ECRs kept
  ``--window`` in flight per connection, closed loop) against ``ceir serve --workers W``
  in a subprocess: ECR/ECA per second, p50/p99 from send to answer (HdrHistogram);
- ``grpc unary``: the baseline, unary CheckIMEI calls against the same server with the
  same number in flight.

Every ECA is checked (Result-Code 2001 and the generated device's Equipment-Status) and
every CheckIMEI answer's status; a wrong answer fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

from ceir.client import Client
from ceir.imei import body_key, check_digit
from ceir.lookup import Checker
from ceir.network import _diameter as dia
from ceir.network.s13 import S13Face, S13Options
from ceir.policy import Policy
from ceir.record import Reason, Record, Source, Status
from ceir.store import Store, open_store
from loadtest.diameter import S13Client
from loadtest.engine import Face
from loadtest.serverproc import ServerProcess

SEED = 20200915


@dataclass(frozen=True)
class Row:
    name: str
    per_s: float
    p50_us: float | None = None
    p99_us: float | None = None
    note: str = ""
    server_us: float | None = None
    """Server CPU per answer (all workers), for the load rows."""


@dataclass(frozen=True)
class Devices:
    bodies: list[str]
    expected: list[int]
    """3GPP Equipment-Status of each body: 0 registered, 1 stolen or unknown."""


def build(path: Path, count: int) -> Devices:
    """A store of *count* devices (90% registered, 5% stolen) and 5% unknown bodies."""
    rng = random.Random(SEED)
    bodies: list[str] = []
    expected: list[int] = []
    records = []
    seen: set[str] = set()
    while len(bodies) < count:
        body = f"35{rng.randrange(10**12):012d}"
        if body in seen:
            continue
        seen.add(body)
        roll = rng.random()
        bodies.append(body)
        if roll < 0.05:
            expected.append(1)  # not stored: unknown, blacklisted in the whitelist regime
            continue
        stolen = roll < 0.10
        records.append(
            (body_key(body), Record(Reason.REGISTERED, Source.MANUFACTURER, lost_stolen=stolen))
        )
        expected.append(1 if stolen else 0)
    with open_store(path) as store:
        store.put_devices(records)
    return Devices(bodies, expected)


def _timed(name: str, n: int, work: Callable[[], object], note: str = "") -> Row:
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    return Row(name, n / took, took / n * 1e6, None, note)


def in_process(store: Store, devices: Devices, n: int) -> list[Row]:
    """The codec rows: library path, decode alone, hot path; answers checked."""
    options = S13Options("127.0.0.1", 0, "ceir.localdomain", "localdomain", frozenset(), False)
    face = S13Face(options, Checker(store, Policy(Status.BLACKLISTED)), store)
    mme = S13Client("mme.localdomain", "localdomain")
    picks = [random.Random(SEED + i).randrange(len(devices.bodies)) for i in range(n)]
    raws = [
        mme.template.build(i + 1, devices.bodies[j], f"51010{i % 10**10:010d}")
        for i, j in enumerate(picks)
    ]
    wrong = 0

    def library() -> None:
        nonlocal wrong
        for raw, j in zip(raws, picks, strict=True):
            eca, _operator = face.answer_ecr(dia.decode(raw))
            wrong += eca[-1] != devices.expected[j]  # Equipment-Status is the last AVP

    def decode_only() -> None:
        for raw in raws:
            dia.decode(raw)

    def fast() -> None:
        nonlocal wrong
        for raw, j in zip(raws, picks, strict=True):
            got = face.answer_fast(raw)
            wrong += got is None or got[0][-1] != devices.expected[j]

    for warm in (library, decode_only, fast):  # first touches, imports, caches: not timed
        warm()
    wrong = 0
    rows = [
        _timed("codec (python-diameter) + lookup", n, library, "decode ECR, lookup, encode ECA"),
        _timed("decode only (python-diameter)", n, decode_only),
        _timed("hot path + lookup", n, fast, "the face's path for common ECRs"),
    ]
    if wrong:
        raise SystemExit(f"{wrong} wrong in-process answers")
    return rows


async def s13_load(
    address: str, devices: Devices, connections: int, window: int, seconds: float
) -> tuple[Row, int]:
    """*window* ECRs in flight in all, spread over *connections*, for *seconds*."""
    host, _, port = address.rpartition(":")
    clients = [S13Client(f"mme{i}.localdomain") for i in range(connections)]
    for mme in clients:
        await mme.connect(host, int(port))
    histogram = HdrHistogram(1, 60_000_000, 3)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0
    wrong = 0
    rng = random.Random(SEED)
    count = len(devices.bodies)

    async def lane(mme: S13Client, k: int) -> None:
        nonlocal done, wrong
        while loop.time() < deadline:
            j = int(rng.random() * count)
            sent = loop.time()
            # Each device's own SIM: one SIM on many devices would be clones (ceir.clones),
            # and the detector would greylist them mid-run.
            answer = await mme.check(devices.bodies[j], f"51010{j:010d}")
            histogram.record_value(max(1, int((loop.time() - sent) * 1e6)))
            done += 1
            if answer.result_code != 2001 or answer.equipment_status != devices.expected[j]:
                wrong += 1

    started = loop.time()
    await asyncio.gather(
        *(lane(clients[k % connections], k) for k in range(max(window, connections)))
    )
    took = loop.time() - started
    for mme in clients:
        await mme.close()
    name = f"s13 {connections} conn{'s' if connections > 1 else ''}"
    note = f"{max(window, connections)} in flight in all"
    row = Row(
        name,
        done / took,
        histogram.get_value_at_percentile(50),
        histogram.get_value_at_percentile(99),
        note,
    )
    return row, wrong


async def grpc_unary(
    address: str, devices: Devices, in_flight: int, seconds: float
) -> tuple[Row, int]:
    client = Client(address, timeout=10)
    await client.connect()
    histogram = HdrHistogram(1, 60_000_000, 3)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0
    wrong = 0
    rng = random.Random(SEED)
    count = len(devices.bodies)

    async def lane() -> None:
        nonlocal done, wrong
        while loop.time() < deadline:
            j = int(rng.random() * count)
            body = devices.bodies[j]
            sent = loop.time()
            response = await client.check_unary(body + str(check_digit(body)))
            histogram.record_value(max(1, int((loop.time() - sent) * 1e6)))
            done += 1
            wrong += Status(response.status).gpp_value != devices.expected[j]

    started = loop.time()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    took = loop.time() - started
    await client.close()
    row = Row(
        "grpc unary CheckIMEI (baseline)",
        done / took,
        histogram.get_value_at_percentile(50),
        histogram.get_value_at_percentile(99),
        f"{in_flight} in flight, one channel",
    )
    return row, wrong


def table(rows: list[Row]) -> str:
    head = f"{'row':<34} {'per s':>9} {'µs CPU':>8} {'p50 µs':>8} {'p99 µs':>8}  note"
    lines = [head, "-" * 100]
    for row in rows:
        load = row.p99_us is not None
        cpu = row.server_us if load else row.p50_us
        cells = [
            f"{cpu:8.1f}" if cpu is not None else f"{'':>8}",
            f"{row.p50_us:8.0f}" if load else f"{'':>8}",
            f"{row.p99_us:8.0f}" if load else f"{'':>8}",
        ]
        lines.append(f"{row.name:<34} {row.per_s:>9,.0f} {' '.join(cells)}  {row.note}")
    lines.append(
        "µs CPU: this process per ECR for the in-process rows, the server's (all workers) "
        "per answer for the load rows"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000, help="devices in the store")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per load row")
    parser.add_argument("--ecrs", type=int, default=20_000, help="ECRs per in-process row")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--connections", type=int, default=8, help="N of the N-connection row")
    parser.add_argument(
        "--window", type=int, default=16, help="requests in flight in every load row"
    )
    args = parser.parse_args(argv)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with tempfile.TemporaryDirectory(prefix="ceir-bench-s13-") as work:
        db = Path(work) / "store"
        devices = build(db, args.devices)
        with open_store(db) as store:
            rows = in_process(store, devices, args.ecrs)
        wrong = 0
        with (
            ServerProcess(db, workers=args.workers) as server,
            asyncio.Runner(loop_factory=loop_factory) as runner,
        ):
            s13 = server.addresses[Face.S13]
            loads = [
                s13_load(s13, devices, connections, args.window, args.seconds)
                for connections in (1, args.connections)
            ]
            loads.append(grpc_unary(server.address, devices, args.window, args.seconds))
            for load in loads:
                cpu = server.cpu_seconds()
                row, bad = runner.run(load)
                used = server.cpu_seconds() - cpu
                rows.append(
                    dataclasses.replace(row, server_us=used / (row.per_s * args.seconds) * 1e6)
                )
                wrong += bad
    print(
        f"S13 bench: {args.devices:,} devices, server --workers {args.workers}, "
        f"{args.seconds:g} s per load row, client and server on this machine"
    )
    print(table(rows))
    if wrong:
        print(f"!!! {wrong} WRONG ANSWERS", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
