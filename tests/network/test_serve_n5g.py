"""``ceir serve`` with the N5g-eir face: one process and N workers, flags, errors, logs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ceir.cli import main
from ceir.config import DEFAULT_SBI, Settings

pytestmark = pytest.mark.timeout(90)
CEIR = str(Path(sys.executable).parent / "ceir")
QUERY = "/n5g-eir-eic/v1/equipment-status?pei=imei-352099001761481"


class Served:
    def __init__(self, proc: subprocess.Popen[str], log: Path, url: str) -> None:
        self.proc = proc
        self.log = log
        self.url = url

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []

    def start(*args: str) -> Served:
        log = tmp_path / f"serve{len(started)}.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--grace", "1",
                 *args],
                stdout=handle, stderr=subprocess.STDOUT, text=True,
                env={k: v for k, v in os.environ.items() if k != "CEIR_SBI"},
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_text()
            if "serving on" in text:
                found = re.search(r"N5g-eir on (http\S+)", text)
                served = Served(proc, log, found.group(1) if found else "")
                started.append(served)
                return served
            if proc.poll() is not None:
                raise AssertionError(f"ceir serve exited {proc.returncode}:\n{text}")
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        raise AssertionError(f"ceir serve did not start:\n{log.read_text()}")

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def test_one_process_serves_n5g_and_drains(serve: object) -> None:
    """`ceir serve --sbi 127.0.0.1:0 --workers 1`: the start-up line names the face's URL,
    it answers over h2c, and SIGTERM stops it with exit 0."""
    served = serve("--workers", "1", "--sbi", "127.0.0.1:0")  # type: ignore[operator]
    assert served.url.startswith("http://127.0.0.1:")
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(served.url + QUERY).json() == {"status": "WHITELISTED"}
    assert served.stop() == 0


def test_workers_share_the_n5g_port(serve: object) -> None:
    """With --workers 2 both workers answer on the one reserved port (SO_REUSEPORT)."""
    served = serve("--workers", "2", "--sbi", "127.0.0.1:0")  # type: ignore[operator]
    assert "2 worker processes" in served.log.read_text()
    for _ in range(8):  # new connections: the kernel spreads them over the workers
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            assert client.get(served.url + QUERY).json() == {"status": "WHITELISTED"}
    assert served.stop() == 0


def test_sbi_off_serves_no_face(serve: object) -> None:
    """--sbi off: no N5g-eir face, nothing in the start-up line."""
    served = serve("--workers", "1", "--sbi", "off")  # type: ignore[operator]
    assert served.url == ""
    assert "N5g-eir" not in served.log.read_text()
    assert served.stop() == 0


def test_debug_logs_never_show_supi_or_gpsi(serve: object) -> None:
    """Even at --log-level debug, the IMSI and MSISDN of a request are not logged."""
    served = serve(  # type: ignore[operator]
        "--workers", "1", "--sbi", "127.0.0.1:0", "--log-level", "debug"
    )
    query = QUERY + "&supi=imsi-510109876543210&gpsi=msisdn-6289876543210"
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(served.url + query).status_code == 200
        assert client.get(served.url + query + "&supi=x").status_code == 400
    assert served.stop() == 0
    text = served.log.read_text()
    assert "9876543210" not in text


def test_a_taken_sbi_port_is_a_one_line_error(tmp_path: Path) -> None:
    """A port in use: exit 6 (configuration) with one line naming --sbi, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            result = subprocess.run(
                [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0",
                 "--workers", workers, "--sbi", f"127.0.0.1:{port}"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert result.returncode == 6, result.stderr
            assert "Traceback" not in result.stderr
            assert f"127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("value", ["7777", "localhost:", "127.0.0.1:70000", "[::1]:x"])
def test_a_bad_sbi_address_is_refused(tmp_path: Path, value: str) -> None:
    """--sbi must be HOST:PORT or off: exit 6 with a one-line message."""
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "db"), "--sbi", value])
    assert result.exit_code == 6
    assert "--sbi" in result.output
    assert "HOST:PORT" in result.output


def test_help_and_defaults() -> None:
    """ceir serve --help shows the three flags; the defaults are the issue's, written once."""
    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    for flag in ("--sbi", "--sbi-unknown", "--nrf"):
        assert flag in result.output
    assert DEFAULT_SBI == "127.0.0.1:7777"
    assert Settings().sbi == DEFAULT_SBI
    assert Settings().sbi_address == ("127.0.0.1", 7777)
    assert Settings(sbi="OFF").sbi_address is None
    assert Settings(sbi="[::1]:7777").sbi_address == ("::1", 7777)
