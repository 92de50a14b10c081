"""Load-test results: HdrHistogram percentiles, per-second timeline, table, JSON, chart."""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest.engine import NodeResult, RunResult

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _histogram(latencies: Iterable[float]) -> HdrHistogram:
    """Latencies (seconds) in an HdrHistogram of microseconds, 1 µs .. 60 s, 3 digits."""
    histogram = HdrHistogram(1, 60_000_000, 3)
    counts = collections.Counter(max(1, round(x * 1e6)) for x in latencies)
    for value, count in counts.items():
        histogram.record_value(min(value, 60_000_000), count)
    return histogram


def _stats(results: Sequence[NodeResult], run: RunResult) -> dict[str, Any]:
    histogram = _histogram(x for r in results for x in r.latency)
    answered = histogram.get_total_count()
    offered = sum(r.offered for r in results)
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r.errors)
    out: dict[str, Any] = {
        "offered": offered,
        "answered": answered,
        "offered_rate": offered / run.duration,
        "achieved_rate": answered / run.elapsed if run.elapsed else 0.0,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "wrong": sum(r.wrong for r in results),
    }
    for p in PERCENTILES:
        out[f"p{p:g}_ms"] = histogram.get_value_at_percentile(p) / 1000 if answered else None
    out["max_ms"] = histogram.get_max_value() / 1000 if answered else None
    return out


def _timeline(run: RunResult) -> dict[str, list[float]]:
    """Per second of scheduled time: offered, answered, p50/p99/max latency (ms)."""
    seconds = max(1, math.ceil(run.duration))
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    offered = [0] * seconds
    for r in run.nodes:
        for t, x in zip(r.scheduled, r.latency, strict=True):
            buckets[min(seconds - 1, max(0, int(t)))].append(x)
        for t in r.error_times:
            offered[min(seconds - 1, max(0, int(t)))] += 1
    line: dict[str, list[float]] = {"t": [], "offered": [], "answered": [], "p50_ms": []}
    line |= {"p99_ms": [], "max_ms": []}
    for second, values in enumerate(buckets):
        values.sort()
        n = len(values)
        line["t"].append(second)
        line["answered"].append(n)
        line["offered"].append(n + offered[second])
        line["p50_ms"].append(values[n // 2] * 1000 if n else math.nan)
        line["p99_ms"].append(values[min(n - 1, int(n * 0.99))] * 1000 if n else math.nan)
        line["max_ms"].append(values[-1] * 1000 if n else math.nan)
    return line


def summarize(run: RunResult) -> dict[str, Any]:
    """Everything a run measured, JSON-ready."""
    total = _stats(run.nodes, run)
    answered = max(1, total["answered"] + total["errors"])
    return {
        "mode": run.mode.value,
        "face": run.face.value,
        "rate": run.rate,
        "duration_s": run.duration,
        "elapsed_s": run.elapsed,
        "operators": {
            r.operator.name: {
                "plmn": r.operator.plmn,
                "imei_digits": r.operator.imei_digits,
                **_stats([r], run),
                "wrong_examples": r.wrong_examples,
            }
            for r in run.nodes
        },
        "total": total,
        "client_cpu_s": run.client_cpu,
        "client_cpu_us_per_attach": run.client_cpu / answered * 1e6,
        "server_cpu_s": run.server_cpu,
        "server_cpu_us_per_attach": (
            None if run.server_cpu is None else run.server_cpu / answered * 1e6
        ),
        "timeline": _timeline(run),
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(summary: dict[str, Any]) -> str:
    """The per-operator and total table as text."""
    head = (
        f"{'operator':<18} {'PLMN':<7} {'offered/s':>10} {'achieved/s':>10} {'p50':>7} "
        f"{'p90':>7} {'p99':>7} {'p99.9':>7} {'max':>8} {'errors':>7} {'wrong':>6}"
    )
    lines = [head + "   (latency in ms)", "-" * len(head)]
    rows = [(name, s["plmn"], s) for name, s in summary["operators"].items()]
    rows.append(("TOTAL", "", summary["total"]))
    for name, plmn, s in rows:
        lines.append(
            f"{name:<18} {plmn:<7} {s['offered_rate']:>10,.0f} {s['achieved_rate']:>10,.0f} "
            f"{ms(s['p50_ms']):>7} {ms(s['p90_ms']):>7} {ms(s['p99_ms']):>7} "
            f"{ms(s['p99.9_ms']):>7} {ms(s['max_ms']):>8} {s['errors']:>7,} {s['wrong']:>6,}"
        )
    server = summary["server_cpu_s"]
    lines.append(
        f"client CPU {summary['client_cpu_s']:.2f} s ({summary['client_cpu_us_per_attach']:.1f} "
        "µs/attach)"
        + (
            ""
            if server is None
            else f"; server CPU {server:.2f} s "
            f"({summary['server_cpu_us_per_attach']:.1f} µs/attach)"
        )
    )
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def chart(path: Path, summary: dict[str, Any], title: str) -> None:
    """PNG: latency percentiles and throughput per second over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line = summary["timeline"]
    fig, (lat, thr) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        lat.plot(line["t"], line[key], marker=".", label=label)
    lat.set_yscale("log")
    lat.set_ylabel("latency from scheduled arrival (ms)")
    lat.legend()
    lat.grid(visible=True, which="both", alpha=0.3)
    thr.plot(line["t"], line["offered"], label="offered", linestyle="--")
    thr.plot(line["t"], line["answered"], label="answered")
    thr.set_ylabel("attaches per second")
    thr.set_xlabel("second of the run (by scheduled arrival)")
    thr.legend()
    thr.grid(visible=True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ramp_chart(path: Path, steps: list[dict[str, Any]], limit_ms: float, title: str) -> None:
    """PNG: p99 and achieved rate against offered rate, one point per ramp step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [s["total"]["offered_rate"] for s in steps]
    fig, (lat, thr) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    lat.plot(offered, [s["total"]["p99_ms"] for s in steps], marker="o", label="p99")
    lat.plot(offered, [s["total"]["p50_ms"] for s in steps], marker=".", label="p50")
    lat.axhline(limit_ms, color="red", linestyle=":", label=f"limit {limit_ms:g} ms")
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms)")
    lat.legend()
    lat.grid(visible=True, which="both", alpha=0.3)
    thr.plot(offered, [s["total"]["achieved_rate"] for s in steps], marker="o", label="achieved")
    thr.plot(offered, offered, linestyle="--", label="offered")
    thr.set_xlabel("offered attaches per second")
    thr.set_ylabel("attaches per second")
    thr.legend()
    thr.grid(visible=True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
