"""``ceir serve --s13``: the S13 face in a real server process, one worker or several."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest

from ceir.record import Status
from ceir.v1 import eir_pb2, eir_pb2_grpc
from loadtest.diameter import S13Client

pytestmark = pytest.mark.timeout(90)
CEIR = str(Path(sys.executable).parent / "ceir")
DEVICES = {  # demo IMEIs: registered, stolen, expired visitor, unknown
    "352099001761481": 0,
    "352099001761499": 1,
    "860123450000020": 1,
    "352099009999992": 1,
}


class Served:
    def __init__(self, proc: subprocess.Popen[str], log: Path, handle: IO[str]) -> None:
        self.proc = proc
        self.log = log
        self.handle = handle
        text = log.read_text()
        self.port = int(re.findall(r"serving on 127\.0\.0\.1:(\d+)", text)[0])
        self.s13 = int(re.findall(r"S13 Diameter on 127\.0\.0\.1:(\d+)", text)[0])


def _start(tmp_path: Path, *args: str) -> Served:
    log = tmp_path / "serve.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--grace", "5", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "S13 Diameter on" in log.read_text():
            return Served(proc, log, handle)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    handle.close()
    raise AssertionError(f"ceir serve did not start:\n{log.read_text()}")


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    s = _start(tmp_path, "--workers", str(request.param), "--s13", "127.0.0.1:0")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.handle.close()


def _grpc_status(port: int, imei: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        response = stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=imei), timeout=10)
    return Status(response.status).gpp_value


async def _ask(port: int, connections: int) -> list[list[int | None]]:
    clients = [S13Client(f"mme{i}.localdomain") for i in range(connections)]
    for mme in clients:
        await mme.connect("127.0.0.1", port)
    answers = [
        [(await mme.check(imei[:14])).equipment_status for imei in DEVICES] for mme in clients
    ]
    for mme in clients:
        await mme.close()
    return answers


def test_serve_answers_s13_as_checkimei(served: Served) -> None:
    """A real ``ceir serve`` answers ECRs on its S13 port with the status its gRPC
    CheckIMEI gives, on every connection (with 2 workers, spread by SO_REUSEPORT)."""
    answers = asyncio.run(asyncio.wait_for(_ask(served.s13, 6), 30))
    grpc_view = [_grpc_status(served.port, imei) for imei in DEVICES]
    assert grpc_view == list(DEVICES.values())
    assert all(row == grpc_view for row in answers)


def test_sigterm_sends_dpr_and_exits(served: Served) -> None:
    """On SIGTERM a connected MME gets a DPR; after its DPA the server exits 0."""

    async def main() -> int:
        mme = S13Client("mme.localdomain")
        await mme.connect("127.0.0.1", served.s13)
        assert (await mme.check("35209900176148")).equipment_status == 0
        served.proc.send_signal(signal.SIGTERM)
        dpr = await asyncio.wait_for(mme.server_request(), 10)
        mme.answer_dpr(dpr)
        await asyncio.wait_for(mme.closed(), 10)
        return dpr.command

    assert asyncio.run(main()) == 282
    assert served.proc.wait(timeout=20) == 0
    assert "Traceback" not in served.log.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--s13", "0.0.0.0:0"], "--s13 0.0.0.0:0 is not a loopback address"),
        (["--s13", "nowhere"], "--s13 'nowhere' is not HOST:PORT"),
        (["--s13", "127.0.0.1:0", "--diameter-host", "bad host!"], "is not a Diameter identity"),
        (
            ["--s13", "127.0.0.1:0", "--s13-peers", "mme1.example=510-10,mme2.example=5101"],
            "--s13-peers mme2.example=5101: operator id '5101' is not an MCC-MNC",
        ),
    ],
)
def test_bad_s13_settings_exit_6_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    """A non-loopback --s13 without --s13-peers, a malformed address or identity: exit 6
    (bad configuration) with a one-line message, no traceback."""
    done = subprocess.run(
        [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 6
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_s13_off_serves_no_diameter(tmp_path: Path) -> None:
    """``--s13 off``: the start-up line names no S13 face."""
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--s13", "off"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while "serving on" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert "serving on" in log.read_text()
    assert "S13" not in log.read_text()


def test_help_shows_the_s13_flags() -> None:
    """``ceir serve --help`` lists every S13 flag with its default."""
    done = subprocess.run(
        [CEIR, "serve", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    for flag in ("--s13 ", "--diameter-host", "--diameter-realm", "--s13-peers", "--s13-unknown"):
        assert flag in done.stdout
    assert "127.0.0.1:3868" in done.stdout
    assert "ceir.localdomain" in done.stdout
