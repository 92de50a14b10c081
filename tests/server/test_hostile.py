"""Hostile bytes on the port: random data, truncated HTTP/2, malformed protobuf, oversized
messages and stalled connections neither crash nor wedge the server."""

from __future__ import annotations

import logging
import random
import socket
import struct
from pathlib import Path

import grpc
import pytest

from ceir.config import Settings
from ceir.v1 import common_pb2, eir_pb2, eir_pb2_grpc
from tests._serving import Running, serving

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CHECK = "/ceir.v1.EquipmentIdentityRegister/CheckIMEI"


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    """An HTTP/2 frame; *length* may lie about the payload."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name: str, value: str) -> bytes:
    """HPACK literal header field without indexing, new name (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


HEADERS = b"".join(
    literal(k, v)
    for k, v in (
        (":method", "POST"),
        (":scheme", "http"),
        (":path", CHECK),
        (":authority", "x"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    )
)
SETTINGS = frame(4, 0, 0, b"")
END_HEADERS, END_STREAM = 0x4, 0x1


def hostile_payloads(rng: random.Random) -> list[bytes]:
    """Byte strings a broken or malicious client might send."""
    grpc_lying_length = b"\x00" + struct.pack(">I", 1000) + b"\x0a\x03abc"
    grpc_bad_protobuf = b"\x00" + struct.pack(">I", 6) + b"\xff\xff\xff\xff\xff\xff"
    grpc_compressed_flag = b"\x01" + struct.pack(">I", 3) + b"abc"
    return [
        *(rng.randbytes(rng.randrange(1, 4096)) for _ in range(20)),
        PREFACE[:10],
        PREFACE + b"\x00\x00",  # truncated frame header
        PREFACE + frame(4, 0, 0, b"\x00\x03", length=6),  # truncated SETTINGS
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, HEADERS[:20], length=len(HEADERS)),
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, HEADERS) + frame(0, 0, 1, b"\x00\x00"),
        PREFACE + SETTINGS + frame(0, 0, 1, b"x" * 100, length=16_777_215),  # huge declared
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, HEADERS)
        + frame(0, END_STREAM, 1, grpc_lying_length),
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, HEADERS)
        + frame(0, END_STREAM, 1, grpc_bad_protobuf),
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, HEADERS)
        + frame(0, END_STREAM, 1, grpc_compressed_flag),
        PREFACE + SETTINGS + frame(1, END_HEADERS, 1, b"\xff" * 64),  # broken HPACK
        PREFACE + SETTINGS + frame(7, 0, 0, b"\x00"),  # truncated GOAWAY
        PREFACE + SETTINGS + frame(8, 0, 1, b"\x7f\xff\xff\xff"),  # window update overflow
    ]  # fmt: skip


def send_raw(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        sock.settimeout(0.2)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass


def assert_serving(running: Running) -> None:
    """A normal call answers correctly and promptly."""
    with running.channel() as ch:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        answer = stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei="352099001761481"), timeout=5)
    assert answer.imei == "352099001761481"
    assert answer.status == common_pb2.EQUIPMENT_STATUS_WHITELISTED


def test_random_bytes_and_truncated_http2_frames_leave_the_server_serving(
    tmp_path: Path,
) -> None:
    """Every hostile payload is survived; afterwards a normal call succeeds."""
    rng = random.Random(6)
    with serving(Settings(db=tmp_path / "db")) as running:
        stalled = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(50)]
        try:
            stalled[0].sendall(PREFACE[:5])  # and one that stops mid-preface
            for payload in hostile_payloads(rng):
                send_raw(running.port, payload)
            assert_serving(running)
        finally:
            for s in stalled:
                s.close()
        assert_serving(running)


@pytest.mark.parametrize(
    "method",
    [CHECK, "/ceir.v1.EquipmentIdentityRegister/CheckIMEIBatch",
     "/ceir.v1.EquipmentIdentityRegister/CheckPacked", "/ceir.v1.DeviceCheck/LookupDevice"],
)  # fmt: skip
def test_malformed_protobuf_gets_invalid_argument_quietly(
    tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bodies that are not the request message get INVALID_ARGUMENT, no traceback in the log."""
    rng = random.Random(method)
    bodies = [
        b"\xff" * 8,
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x0a\x05ab",
        *(rng.randbytes(64) for _ in range(20)),
    ]
    settings = Settings(db=tmp_path / "db", consumer_rate=0)
    with serving(settings) as running:
        with running.channel() as ch:
            call = ch.unary_unary(method)
            codes = set()
            for body in bodies:
                try:
                    call(body, timeout=5)
                except grpc.RpcError as exc:
                    codes.add(exc.code())
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "log flooded"
        assert_serving(running)


def test_an_oversized_message_is_refused_with_resource_exhausted(tmp_path: Path) -> None:
    """A request above --max-message-bytes is refused; the server goes on."""
    settings = Settings(db=tmp_path / "db", max_message_bytes=64 * 1024)
    with serving(settings) as running:
        with running.channel() as ch, pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/ceir.v1.EquipmentIdentityRegister/CheckPacked")(
                b"\x0a" + b"\x80\x80\x08" + b"\x00" * 131072, timeout=5
            )
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert_serving(running)


def test_an_expired_deadline_ends_the_call_and_the_server_goes_on(tmp_path: Path) -> None:
    """A deadline already past is honoured (DEADLINE_EXCEEDED); the server is not held."""
    with serving(Settings(db=tmp_path / "db")) as running:
        with running.channel() as ch:
            stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
            batch = eir_pb2.CheckIMEIBatchRequest(
                requests=[eir_pb2.CheckIMEIRequest(imei="352099001761481")] * 10_000
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.CheckIMEIBatch(batch, timeout=0.0001)
            assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert_serving(running)
