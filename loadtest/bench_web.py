"""The web face's figures: what recording metrics costs CheckIMEI, and how many JSON
lookups and /metrics scrapes the server answers while the load test runs.

0. What recording costs in CPU: one CheckIMEI's latency and answer, and a
   CheckIMEIBatch of ``--batch`` devices (the bulk path's tally by status and reason and
   its increments) in the servicer itself, metrics on vs off, each batch timed both ways
   in turn in one process.
1. CheckIMEI p99 with and without metrics, same run: two one-worker ``ceir serve``, one
   with metrics and one ``--no-metrics``, each offered unary CheckIMEI at
   ``--unary-rate`` by the load test's simulated operators at the same time (so both see
   the same machine noise), ``--rounds`` times; the median p99 of each.
2. With metrics on and the consumer rate limit off (``--consumer-rate 0``: the JSON
   endpoint's raw capacity, not its per-client limit), ``python -m loadtest --rate
   --load-rate`` runs against the server while this process asks ``GET
   /api/v1/devices/{imei}`` (``--json-concurrency`` at once) and scrapes ``/metrics`` in
   a loop; requests/s of each, and the load test's own result.

Usage: python -m loadtest.bench_web [--load-rate 20000] [--seconds 20] ...
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import click

from loadtest import fill
from loadtest.engine import Mode, run_load
from loadtest.population import DEFAULT_MIX
from loadtest.report import summarize
from loadtest.serverproc import ServerProcess


def _p99_pair(db: Path, workers: int, rate: float, seconds: float, pop: Any) -> list[Any]:
    """Unary CheckIMEI at *rate* against two servers at once, one with metrics and one
    ``--no-metrics`` (the same moment, so the same machine noise): their load-test totals."""
    with (
        ServerProcess(db, workers=workers) as on,
        ServerProcess(db, workers=workers, extra=("--no-metrics",)) as off,
    ):

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        run_load(
                            pop, s.address, rate=rate, duration=seconds, mode=Mode.UNARY, warmup=1
                        )
                        for s in (on, off)
                    )
                )
            )

        runs = asyncio.run(both())
    totals = [summarize(run)["total"] for run in runs]
    if any(t["wrong"] for t in totals):
        sys.exit(f"bench_web: wrong answers in the unary run: {totals}")
    return totals


async def _hammer(
    base: str, imeis: list[str], seconds: float, concurrency: int, series: list[tuple[float, str]]
) -> tuple[int, int, int]:
    """(JSON answers, /metrics scrapes, failures) in *seconds*; a scrape a second goes into
    *series* (time, text) for the chart."""
    done = {"json": 0, "metrics": 0, "failed": 0}
    stop = time.monotonic() + seconds
    rng = random.Random(1)
    connector = aiohttp.TCPConnector(limit=concurrency + 1)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def json_loop() -> None:
            while time.monotonic() < stop:
                url = f"{base}/api/v1/devices/{rng.choice(imeis)}"
                async with session.get(url) as response:
                    await response.read()
                    done["json" if response.status in (200, 400) else "failed"] += 1

        async def scrape_loop() -> None:
            kept = 0.0
            while time.monotonic() < stop:
                async with session.get(base + "/metrics") as response:
                    body = await response.read()
                    done["metrics" if response.status == 200 else "failed"] += 1
                now = time.monotonic()
                if now - kept >= 1.0:
                    series.append((now, body.decode()))
                    kept = now

        await asyncio.gather(scrape_loop(), *(json_loop() for _ in range(concurrency)))
    return done["json"], done["metrics"], done["failed"]


_RECORD_COST = """
import os, sys, time
from ceir import metrics
from ceir.record import Reason, Status
n = int(sys.argv[1])
face, ok, why = metrics.Face.GRPC, int(Status.WHITELISTED), int(Reason.REGISTERED)
for _ in range(1000):  # children made, caches warm
    metrics.request(face, "CheckIMEI", "510-10", 0.0003)
    metrics.answer_code(face, ok, why)
