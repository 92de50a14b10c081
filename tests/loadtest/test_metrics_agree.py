"""The load test's counts and the server's /metrics agree after a short run (two worker
processes: one registry across them)."""

from __future__ import annotations

import asyncio
import collections
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ceir.record import Reason, Status
from loadtest import fill
from loadtest.engine import ClientSettings, Face, Mode, run_load
from loadtest.population import DEFAULT_MIX, OPERATORS
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


def _answers(text: str) -> collections.Counter[tuple[str, str]]:
    """ceir_answers_total{face="grpc"} by (status, reason), summed over the workers."""
    out: collections.Counter[tuple[str, str]] = collections.Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "ceir_answers_total" and labels["face"] == "grpc":
                out[labels["status"], labels["reason"]] += int(sample.value)
    return out


@pytest.mark.parametrize("mode", [Mode.COALESCED, Mode.UNARY])
def test_answers_by_status_and_reason_agree(tmp_path: Path, mode: Mode) -> None:
    """Per (status, reason), the answers the load test got — in stream messages
    (coalesced) or unary calls — are what /metrics counted, plus each node's
    connection-up attach (its first subscriber's device)."""
    population, db = fill.prepare(devices=2000, mix=DEFAULT_MIX, seed=5, work=tmp_path, quiet=True)
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for operator in OPERATORS:
        first = population.subscribers[operator.name][0]
        status, reason = population.devices[first.device].expected
        expected[Status(status).name, Reason(reason).name] += 1
    with ServerProcess(db, workers=2) as server:
        assert server.web is not None
        before = _answers(_scrape(server.web))
        run = asyncio.run(run_load(population, server.address, rate=300, duration=1.0, mode=mode))
        for node in run.nodes:
            for (status, reason), count in node.answers.items():
                expected[Status(status).name, Reason(reason).name] += count
        deadline = time.monotonic() + 10
        while (seen := _answers(_scrape(server.web)) - before) != expected:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert summarize(run)["total"]["wrong"] == 0
    assert sum(expected.values()) > 200
    assert len(expected) >= 4  # registered, not registered, lost/stolen, invalid, ...
    assert seen == expected


def test_s13_calls_per_operator_agree(tmp_path: Path) -> None:
    """Each operator's MME (its CER's realm epc.mnc0XX.mcc510.3gppnetwork.org) has its
    ECRs counted under its MCC-MNC: the load test's answers per operator plus its
    connection-up ECR are /metrics' S13 calls for that operator."""
    population, db = fill.prepare(devices=2000, mix=DEFAULT_MIX, seed=5, work=tmp_path, quiet=True)
    metric = "ceir_request_duration_seconds_count"
    with ServerProcess(db, workers=2) as server:
        assert server.web is not None
        text = _scrape(server.web)
        before = {op.plmn: _total(text, metric, face="s13", operator=op.plmn) for op in OPERATORS}
        run = asyncio.run(
            run_load(
                population,
                server.addresses[Face.S13],
                rate=300,
                duration=1.0,
                mode=Mode.UNARY,
                settings=ClientSettings(face=Face.S13),
            )
        )
        expected = {r.operator.plmn: len(r.latency) + 1 for r in run.nodes}
        deadline = time.monotonic() + 10
        while True:
            text = _scrape(server.web)
            seen = {
                plmn: _total(text, metric, face="s13", operator=plmn) - before[plmn]
                for plmn in before
            }
            if seen == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert summarize(run)["total"]["wrong"] == 0
    assert sum(expected.values()) > 200
    assert seen == expected
