"""One row of a benchmark table, the closed-loop measurer that fills one, and the bare
CSV read import rates are compared with.

Shared by :mod:`loadtest.bench_core`, :mod:`loadtest.bench` and
:mod:`loadtest.alternatives`: the same row type, the same way of driving a server;
:func:`bare_read` by :mod:`loadtest.scale` and ``scripts/bench_import.py``.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    name: str
    imeis_per_s: float
    cpu_us: float | None
    """Server CPU per IMEI (µs); in-process rows: this process's CPU."""
    p50_ms: float | None = None
    p99_ms: float | None = None
    """Latency of one call (one message for streams, one IMEI for the coalescing client)."""
    group: str = ""


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values.sort()
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


async def closed_loop(
    call: Callable[[int], Awaitable[int]], concurrency: int, seconds: float
) -> tuple[int, float, list[float]]:
    """*concurrency* workers calling call(i) for *seconds*: (IMEIs, elapsed, latencies)."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds
    done = 0
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while loop.time() < stop_at:
            started = clock()
            n = await call(i)  # not `done += await ...`: that reads done before the await
            latencies.append(clock() - started)
            done += n
            i += concurrency

    started = clock()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done, clock() - started, latencies


async def measure(
    name: str,
    cpu: Callable[[], float],
    call: Callable[[int], Awaitable[int]],
    concurrency: int,
    seconds: float,
    group: str = "",
) -> Row:
    """A row for *call* driven closed-loop: warmed up first, then IMEIs/s, the server CPU
    per IMEI (*cpu* reads the server's CPU seconds) and the call latencies."""
    await closed_loop(call, concurrency, min(1.0, seconds / 3))  # warm up
    before = cpu()
    done, elapsed, latencies = await closed_loop(call, concurrency, seconds)
    used = cpu() - before
    return Row(
        name, done / elapsed, used / done * 1e6, pct(latencies, 0.5), pct(latencies, 0.99), group
    )


def bare_read(path: Path) -> tuple[int, float, float]:
    """Data rows, wall seconds and CPU seconds of a bare ``csv.reader`` pass over *path*
    (nothing else done): the floor an import's rows/s are compared with (issue 12)."""
    started, cpu = time.perf_counter(), time.process_time()
    n = 0
    with path.open(encoding="utf-8", newline="") as f:
        for _row in csv.reader(f):
            n += 1
    return n - 1, time.perf_counter() - started, time.process_time() - cpu
