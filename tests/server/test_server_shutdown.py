"""SIGTERM: health turns NOT_SERVING, in-flight calls finish within the grace period, exit 0."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ceir.v1 import eir_pb2, eir_pb2_grpc

SERVE = "from ceir.cli import run; run()"


def start_serve(db: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    """`ceir serve` on a free loopback port; returns the process and its port."""
    proc, port, _line = start_serve_line(db, *args)
    return proc, port


def start_serve_line(db: Path, *args: str) -> tuple[subprocess.Popen[str], int, str]:
    """`ceir serve` on a free loopback port; the process, its port and its start-up line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--db", str(db), "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1)), line
    raise AssertionError(f"ceir serve did not start (exit {proc.wait()})")


def test_sigterm_drains_in_flight_calls_then_exits_zero(tmp_path: Path) -> None:
    """After SIGTERM a watcher sees NOT_SERVING, an open stream still gets answers, exit is 0."""
    proc, port = start_serve(tmp_path / "db", "--grace", "20")
    requests: queue.Queue[eir_pb2.CheckIMEIBatchRequest | None] = queue.Queue()

    def messages() -> Iterator[eir_pb2.CheckIMEIBatchRequest]:
        while (item := requests.get()) is not None:
            yield item

    message = eir_pb2.CheckIMEIBatchRequest(
        requests=[eir_pb2.CheckIMEIRequest(imei="352099001761481")]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stream = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch).CheckIMEIStream(messages())
            requests.put(message)
            assert next(stream).responses[0].imei == "352099001761481"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            requests.put(message)  # the in-flight stream is still served while draining
            assert next(stream).responses[0].imei == "352099001761481"
            requests.put(None)
            assert list(stream) == []
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15, "exit waited for the whole grace period"
        assert proc.stderr is not None
        assert "stopped after" in proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()


def test_calls_still_running_after_the_grace_period_are_cut_and_exit_is_zero(
    tmp_path: Path,
) -> None:
    """A client that never finishes its stream does not keep the server from exiting."""
    proc, port = start_serve(tmp_path / "db", "--grace", "0.5")
    hold: queue.Queue[None] = queue.Queue()

    def forever() -> Iterator[eir_pb2.CheckIMEIBatchRequest]:
        yield eir_pb2.CheckIMEIBatchRequest(requests=[eir_pb2.CheckIMEIRequest(imei="1")])
        hold.get()

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stream = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch).CheckIMEIStream(forever())
            next(stream)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - started < 5
            stream.cancel()
            hold.put(None)
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_start_up_line_says_when_nothing_is_secured(tmp_path: Path, workers: str) -> None:
    """The embedded default announces that it has no TLS and no authentication, with one
    worker process or several."""
    proc, _port, line = start_serve_line(tmp_path / "db", "--workers", workers)
    try:
        assert "; open: no TLS, no authentication (the embedded default, loopback only)" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        proc.communicate()


def test_serve_refuses_a_public_address_in_clear(tmp_path: Path) -> None:
    """`ceir serve --host 0.0.0.0` without TLS exits 6 and says how to fix it."""
    from click.testing import CliRunner

    from ceir.cli.app import EXIT_CONFIG, main

    result = CliRunner().invoke(
        main, ["serve", "--db", str(tmp_path / "db"), "--host", "0.0.0.0", "--port", "0"]
    )
    assert result.exit_code == EXIT_CONFIG
    assert "refusing to listen on 0.0.0.0 without TLS" in result.output
    assert "--insecure" in result.output
    several = CliRunner().invoke(
        main,
        [
            "serve",
            "--db",
            str(tmp_path / "db"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--workers",
            "2",
        ],
    )
    assert several.exit_code == EXIT_CONFIG, "the supervisor must check before it opens the port"
    assert "refusing to listen on 0.0.0.0 without TLS" in several.output
