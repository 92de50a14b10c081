"""The N5g-eir benchmark: h2load against ``ceir serve``'s HTTP/2 face, gRPC beside it.

``python -m loadtest.bench_n5g`` (``./scripts/bench-n5g``; ``./scripts/bench`` runs the same
rows at its end) prints, from one run on one store:

- the HTTP/2 server candidates (:mod:`loadtest.sbi_servers`): a trivial answer from the
  bare ``h2`` protocol ceir uses, granian and hypercorn, one process each;
- ``h2load`` (Debian ``nghttp2-client``) against the N5g-eir face of ``ceir serve`` with
  1 and N worker processes, cycling through 10,000 registered IMEIs (``-i`` URI file):
  requests/s, p50/p99 of each request, server CPU per request, every answer 2xx;
- unary gRPC CheckIMEI calls/s against the same server, same store, same moment
  (64 in flight, the benchmark's unary row), as the baseline;
- the issue's target (>= 8,000 requests/s with p99 <= 10 ms on this machine), met or not.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc

from ceir.server.supervisor import default_workers
from loadtest import bench_core, sbi_servers
from loadtest.engine import Face
from loadtest.measure import Row, measure
from loadtest.sbi_servers import h2load
from loadtest.serverproc import ServerProcess

PATH = "/n5g-eir-eic/v1/equipment-status?pei=imei-"
SERVICE = "/ceir.v1.EquipmentIdentityRegister/CheckIMEI"
TARGET_RPS = 8_000
TARGET_P99_MS = 10.0


def _imeis(keys: list[bytes], count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [bench_core._canonical(k) for k in rng.sample(keys, min(count, len(keys)))]


def h2load_row(
    url: str,
    imeis: list[str],
    cpu: Callable[[], float],
    *,
    requests: int,
    clients: int,
    streams: int,
    group: str,
) -> Row:
    """h2load over *imeis* (one URI each, cycled); raises if any answer is not 2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".uris", delete=False) as f:
        f.write("".join(f"{url}{PATH}{imei}\n" for imei in imeis))
        uris = f.name
    try:
        h2load(url + PATH + imeis[0], requests=2_000, clients=clients, streams=streams)  # warm
        before = cpu()
        result = h2load("", requests=requests, clients=clients, streams=streams, extra=("-i", uris))
        used = cpu() - before
    finally:
        os.unlink(uris)
    if result.succeeded != result.requests:
        raise AssertionError(f"h2load: {result.succeeded:,} of {result.requests:,} succeeded")
    return Row(
        f"N5g-eir h2load -c{clients} -m{streams} ({len(imeis):,} IMEIs)",
        result.per_second,
        used / result.requests * 1e6,
        result.p50_ms,
        result.p99_ms,
        group,
    )


async def unary_row(
    address: str, imeis: list[str], cpu: Callable[[], float], seconds: float, group: str
) -> Row:
    """CheckIMEI unary calls/s, 64 in flight over 4 connections (as ./scripts/bench)."""
    from ceir.v1 import eir_pb2

    singles = [eir_pb2.CheckIMEIRequest(imei=i).SerializeToString() for i in imeis]
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(4)
    ]
    calls = [ch.unary_unary(SERVICE) for ch in channels]

    async def one(i: int) -> int:
        data = await calls[i % 4](singles[i % len(singles)])
        if eir_pb2.CheckIMEIResponse.FromString(data).reason in bench_core.WRONG:
            raise AssertionError("wrong answer")
        return 1

    try:
        return await measure("CheckIMEI unary (gRPC), 64 in flight", cpu, one, 64, seconds, group)
    finally:
        for ch in channels:
            await ch.close()


def server_rows(
    db: Path, imeis: list[str], workers: int, requests: int, seconds: float, group: str
) -> list[Row]:
    """N5g-eir by h2load, then unary gRPC, against one ``ceir serve --workers N``."""
    import uvloop

    rows = []
    with ServerProcess(db, workers=workers) as server:
        url = server.addresses[Face.N5G]
        # 16, 64 and 128 requests in flight: an AMF's few connections, then saturation.
        for clients, streams in ((4, 4), (4, 16), (16, 8)):
            rows.append(
                h2load_row(
                    url,
                    imeis,
                    server.cpu_seconds,
                    requests=requests,
                    clients=clients,
                    streams=streams,
                    group=group,
                )
            )
        rows.append(
            uvloop.run(unary_row(server.address, imeis, server.cpu_seconds, seconds, group))
        )
    return rows


def candidate_rows(requests: int) -> list[Row]:
    rows = []
    for name in sbi_servers.CANDIDATES:
        label, result = sbi_servers.measure(name, requests)
        if isinstance(result, str):
            print(f"  {label}: {result}")
            continue
        rows.append(
            Row(
                f"{label}: trivial answer, h2load -c4 -m16",
                result.per_second,
                None,
                result.p50_ms,
                result.p99_ms,
                "HTTP/2 server candidates, 1 process, no lookup",
            )
        )
    return rows


def all_rows(db: Path, keys: list[bytes], workers: int, requests: int, seconds: float) -> list[Row]:
    imeis = _imeis(keys, 10_000)
    rows = candidate_rows(requests)
    rows += server_rows(db, imeis, 1, requests, seconds, "ceir N5g-eir and gRPC, 1 worker")
    if workers > 1:
        group = f"ceir N5g-eir and gRPC, {workers} workers"
        rows += server_rows(db, imeis, workers, requests, seconds, group)
    return rows


def print_rows(rows: list[Row]) -> None:
    print(f"\n{'row':<56} {'req/s':>10} {'CPU µs/req':>11} {'p50 ms':>8} {'p99 ms':>8}")
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            print(f"-- {group}")
        cpu = "-" if row.cpu_us is None else f"{row.cpu_us:.1f}"
        p50 = "-" if row.p50_ms is None else f"{row.p50_ms:.2f}"
        p99 = "-" if row.p99_ms is None else f"{row.p99_ms:.2f}"
        print(f"{row.name:<56} {row.imeis_per_s:>10,.0f} {cpu:>11} {p50:>8} {p99:>8}")
    faces = [r for r in rows if r.name.startswith("N5g-eir")]
    within = [r for r in faces if (r.p99_ms or 0) <= TARGET_P99_MS]
    # The best row within the latency bound if there is one, else the fastest row.
    best = max(within or faces, key=lambda r: r.imeis_per_s, default=None)
    if best is not None:
        met = best.imeis_per_s >= TARGET_RPS and (best.p99_ms or 0) <= TARGET_P99_MS
        print(
            f"\ntarget [{'MET' if met else 'NOT MET'}] N5g-eir >= {TARGET_RPS:,} req/s with p99 <= "
            f"{TARGET_P99_MS:g} ms: best {best.imeis_per_s:,.0f} req/s, p99 {best.p99_ms:.2f} ms "
            f"({best.group}, {best.name})"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ceir-lookup-bench",
        help="where the store is built (reused)",
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="devices in the store")
    parser.add_argument("--requests", type=int, default=100_000, help="h2load requests per row")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the gRPC row")
    parser.add_argument("--workers", type=int, default=0, help="N (0: one per core)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workers = args.workers or default_workers()
    args.dir.mkdir(parents=True, exist_ok=True)
    db = args.dir / f"store-{args.entries}"
    keys = bench_core.build_store(db, args.entries)
    rows = all_rows(db, keys, workers, args.requests, args.seconds)
    print(f"\n{args.entries:,} devices; {os.cpu_count()} CPUs; h2load and the server share them")
    print_rows(rows)


if __name__ == "__main__":
    main()
