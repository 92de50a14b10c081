"""The load test: population, registry through ceir import, a few seconds of load, reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ceir.errors import InvalidImeiError
from ceir.imei import parse
from ceir.record import Reason, Status
from loadtest import fill
from loadtest.engine import ClientSettings, Face, Mode, n5g_request, run_load
from loadtest.population import DEFAULT_MIX, OPERATORS, Kind, generate, parse_mix
from loadtest.report import summarize
from loadtest.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


def test_population_follows_mix_and_shares() -> None:
    """Every kind of the mix appears, each operator gets its share of subscribers with
    IMSIs of MCC 510 and its MNC, and malformed IMEIs really are malformed."""
    population = generate(devices=4000, mix=DEFAULT_MIX, seed=1, now=1_750_000_000)
    kinds = {d.kind for d in population.devices}
    assert kinds == set(Kind)
    for op in OPERATORS:
        subscribers = population.subscribers[op.name]
        assert abs(len(subscribers) / 4000 - op.share) < 0.01
        assert all(s.imsi.startswith("510" + op.mnc) and len(s.imsi) == 15 for s in subscribers)
    for device in population.by_kind(Kind.MALFORMED):
        if device.expected == (Status.BLACKLISTED, Reason.INVALID_IMEI):
            with pytest.raises(InvalidImeiError):
                parse(device.text15)
        else:
            assert parse(device.text15).body == "0" * 14


def test_mix_parsing_names_the_kinds() -> None:
    """--mix takes KIND=WEIGHT items; an unknown kind says which kinds exist."""
    assert parse_mix("manufacturer=1,malformed=0.5")[Kind.MALFORMED] == 0.5
    with pytest.raises(ValueError, match="lost-stolen"):
        parse_mix("stolen=1")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    work = tmp_path_factory.mktemp("loadtest")
    return fill.prepare(devices=3000, mix=DEFAULT_MIX, seed=7, work=work, quiet=True)


def test_registry_is_loaded_through_ceir_import(prepared: tuple[object, Path]) -> None:
    """The store holds exactly the registered devices of the population."""
    from ceir.store import open_store

    population, db = prepared
    registered = [
        d
        for d in population.devices  # type: ignore[attr-defined]
        if d.kind not in (Kind.UNREGISTERED, Kind.MALFORMED)
    ]
    with open_store(db, readonly=True) as store:
        assert store.device_count() == len(registered)


def test_large_populations_are_not_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A population above the two-person threshold still loads: the simulator's own
    register is written directly, not staged for approval."""
    monkeypatch.setenv("CEIR_STAGE_ABOVE", "10")  # what ceir import would stage above
    # ... and its lost-stolen threshold: 300 devices have 6 lost-stolen reports (2%), as
    # 50,000 have 1,000 (DEFAULT_STAGE_LOST_STOLEN_ABOVE) and were staged.
    monkeypatch.setenv("CEIR_STAGE_LOST_STOLEN_ABOVE", "2")
    _population, db = fill.prepare(devices=300, mix=DEFAULT_MIX, seed=3, work=tmp_path, quiet=True)
    from ceir.store import open_store

    with open_store(db, readonly=True) as store:
        assert store.device_count() > 10
        stolen = [d for d in _population.devices if d.kind is Kind.LOST_STOLEN]
        assert len(stolen) > 2


@pytest.mark.parametrize("mode", list(Mode))
def test_short_load_answers_everything_right(prepared: tuple[object, Path], mode: Mode) -> None:
    """Two seconds of open-loop load in each mode: every attach answered, none wrong."""
    population, db = prepared
    with ServerProcess(db, workers=1) as server:
        run = asyncio.run(
            run_load(
                population,  # type: ignore[arg-type]
                server.address,
                rate=400,
                duration=1.0,
                mode=mode,
                server_cpu=server.cpu_seconds,
            )
        )
    summary = summarize(run)
    total = summary["total"]
    assert total["wrong"] == 0
    assert total["errors"] == 0
    assert total["answered"] == total["offered"] > 250
    assert set(summary["operators"]) == {op.name for op in OPERATORS}
    assert summary["server_cpu_s"] > 0
    assert total["p50_ms"] <= total["p99_ms"] <= total["max_ms"]


def test_wrong_expectation_is_reported(prepared: tuple[object, Path]) -> None:
    """A device whose expected answer is wrong shows up as wrong answers with an example."""
    population, db = prepared
    victim = next(
        d
        for d in population.devices  # type: ignore[attr-defined]
        if d.kind is Kind.MANUFACTURER
    )
    for device in population.devices:  # type: ignore[attr-defined]
        if device.kind is Kind.MANUFACTURER:
            device.expected = (Status.BLACKLISTED, Reason.LOST_STOLEN)
    try:
        with ServerProcess(db, workers=1) as server:
            run = asyncio.run(
                run_load(population, server.address, rate=300, duration=1, mode=Mode.COALESCED)  # type: ignore[arg-type]
            )
    finally:
        for device in population.devices:  # type: ignore[attr-defined]
            if device.kind is Kind.MANUFACTURER:
                device.expected = (Status.WHITELISTED, Reason.REGISTERED)
    summary = summarize(run)
    assert summary["total"]["wrong"] > 0
    examples = [e for op in summary["operators"].values() for e in op["wrong_examples"]]
    assert any("(manufacturer)" in e and "expected status 2 reason 6" in e for e in examples)
    assert victim.kind is Kind.MANUFACTURER


