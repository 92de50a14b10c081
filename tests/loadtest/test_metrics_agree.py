"""The load test's counts and the server's /metrics agree after a short run (two worker
processes: one registry across them)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest

from loadtest import fill
from loadtest.engine import Mode, run_load
from loadtest.population import DEFAULT_MIX
from loadtest.report import summarize
from loadtest.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(180)


def _total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _scrape(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize(
    ("mode", "metric", "labels"),
    [
        (Mode.UNARY, "ceir_request_duration_seconds_count", {"method": "CheckIMEI"}),
        (Mode.UNARY, "ceir_answers_total", {"face": "grpc"}),
        (Mode.COALESCED, "ceir_batch_devices_total", {"method": "CheckIMEIStream"}),
    ],
)
def test_load_test_counts_and_metrics_agree(
    tmp_path: Path, mode: Mode, metric: str, labels: dict[str, str]
) -> None:
    """Every attach the load test had answered is counted once on /metrics (plus, on the
    stream, the one uncounted attach per node that brings its connection up)."""
    population, db = fill.prepare(devices=2000, mix=DEFAULT_MIX, seed=5, work=tmp_path, quiet=True)
    with ServerProcess(db, workers=2) as server:
        assert server.web is not None
        before = _total(_scrape(server.web), metric, **labels)
        run = asyncio.run(run_load(population, server.address, rate=300, duration=1.0, mode=mode))
        answered = summarize(run)["total"]["answered"]
        if mode is Mode.COALESCED:
            answered += len(run.nodes)  # each node's connection-up attach (engine.run_load)
        deadline = time.monotonic() + 10
        while (seen := _total(_scrape(server.web), metric, **labels) - before) < answered:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert answered > 200
    assert seen == answered
