"""The web face's figures: what recording metrics costs CheckIMEI, and how many JSON
lookups and /metrics scrapes the server answers while the load test runs.

1. CheckIMEI p99 with and without metrics, same run: ``ceir serve`` started alternately
   with ``--metrics`` and ``--no-metrics`` (``--rounds`` times each), unary CheckIMEI at
   ``--unary-rate`` from the load test's simulated operators; the median p99 of each.
2. With metrics on and the consumer rate limit off (``--consumer-rate 0``: the JSON
   endpoint's raw capacity, not its per-client limit), ``python -m loadtest --rate
   --load-rate`` runs against the server while this process asks ``GET
   /api/v1/devices/{imei}`` (``--json-concurrency`` at once) and scrapes ``/metrics`` in
   a loop; requests/s of each, and the load test's own result.

Usage: python -m loadtest.bench_web [--load-rate 20000] [--seconds 20] ...
"""

from __future__ import annotations

import asyncio
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

from loadtest import registry
from loadtest.engine import Mode, run_load
from loadtest.population import DEFAULT_MIX
from loadtest.report import summarize
from loadtest.serverproc import ServerProcess


def _p99(db: Path, workers: int, rate: float, seconds: float, metrics: bool, pop: Any) -> float:
    extra = () if metrics else ("--no-metrics",)
    with ServerProcess(db, workers=workers, extra=extra) as server:
        run = asyncio.run(
            run_load(pop, server.address, rate=rate, duration=seconds, mode=Mode.UNARY, warmup=1)
        )
    total = summarize(run)["total"]
    if total["errors"] or total["wrong"]:
        sys.exit(f"bench_web: the unary run had errors or wrong answers: {total}")
    return float(total["p99_ms"])


async def _hammer(
    base: str, imeis: list[str], seconds: float, concurrency: int
) -> tuple[int, int, int]:
    """(JSON answers, /metrics scrapes, failures) in *seconds*."""
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
            while time.monotonic() < stop:
                async with session.get(base + "/metrics") as response:
                    await response.read()
                    done["metrics" if response.status == 200 else "failed"] += 1

        await asyncio.gather(scrape_loop(), *(json_loop() for _ in range(concurrency)))
    return done["json"], done["metrics"], done["failed"]


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
) -> None:
    """CheckIMEI p99 with/without metrics; JSON and /metrics requests/s under load."""
    population, db = registry.prepare(
        devices=devices, mix=DEFAULT_MIX, seed=20200915, work=work, quiet=True
    )
    p99: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for metrics in (True, False):
            p99[metrics].append(_p99(db, workers, unary_rate, unary_seconds, metrics, population))
    on, off = statistics.median(p99[True]), statistics.median(p99[False])
    print(f"CheckIMEI unary at {unary_rate:,.0f}/s, {workers} workers, {rounds} rounds each:")
    print(f"  p99 with metrics    {on:7.2f} ms  (runs: {', '.join(f'{v:.2f}' for v in p99[True])})")
    print(
        f"  p99 without metrics {off:7.2f} ms  (runs: {', '.join(f'{v:.2f}' for v in p99[False])})"
    )
    print(f"  with / without      {on / off:7.2f}x")

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
        time.sleep(3)  # the load test loads its population and connects first
        answered, scrapes, failed = asyncio.run(
            _hammer(server.web, imeis, seconds - 4, json_concurrency)
        )
        output = load.communicate(timeout=seconds + 120)[0]
    span = seconds - 4
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
    if load.returncode not in (0, 2):
        print(output)
        sys.exit(f"bench_web: the load test failed (exit {load.returncode})")


if __name__ == "__main__":
    main()