start = time.process_time()
for _ in range(n):
    metrics.request(face, "CheckIMEI", "510-10", 0.0003)
    metrics.answer_code(face, ok, why)
print((time.process_time() - start) / n * 1e6)
"""


def _record_cost(calls: int = 200_000) -> tuple[float, float]:
    """CPU microseconds one CheckIMEI's recording costs (latency observation + answer
    count; CPU time, so other load on the machine does not count), in multi-process mode
    (as under ``ceir serve --workers N``) and in one process."""
    import os
    import tempfile

    costs = []
    for multiprocess in (True, False):
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as tmp:
            if multiprocess:
                env["PROMETHEUS_MULTIPROC_DIR"] = tmp
            out = subprocess.run(  # noqa: S603 - this interpreter, fixed program
                [sys.executable, "-c", _RECORD_COST, str(calls)],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
        costs.append(float(out.stdout))
    return costs[0], costs[1]


_BATCH_COST = """
import asyncio, sys, time
from pathlib import Path
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.server.eir import EquipmentIdentityRegister
from ceir.store import open_store
from ceir.v1 import eir_pb2
imeis = Path(sys.argv[2]).read_text().split()
size, rounds = int(sys.argv[3]), int(sys.argv[4])
batches = [  # serialized, as the server hands a batch to the servicer
    eir_pb2.CheckIMEIBatchRequest(requests=[eir_pb2.CheckIMEIRequest(imei=i) for i in
                                            imeis[s : s + size]]).SerializeToString()
    for s in range(0, len(imeis) - size + 1, size)
]
clock = time.process_time
with open_store(Path(sys.argv[1]), readonly=True) as store:
    checker = Checker(store, Policy())
    servicer = EquipmentIdentityRegister(checker, max_batch=size)
    on = servicer.CheckIMEIBatch
    def off(message):  # what the handler does under --no-metrics (metrics.enabled() false)
        answer = checker.check_batch_bytes(message, None)
        if answer is None:
            parsed = eir_pb2.CheckIMEIBatchRequest.FromString(message)
            answer = checker.check_batch(parsed.requests, None)
        return answer
    async def run():
        for b in batches[:20]:  # children made, caches warm
            await on(b, None)
            off(b)
        spent = [0.0, 0.0]
        for r in range(rounds):
            for b in batches:
                t0 = clock()
                await on(b, None)
                t1 = clock()
                off(b)
                spent[0] += t1 - t0
                spent[1] += clock() - t1
            n = (r + 1) * len(batches) * size
            print(spent[0] / n * 1e6, spent[1] / n * 1e6, flush=True)
    asyncio.run(run())
