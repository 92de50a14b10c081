"""Structured logs: JSON lines with the access fields, an access line for every write and
every refused call, floods cut down."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest

from ceir import logs
from ceir.config import Settings
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests._serving import serving


def test_json_lines_carry_the_access_fields() -> None:
    """One JSON object per line: time, level, logger, event and the access fields."""
    record = logging.LogRecord("ceir.access_log", logging.INFO, __file__, 1, "write", (), None)
    for name, value in {
        "request_id": "r1",
        "principal": "operator:xl@510-11",
        "face": "grpc",
        "method": "Register",
        "status": "OK",
        "duration_ms": 1.5,
    }.items():
        setattr(record, name, value)
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["event"] == "write"
    assert line["level"] == "info"
    assert line["time"].endswith("Z")
    assert (line["request_id"], line["principal"], line["method"]) == (
        "r1",
        "operator:xl@510-11",
        "Register",
    )
    assert (line["face"], line["status"], line["duration_ms"]) == ("grpc", "OK", 1.5)


def test_a_callers_request_id_is_kept_only_when_sane() -> None:
    """A sane x-request-id is echoed; anything else is replaced (no log injection)."""
    assert logs.request_id("abc-123") == "abc-123"
    assert logs.request_id("a\nb") != "a\nb"
    assert len(logs.request_id(None)) == 16


def _access(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ceir.access_log"]


def test_every_write_gets_an_access_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Register: one line with method, status, principal, request id and duration."""
    caplog.set_level(logging.INFO, "ceir.access_log")
    with serving(Settings(db=tmp_path / "db")) as running, running.channel() as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        request = registry_pb2.RegisterRequest(fields={"imei": "356868000041418"})
        with pytest.raises(grpc.RpcError):  # no feed kind: refused, and still logged
            stub.Register(request, metadata=(("x-request-id", "req-42"),))
    lines = _access(caplog)
    assert len(lines) == 1
    line = lines[0]
    assert (line.method, line.face, line.request_id) == ("Register", "grpc", "req-42")  # type: ignore[attr-defined]
    assert line.status != "OK"  # type: ignore[attr-defined]
    assert line.principal == "admin:local"  # type: ignore[attr-defined]


def test_refused_calls_are_logged_and_a_flood_is_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rate-limited LookupDevice calls get access lines, but a flood only a few."""
    caplog.set_level(logging.INFO, "ceir.access_log")
    settings = Settings(db=tmp_path / "db", consumer_rate=0.01, consumer_burst=1)
    codes = []
    with serving(settings) as running, running.channel() as ch:
        stub = device_check_pb2_grpc.DeviceCheckStub(ch)
        for _ in range(300):
            try:
                stub.LookupDevice(device_check_pb2.LookupDeviceRequest(imei="352099001761481"))
            except grpc.RpcError as err:
                codes.append(err.code())
    refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    lines = [r for r in _access(caplog) if r.method == "LookupDevice"]  # type: ignore[attr-defined]
    assert refused == 299
    assert 1 <= len(lines) < 100, "a flood must not become a flood of log lines"
    assert all(r.status == "RESOURCE_EXHAUSTED" for r in lines)  # type: ignore[attr-defined]
