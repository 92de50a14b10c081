"""One row of the benchmark table, shared by :mod:`loadtest.bench` and
:mod:`loadtest.alternatives`."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest import bench_core


@dataclass
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


def inproc(row: bench_core.Row, group: str) -> Row:
    return Row(row.name, row.imeis_per_s, row.cpu_us, group=group)