"""


def _batch_cost(db: Path, imeis: list[str], size: int, rounds: int) -> tuple[float, float]:
    """CPU microseconds per device of CheckIMEIBatch in the servicer with metrics (bulk
    path, per-reason tally, increments; multi-process mode as under ``ceir serve``) and
    without (what the handler does under ``--no-metrics``), each batch timed both ways in
    turn in one process, so both see the same caches and the same machine load."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "imeis.txt"
        listing.write_text("\n".join(imeis))
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=tmp)
        result = subprocess.run(  # noqa: S603 - this interpreter, fixed program
            [sys.executable, "-c", _BATCH_COST, str(db), str(listing), str(size), str(rounds)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    on, off = map(float, result.stdout.split()[-2:])
    return on, off


def _await_load(base: str, timeout: float = 180) -> None:
    """Return once the load test's attaches reach the server (stream devices counted)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        if any(
            line.startswith("ceir_batch_devices_total{") and float(line.rsplit(" ", 1)[1]) > 0
            for line in text.splitlines()
        ):
            time.sleep(1.0)  # past the connection-up transient
            return
        time.sleep(0.25)
    sys.exit("bench_web: the load test's attaches never reached the server")


@click.command()
@click.option("--devices", type=int, default=200_000, show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("var/loadtest"))
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--unary-rate", type=float, default=1500, show_default=True)
@click.option("--unary-seconds", type=float, default=8, show_default=True)
@click.option("--rounds", type=int, default=2, show_default=True)
@click.option("--load-rate", type=float, default=20_000, show_default=True)
@click.option("--seconds", type=float, default=20, show_default=True)
@click.option("--json-concurrency", type=int, default=8, show_default=True)
@click.option("--batch", type=int, default=1000, show_default=True)
@click.option(
    "--chart",
    type=click.Path(path_type=Path),
    default=None,
    help="Draw the dashboard's main panels from the scrapes (matplotlib) into this PNG.",
)
def main(
    devices: int,
    work: Path,
    workers: int,
    unary_rate: float,
    unary_seconds: float,
    rounds: int,
    load_rate: float,
    seconds: float,
    json_concurrency: int,
    batch: int,
    chart: Path | None,
) -> None:
    """CheckIMEI p99 with/without metrics; JSON and /metrics requests/s under load."""
    population, db = fill.prepare(
        devices=devices, mix=DEFAULT_MIX, seed=20200915, work=work, quiet=True
    )
    shared, single = _record_cost()
    print(
        f"recording one CheckIMEI (latency + answer): {shared:.2f} CPU us in multi-process mode, "
        f"{single:.2f} us in one process"
    )
    texts = [d.text15 for d in population.devices[: max(batch * 20, 20_000)]]
    b_on, b_off = _batch_cost(db, texts, batch, rounds=10)
    kinds = collections.Counter(d.expected for d in population.devices[: len(texts)])
    print(
        f"CheckIMEIBatch of {batch:,} in the servicer ({len(kinds)} distinct answers in the "
        f"batches; each batch both ways in turn, 10 passes), CPU us per device:"
    )
    print(f"  with metrics     {b_on:7.3f} us  (bulk path, per-reason tally, increments)")
    print(f"  without metrics  {b_off:7.3f} us")
    print(f"  with / without   {b_on / b_off:7.3f}x  ({(b_on - b_off) * 1000:+.0f} ns per device)")
    p99: dict[bool, list[float]] = {True: [], False: []}
    errors = {True: 0, False: 0}
    for _ in range(rounds):
        pair = _p99_pair(db, 1, unary_rate, unary_seconds, population)
        for metrics, total in zip((True, False), pair, strict=True):
            p99[metrics].append(float(total["p99_ms"]))
            errors[metrics] += int(total["errors"])
    on, off = statistics.median(p99[True]), statistics.median(p99[False])
    print(
        f"CheckIMEI unary at {unary_rate:,.0f}/s to each of two 1-worker servers at once "
        f"(one with metrics, one --no-metrics), {rounds} rounds:"
    )
    for label, value, key in (("with", on, True), ("without", off, False)):
        shown = ", ".join(f"{v:.2f}" for v in p99[key])
        print(
            f"  p99 {label + ' metrics':<16} {value:7.2f} ms  (runs: {shown}; errors {errors[key]})"
        )
    print(f"  with / without       {on / off:7.2f}x")

    imeis = [d.text15 for d in population.devices[:5000]]
    with ServerProcess(db, workers=workers, extra=("--consumer-rate", "0")) as server:
        assert server.web is not None
        out = work / "bench-web"
        load = subprocess.Popen(  # noqa: S603 - this interpreter running the load test
            [sys.executable, "-m", "loadtest", "--server", server.address, "--rate",
             str(load_rate), "--duration", str(seconds), "--devices", str(devices),
             "--work", str(work), "--out", str(out), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        _await_load(server.web)  # the load test builds its population first
        series: list[tuple[float, str]] = []
        span = seconds * 0.75  # inside the load test's run, whatever its start-up took
        answered, scrapes, failed = asyncio.run(
            _hammer(server.web, imeis, span, json_concurrency, series)
        )
        output = load.communicate(timeout=seconds + 120)[0]
    result = json.loads((out / "result.json").read_text())["total"]
    print(
        f"\nwhile `python -m loadtest --rate {load_rate:,.0f}` ran ({workers} workers; "
        f"load test achieved {result['achieved_rate']:,.0f}/s, p99 {result['p99_ms']:.2f} ms, "
        f"errors {result['errors']}, wrong {result['wrong']}):"
    )
    print(f"  GET /api/v1/devices/{{imei}}  {answered / span:8,.0f} requests/s "
          f"({json_concurrency} at once)")  # fmt: skip
    print(f"  GET /metrics                {scrapes / span:8,.1f} scrapes/s (one at a time)")
    print(f"  failed HTTP requests        {failed}")
    if chart is not None:
        _chart(series, chart, load_rate)
        print(f"chart of the scrapes: {chart}")
    if load.returncode not in (0, 2):
        print(output)
        sys.exit(f"bench_web: the load test failed (exit {load.returncode})")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


_Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _step(
    a: _Samples, b: _Samples, dt: float
) -> tuple[dict[str, float], dict[str, dict[float, float]], dict[str, float]]:
    """Between two scrapes: calls/s per face+method, bucket deltas, answers/s by status."""
    per_method: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    answers: dict[str, float] = {}
    for (name, labels), value in b.items():
        d = value - a.get((name, labels), 0.0)
        labs = dict(labels)
        key = f"{labs.get('face')} {labs.get('method')}"
        if name == "ceir_request_duration_seconds_count":
            per_method[key] = per_method.get(key, 0.0) + d / dt
        elif name == "ceir_request_duration_seconds_bucket":
            le = float(labs["le"])
            buckets.setdefault(key, {})[le] = buckets.get(key, {}).get(le, 0.0) + d
        elif name == "ceir_answers_total":
            status = labs["status"]
            answers[status] = answers.get(status, 0.0) + d / dt
        elif name == "ceir_batch_devices_total":
            per_method[f"{key} (devices)"] = per_method.get(f"{key} (devices)", 0.0) + d / dt
    return per_method, buckets, answers


def _chart(series: list[tuple[float, str]], path: Path, load_rate: float) -> None:
    """Four of docs/grafana-dashboard.json's panels, computed from consecutive scrapes as
    Prometheus would (rates of counters, p99 from histogram bucket deltas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(t, _samples(text)) for t, text in series]
    t0 = points[0][0]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {
        "requests/s per face and method": {},
        "p99 latency (ms) per face and method": {},
        "devices answered/s by status (every face and method)": {},
        "devices/s in stream and batch messages": {},
    }
    for (ta, a), (tb, b) in itertools.pairwise(points):
        x = tb - t0
        per_method, buckets, answers = _step(a, b, tb - ta)
        for key, rate in per_method.items():
            panel = (
                "devices/s in stream and batch messages"
                if "(devices)" in key
                else ("requests/s per face and method")
            )
            panels[panel].setdefault(key, []).append((x, rate))
        for key, counts in buckets.items():
            total = counts.get(float("inf"), 0.0)
            if total <= 0:
                continue
            bound = next(le for le in sorted(counts) if counts[le] >= 0.99 * total)
            if bound != float("inf"):
                panels["p99 latency (ms) per face and method"].setdefault(key, []).append(
                    (x, bound * 1000)
                )
        for status, rate in answers.items():
            panel = "devices answered/s by status (every face and method)"
            panels[panel].setdefault(status, []).append((x, rate))
    for ax, (title, lines) in zip(axes.flat, panels.items(), strict=True):
        for label, values in sorted(lines.items()):
            if values:
                ax.plot([v[0] for v in values], [v[1] for v in values], label=label)
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"ceir /metrics scraped once a second while the load test offers {load_rate:,.0f} "
        "attaches/s (matplotlib rendering of the Grafana dashboard's panels)",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
