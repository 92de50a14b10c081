"""A client in another language, built from proto/ alone, calls every RPC.

tests/interop/client.js (Node.js, @grpc/grpc-js + @grpc/proto-loader) loads
proto/ceir/v1/*.proto at run time, calls every RPC of EquipmentIdentityRegister,
DeviceCheck and Health, and prints the answers; they must equal what the Python stubs
get for the same requests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from ceir.imei import parse
from ceir.record import Reason, Status
from ceir.store import demo
from ceir.v1 import device_check_pb2, eir_pb2
from tests.conftest import RunningServer

INTEROP = Path(__file__).resolve().parents[1] / "interop"
PLAN = {
    "imeis": [
        *(d.imei for d in demo.devices(0)),
        "35209900176148",
        "3520990017614807",
        "",
        "35209900176148X",
        "352099001761482",
        "12",
        "000000000000000",
    ],
    "lookups": ["35-209900-176148-1", "860123450000012", "352099001761499", "35209900176148X"],
    "packed_bodies": [*(d.imei[:14] for d in demo.devices(0)), "99999999999999", "100000000000000"],
    "stream_messages": [["352099001761481"], ["352099001761499", "860123450000012", "x"], []],
}
STAMP = "node_modules/.ceir-package-lock.sha256"


def node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the interop client and are not installed")
    return node, npm


def install(npm: str) -> None:
    """`npm ci` once per package-lock.json: node_modules is reused while the lock is the same."""
    lock = hashlib.sha256((INTEROP / "package-lock.json").read_bytes()).hexdigest()
    stamp = INTEROP / STAMP
    if stamp.exists() and stamp.read_text() == lock:
        return
    subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=INTEROP,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(lock)


@pytest.fixture(scope="module")
def node_answers(demo_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What the Node.js client got from the demo server, as parsed JSON."""
    node, npm = node_tools()
    install(npm)
    plan = tmp_path_factory.mktemp("interop") / "plan.json"
    plan.write_text(json.dumps(PLAN))
    done = subprocess.run(
        [node, "client.js", str(demo_server.port), str(plan)],
        cwd=INTEROP,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def as_node(message: Message) -> dict[str, Any]:
    """A Python answer in the shape proto-loader gives Node: every field, enums by name,
    64-bit integers as strings, unset messages as null."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [as_node(v) for v in value]
        elif field.message_type is not None:
            out[field.name] = as_node(value) if message.HasField(field.name) else None
        elif field.enum_type is not None:
            out[field.name] = field.enum_type.values_by_number[value].name
        elif field.type == field.TYPE_INT64:
            out[field.name] = str(value)
        else:
            out[field.name] = value
    return out


def test_node_check_imei_equals_python(demo_server: RunningServer, node_answers: Any) -> None:
    """CheckIMEI from Node answers exactly what it answers Python, field by field."""
    assert len(node_answers["check_imei"]) == len(PLAN["imeis"])
    for i, (imei, got) in enumerate(zip(PLAN["imeis"], node_answers["check_imei"], strict=True)):
        want = demo_server.eir.CheckIMEI(
            eir_pb2.CheckIMEIRequest(imei=imei, request_id=f"u{i}"), timeout=10
        )
        assert got == as_node(want)
    first = node_answers["check_imei"][0]
    assert (first["status"], first["reason"], first["imei"]) == (
        "EQUIPMENT_STATUS_WHITELISTED",
        "REASON_REGISTERED",
        "352099001761481",
    )


def test_node_batch_equals_python(demo_server: RunningServer, node_answers: Any) -> None:
    """CheckIMEIBatch from Node: same answers as Python, in request order."""
    requests = [
        eir_pb2.CheckIMEIRequest(imei=imei, request_id=f"b{i}", imsi="510101234567890")
        for i, imei in enumerate(PLAN["imeis"])
    ]
    want = demo_server.eir.CheckIMEIBatch(eir_pb2.CheckIMEIBatchRequest(requests=requests))
    assert node_answers["check_imei_batch"] == as_node(want)


def test_node_stream_answers_each_message(node_answers: Any) -> None:
    """CheckIMEIStream from Node: one answer per message, in order, empty message included."""
    stream = node_answers["check_imei_stream"]
    assert "error" not in stream
    got = [[(r["imei"], r["reason"]) for r in a["responses"]] for a in stream["answers"]]
    assert got == [
        [("352099001761481", "REASON_REGISTERED")],
        [
            ("352099001761499", "REASON_LOST_STOLEN"),
            ("860123450000012", "REASON_TEMPORARY"),
            ("", "REASON_INVALID_IMEI"),
        ],
        [],
    ]


def test_node_packed_equals_python(demo_server: RunningServer, node_answers: Any) -> None:
    """CheckPacked from Node (keys packed with BigInt) gets the bytes Python gets."""
    keys = b"".join(int(b).to_bytes(8, "big") for b in PLAN["packed_bodies"])
    want = demo_server.eir.CheckPacked(eir_pb2.CheckPackedRequest(keys=keys)).results
    assert bytes(node_answers["check_packed"]["results"]) == want
    assert want[-1] == (Reason.INVALID_IMEI << 2) | Status.BLACKLISTED


def test_node_lookup_device(demo_server: RunningServer, node_answers: Any) -> None:
    """LookupDevice from Node: the same consumer answers, and INVALID_ARGUMENT with the message."""
    valid = PLAN["lookups"][:-1]
    got = node_answers["lookup_device"]
    for typed, answer in zip(valid, got, strict=False):
        want = demo_server.device_check.LookupDevice(
            device_check_pb2.LookupDeviceRequest(imei=typed), timeout=10
        )
        assert answer == as_node(want)
        assert answer["imei"] == parse(typed.replace("-", "")).canonical
    assert got[-1] == {
        "error": {
            "code": grpc.StatusCode.INVALID_ARGUMENT.value[0],
            "code_name": "INVALID_ARGUMENT",
            "details": "IMEI must be digits only; found 'X' at position 15",
        }
    }


def test_node_health(node_answers: Any) -> None:
    """Health from Node: SERVING for the server and both ceir services."""
    assert node_answers["health"] == {
        "": {"status": "SERVING"},
        "ceir.v1.EquipmentIdentityRegister": {"status": "SERVING"},
        "ceir.v1.DeviceCheck": {"status": "SERVING"},
    }


def test_client_loads_only_proto_sources() -> None:
    """The Node client loads the .proto files from proto/, not any generated code."""
    source = (INTEROP / "client.js").read_text()
    assert "'ceir/v1/eir.proto'" in source
    assert "'ceir/v1/device_check.proto'" in source
    assert "_pb" not in source
