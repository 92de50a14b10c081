"""Sightings leave the workers: the handoff (dedup, bound, frames), the link to the
recorder process, and the recorder process under a real ``ceir serve`` (issue 14 §1)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir import metrics
from ceir.sightings import REFRESH_MINUTES, Handoff, RecorderLink, pack, unpack
from ceir.store import clones, open_store
from ceir.v1 import eir_pb2, eir_pb2_grpc

CEIR = str(Path(sys.executable).parent / "ceir")
IMEI = "352099001761481"  # a demo device
KEY = int(IMEI[:14]).to_bytes(8, "big")
IMSIS = [f"5101000000000{i:02d}" for i in range(12)]

keys = st.binary(min_size=8, max_size=8)
imsis = st.text("0123456789", min_size=1, max_size=15)
operators = st.sampled_from(["", "510-10", "510-11"])
minutes = st.integers(0, 2**32 - 1)


@given(st.lists(st.tuples(keys, imsis, operators, minutes), max_size=50))
def test_frames_round_trip(sightings: list[tuple[bytes, str, str, int]]) -> None:
    """Whatever a worker packs, the recorder unpacks: the same sightings (grouped per
    operator and minute, so in another order)."""
    assert Counter(unpack(pack(sightings))) == Counter(sightings)


def test_a_batch_message_is_parsed_by_the_recorder() -> None:
    """A serialized CheckIMEIBatchRequest travels as is; unpacking keeps the requests with
    an IMSI and a valid IMEI, stamped with the batch's operator and minute."""
    message = eir_pb2.CheckIMEIBatchRequest(
        requests=[
            eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=IMSIS[0]),
            eir_pb2.CheckIMEIRequest(imei=IMEI),
            eir_pb2.CheckIMEIRequest(imei="35209900176148X", imsi=IMSIS[1]),
            eir_pb2.CheckIMEIRequest(imei=IMEI[:14], imsi=IMSIS[2]),
        ]
    )
    frame = pack([(KEY, IMSIS[3], "", 7)], [(message.SerializeToString(), "510-10", 9)])
    assert sorted(unpack(frame)) == sorted(
        [(KEY, IMSIS[3], "", 7), (KEY, IMSIS[0], "510-10", 9), (KEY, IMSIS[2], "510-10", 9)]
    )


@pytest.mark.parametrize("cut", [1, 5, 11, 13])
def test_a_truncated_frame_is_refused(cut: int) -> None:
    """A frame cut short is a ValueError (counted as malformed by the recorder), never
    sightings made up from the rest."""
    frame = pack([(KEY, IMSIS[0], "510-10", 1), (KEY, IMSIS[1], "510-10", 1)])
    with pytest.raises(ValueError, match=r"truncated|disagree|unpack"):
        list(unpack(frame[:-cut]))


def test_the_handoff_hands_a_sim_over_once_per_refresh_window() -> None:
    """The same device and SIM within REFRESH_MINUTES is handed over once; again after."""
    now = [600_000.0]
    handoff = Handoff(clock=lambda: now[0])
    for _ in range(5):
        handoff.observe(KEY, IMSIS[0], "510-10")
    handoff.observe(KEY, IMSIS[1], "510-10")
    now[0] += REFRESH_MINUTES * 60
    handoff.observe(KEY, IMSIS[0], "510-10")
    taken = handoff.take()
    assert taken is not None
    frame, weight = taken
    assert weight == 3
    minute = 10_000
    assert sorted(unpack(frame)) == sorted(
        [
            (KEY, IMSIS[0], "510-10", minute),
            (KEY, IMSIS[1], "510-10", minute),
            (KEY, IMSIS[0], "510-10", minute + REFRESH_MINUTES),
        ]
    )
    assert handoff.take() is None


def test_the_handoff_is_bounded_and_counts_what_it_drops() -> None:
    """Past max_pending, sightings and batches are dropped and counted (in the metric
    too), never queued without bound."""
    before = metrics.SIGHTINGS_DROPPED.labels("handoff")._value.get()
    handoff = Handoff(max_pending=3)
    for imsi in IMSIS[:5]:
        handoff.observe(KEY, imsi, "")
    handoff.observe_batch(b"x" * 400, "")
    assert handoff.dropped == 2 + 11
    assert metrics.SIGHTINGS_DROPPED.labels("handoff")._value.get() - before == 13
    taken = handoff.take()
    assert taken is not None
    assert taken[1] == 3