def test_command_writes_json_and_chart(tmp_path: Path) -> None:
    """`python -m loadtest` runs end to end (two load processes, two server workers): a
    table with every operator on stdout, result.json and chart.png."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest",
            "--devices",
            "2000",
            "--rate",
            "300",
            "--duration",
            "1",
            "--workers",
            "2",
            "--client-procs",
            "2",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TOTAL" in result.stdout
    assert all(op.name in result.stdout for op in OPERATORS)
    data = json.loads((out / "result.json").read_text())
    assert data["total"]["wrong"] == 0
    assert data["workers"] == 2
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_s13_load_answers_everything_right(prepared: tuple[object, Path]) -> None:
    """Open-loop load through the S13 face: every ECR answered with 2001 and the expected
    Equipment-Status, malformed IMEIs included, none wrong."""
    population, db = prepared
    with ServerProcess(db, workers=1) as server:
        run = asyncio.run(
            run_load(
                population,  # type: ignore[arg-type]
                server.addresses[Face.S13],
                rate=400,
                duration=1.0,
                mode=Mode.UNARY,
                settings=ClientSettings(face=Face.S13),
                server_cpu=server.cpu_seconds,
            )
        )
    summary = summarize(run)
    total = summary["total"]
    assert summary["face"] == "s13"
    assert (total["wrong"], total["errors"]) == (0, 0)
    assert total["answered"] == total["offered"] > 250
    assert set(summary["operators"]) == {op.name for op in OPERATORS}


def test_s13_wrong_expectation_is_reported(prepared: tuple[object, Path]) -> None:
    """The S13 nodes check each answer: a wrong expectation is counted with an example."""
    population, db = prepared
    for device in population.devices:  # type: ignore[attr-defined]
        if device.kind is Kind.MANUFACTURER:
            device.expected = (Status.BLACKLISTED, Reason.LOST_STOLEN)
    try:
        with ServerProcess(db, workers=1) as server:
            run = asyncio.run(
                run_load(
                    population,  # type: ignore[arg-type]
                    server.addresses[Face.S13],
                    rate=300,
                    duration=1,
                    mode=Mode.UNARY,
                    settings=ClientSettings(face=Face.S13),
                )
            )
    finally:
        for device in population.devices:  # type: ignore[attr-defined]
            if device.kind is Kind.MANUFACTURER:
                device.expected = (Status.WHITELISTED, Reason.REGISTERED)
    summary = summarize(run)
    assert summary["total"]["wrong"] > 0
    examples = [e for op in summary["operators"].values() for e in op["wrong_examples"]]
    assert any("(manufacturer)" in e and "expected 2001 / 1" in e for e in examples)


def test_command_face_s13(tmp_path: Path) -> None:
    """`python -m loadtest --face s13` runs end to end against two workers."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest",
            "--face",
            "s13",
            "--devices",
            "2000",
            "--rate",
            "300",
            "--duration",
            "1",
            "--workers",
            "2",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s13 (one ECR per attach)" in result.stdout
    data = json.loads((out / "result.json").read_text())
    assert (data["face"], data["total"]["wrong"], data["total"]["errors"]) == ("s13", 0, 0)


def test_n5g_face_answers_everything_right(prepared: tuple[object, Path]) -> None:
    """--face n5g: every operator node asks N5g-eir over one HTTP/2 connection; every
    answer (200 with the expected status, 400 for a malformed IMEI) is right."""
    population, db = prepared
    with ServerProcess(db, workers=1) as server:
        assert server.addresses[Face.N5G].startswith("http://127.0.0.1:")
        run = asyncio.run(
            run_load(
                population,  # type: ignore[arg-type]
                server.addresses[Face.N5G],
                rate=400,
                duration=1.0,
                mode=Mode.UNARY,
                settings=ClientSettings(face=Face.N5G),
                server_cpu=server.cpu_seconds,
            )
        )
    total = summarize(run)["total"]
    assert total["wrong"] == 0
    assert total["errors"] == 0
    assert total["answered"] == total["offered"] > 250


def test_n5g_expectations_cover_every_kind() -> None:
    """The AMF's request for each kind of device: imei-<15> or imeisv-<16> as the
    operator's network sends it, and the answer a malformed IMEI must get (400)."""
    population = generate(devices=2000, mix=DEFAULT_MIX, seed=5, now=1_750_000_000)
    seen = set()
    for device in population.devices:
        path, (code, body) = n5g_request(device, 16, "07", "510101234567890")
        assert path.endswith(b"&supi=imsi-510101234567890")
        if device.expected == (Status.BLACKLISTED, Reason.INVALID_IMEI):
            assert code == 400
        else:
            assert code == 200
            assert body == f'{{"status":"{Status(device.expected[0]).name}"}}'.encode()
            if device.kind is not Kind.MALFORMED:  # all zeros: valid, never registered
                assert b"pei=imeisv-" + device.body.encode() + b"07" in path
        seen.add(device.kind)
        for digits in (14, 15):
            path, _ = n5g_request(device, digits, "07", "510101234567890")
            assert b"pei=imei-" in path
    assert seen == set(Kind)