def test_without_a_recorder_the_link_drops_and_never_waits(tmp_path: Path) -> None:
    """A worker whose recorder process is away keeps going: what it has is dropped and
    counted at each handoff, and stop() returns at once."""

    async def scenario() -> tuple[int, float]:
        handoff = Handoff()
        link = RecorderLink(tmp_path / "nobody.sock", handoff, interval=0.05)
        await link.start()
        handoff.observe(KEY, IMSIS[0], "")
        await asyncio.sleep(0.2)
        handoff.observe(KEY, IMSIS[1], "")
        began = time.monotonic()
        await link.stop(1.0)
        return handoff.dropped, time.monotonic() - began

    dropped, took = asyncio.run(scenario())
    assert dropped == 2
    assert took < 0.5


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int, Path]:
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--grace", "1", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return proc, int(found.group(1)), log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"ceir serve did not start:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _attach(port: int, sims: list[str]) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=sims[0]), timeout=10)
        batch = [eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=s) for s in sims[1:]]
        stub.CheckIMEIBatch(eir_pb2.CheckIMEIBatchRequest(requests=batch), timeout=10)


def _recorded(db: Path) -> int:
    with open_store(db, readonly=True) as store:
        return len(clones.sightings(store, KEY))


def _recorder_pid(log: Path) -> int:
    found = re.search(r"clone detection in the recorder process \(pid (\d+)\)", log.read_text())
    assert found, log.read_text()
    return int(found.group(1))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_records_in_its_recorder_process_by_default(tmp_path: Path, workers: str) -> None:
    """``ceir serve`` (recording on by default) hands unary and batch sightings to the
    recorder process, which writes them; on SIGTERM it writes what the workers handed over
    last, removes its socket, and no IMSI is in the log."""
    proc, port, log = _start(tmp_path, "--workers", workers, "--s13", "off", "--sbi", "off")
    try:
        assert (tmp_path / "db" / "recorder.sock").exists()
        if workers == "2":
            pid = _recorder_pid(log)
            assert os.getpriority(os.PRIO_PROCESS, pid) > 0  # niced below the workers
        _attach(port, IMSIS[:4])
    finally:
        assert _stop(proc) == 0
    assert _recorded(tmp_path / "db") == 4
    assert not (tmp_path / "db" / "recorder.sock").exists()
    text = log.read_text()
    assert not any(imsi in text for imsi in IMSIS)


@pytest.mark.timeout(90)
def test_a_dead_recorder_process_is_restarted(tmp_path: Path) -> None:
    """The recorder process killed with SIGKILL is restarted by the supervisor; the
    workers' links reconnect and later sightings are recorded; answers never stopped."""
    proc, port, log = _start(tmp_path, "--workers", "2", "--s13", "off", "--sbi", "off")
    try:
        victim = _recorder_pid(log)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while "died with exit" not in log.read_text() and time.monotonic() < deadline:
            _attach(port, IMSIS[:1])  # answered while the recorder is away
            time.sleep(0.05)
        assert f"the recorder process (pid {victim}) died" in log.read_text()
        time.sleep(1.0)  # the links reconnect within a handoff or two
        _attach(port, IMSIS[5:8])
        time.sleep(1.0)
    finally:
        assert _stop(proc) == 0
    with open_store(tmp_path / "db", readonly=True) as store:
        assert len(clones.sightings(store, KEY)) >= 3


@pytest.mark.timeout(60)
def test_no_observe_starts_no_recorder(tmp_path: Path) -> None:
    """``--no-observe``: no recorder process, no socket, nothing recorded."""
    proc, port, log = _start(tmp_path, "--workers", "2", "--no-observe", "--s13", "off")
    try:
        assert "recorder process" not in log.read_text()
        assert not (tmp_path / "db" / "recorder.sock").exists()
        _attach(port, IMSIS[:3])
    finally:
        assert _stop(proc) == 0
    assert _recorded(tmp_path / "db") == 0
