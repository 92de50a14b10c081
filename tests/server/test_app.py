"""The real server over real gRPC: every RPC, malformed and oversized input, ordering."""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.config import UnknownStatus
from ceir.imei import check_digit, parse
from ceir.record import Reason, Source, Status
from ceir.store import demo
from ceir.v1 import device_check_pb2, eir_pb2
from tests.conftest import RunningServer, run_server

TIMEOUT = 10
REGISTERED = "352099001761481"
STOLEN = "352099001761499"
TEMPORARY = "860123450000012"
EXPIRED = "860123450000020"
UNREGISTERED = "352099009999992"

Request = eir_pb2.CheckIMEIRequest
Batch = eir_pb2.CheckIMEIBatchRequest


def check(server: RunningServer, imei: str, **fields: str) -> eir_pb2.CheckIMEIResponse:
    return server.eir.CheckIMEI(Request(imei=imei, **fields), timeout=TIMEOUT)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def demo_record(server: RunningServer, imei: str) -> demo.DemoDevice:
    return next(d for d in demo.devices(server.loaded_at) if d.imei == imei)


# -- CheckIMEI ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("imei", "status", "reason", "source"),
    [
        (REGISTERED, Status.WHITELISTED, Reason.REGISTERED, Source.MANUFACTURER),
        ("356868000041418", Status.WHITELISTED, Reason.REGISTERED, Source.CUSTOMS),
        ("490154203237518", Status.WHITELISTED, Reason.GRANDFATHERED, Source.OPERATOR),
        (TEMPORARY, Status.WHITELISTED, Reason.TEMPORARY, Source.OPERATOR),
        (EXPIRED, Status.BLACKLISTED, Reason.EXPIRED, Source.OPERATOR),
        ("012345000000013", Status.WHITELISTED, Reason.EXEMPT, Source.MINISTRY),
        (STOLEN, Status.BLACKLISTED, Reason.LOST_STOLEN, Source.MANUFACTURER),
        (UNREGISTERED, Status.BLACKLISTED, Reason.NOT_REGISTERED, Source.NONE),
    ],
)
def test_check_imei_answers_every_demo_state(
    demo_server: RunningServer, imei: str, status: Status, reason: Reason, source: Source
) -> None:
    """CheckIMEI gives each demo device its status, reason, source, canonical IMEI and TAC."""
    r = check(demo_server, imei[:14], request_id="abc-1", imsi="510101234567890")
    assert (r.status, r.reason, r.source) == (status, reason, source)
    assert (r.imei, r.tac, r.request_id, r.detail, r.svn) == (imei, imei[:8], "abc-1", "", "")


def test_check_imei_expires_at_for_temporary(demo_server: RunningServer) -> None:
    """A temporary registration carries expires_at; an expired one too; others none."""
    for imei in (TEMPORARY, EXPIRED):
        record = demo_record(demo_server, imei).record
        assert record is not None
        r = check(demo_server, imei)
        assert r.HasField("expires_at")
        assert r.expires_at.seconds == record.expires_at
    assert not check(demo_server, REGISTERED).HasField("expires_at")


def test_check_imei_imeisv_keeps_svn(demo_server: RunningServer) -> None:
    """A 16-digit IMEISV is answered for its body, with the software version echoed."""
    r = check(demo_server, REGISTERED[:14] + "07")
    assert (r.status, r.imei, r.svn) == (Status.WHITELISTED, REGISTERED, "07")


@pytest.mark.parametrize(
    ("imei", "detail"),
    [
        ("", "IMEI is empty"),
        ("35209900176148A", "IMEI must be digits only; found 'A' at position 15"),
        ("3520990017614F", "IMEI must be digits only; found 'F' at position 14"),
        ("35-209900-176148-1", "IMEI must be digits only; found '-' at position 3"),
        (
            "3520990017",
            "IMEI has 10 digits; expected 14 (no check digit), 15 (with check digit) "
            "or 16 (IMEISV)",
        ),
        (
            "35209900176148123",
            "IMEI has 17 digits; expected 14 (no check digit), 15 (with check digit) "
            "or 16 (IMEISV)",
        ),
        ("352099001761482", "check digit 2 does not match; expected 1"),
        ("\x00" * 15, "IMEI must be digits only; found '\\x00' at position 1"),
        ("٣٥٢٠٩٩٠٠١٧٦١٤٨١", "IMEI must be digits only; found '٣' at position 1"),
    ],
)
def test_malformed_imei_is_blacklisted_not_an_error(
    demo_server: RunningServer, imei: str, detail: str
) -> None:
    """Malformed IMEIs get BLACKLISTED / INVALID_IMEI with the problem in detail, no RPC error."""
    r = check(demo_server, imei, request_id="x")
    assert (r.status, r.reason, r.source) == (Status.BLACKLISTED, Reason.INVALID_IMEI, Source.NONE)
    assert (r.imei, r.tac, r.request_id, r.detail) == ("", "", "x", detail)


@settings(max_examples=60)
@given(st.lists(st.one_of(st.text(max_size=20), st.from_regex(r"\A\d{12,17}\Z")), max_size=30))
def test_any_text_gets_a_definitive_answer(demo_server: RunningServer, imeis: list[str]) -> None:
    """Whatever strings a batch holds, each gets WHITELISTED/BLACKLISTED, never an RPC error."""
    batch = Batch(requests=[Request(imei=t) for t in imeis])
    responses = demo_server.eir.CheckIMEIBatch(batch, timeout=TIMEOUT).responses
    assert len(responses) == len(imeis)
    for text, r in zip(imeis, responses, strict=True):
        assert r.status in (Status.WHITELISTED, Status.BLACKLISTED)
        try:
            canonical = parse(text).canonical
        except ValueError:
            assert (r.reason, r.imei) == (Reason.INVALID_IMEI, "")
            assert r.detail
        else:
            assert (r.imei, r.detail) == (canonical, "")


def test_junk_imei_is_flagged_suspicious(demo_server: RunningServer) -> None:
    """An all-zero IMEI is answered by policy and flagged suspicious."""
    r = check(demo_server, "000000000000000")
    assert (r.reason, r.suspicious) == (Reason.NOT_REGISTERED, True)
    assert not check(demo_server, REGISTERED).suspicious


# -- CheckIMEIBatch ----------------------------------------------------------------


def mixed_imeis(n: int, seed: int) -> list[str]:
    """Demo IMEIs in 14/15/16-digit forms, random valid IMEIs and malformed ones."""
    rng = random.Random(seed)
    demo_imeis = [d.imei for d in demo.devices(0)]
    out = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            imei = rng.choice(demo_imeis)
            out.append(rng.choice([imei, imei[:14], imei[:14] + "01"]))
        elif kind == 1:
            body = f"{rng.randrange(10**14):014d}"
            out.append(body + str(check_digit(body)))
        elif kind == 2:
            out.append(rng.choice(["", "abc", "35209900176148X", "352099001761482", "123"]))
        else:
            out.append(f"{rng.randrange(10**14):014d}")
    return out


def assert_answers(imeis: list[str], responses: object, prefix: str) -> None:
    """responses[i] answers imeis[i]: request_id, canonical IMEI and reason agree."""
    answered = list(responses)  # type: ignore[call-overload]
    assert len(answered) == len(imeis)
    states = {d.imei: d for d in demo.devices(0)}
    for i, (imei, r) in enumerate(zip(imeis, answered, strict=True)):
        assert r.request_id == f"{prefix}{i}"
        try:
            parsed = parse(imei)
        except ValueError:
            assert r.reason == Reason.INVALID_IMEI
            assert r.detail
            continue
        assert r.imei == parsed.canonical
        device = states.get(parsed.canonical)
        if device is None or device.record is None:
            assert r.reason == Reason.NOT_REGISTERED
        else:
            assert r.reason != Reason.NOT_REGISTERED


def test_batch_of_10000_keeps_order(demo_server: RunningServer) -> None:
    """A batch of 10,000 mixed requests is answered in request order, each correctly."""
    imeis = mixed_imeis(10_000, seed=1)
    batch = Batch(requests=[Request(imei=t, request_id=f"b{i}") for i, t in enumerate(imeis)])
    response = demo_server.eir.CheckIMEIBatch(batch, timeout=TIMEOUT)
    assert_answers(imeis, response.responses, "b")
    singles = [check(demo_server, t) for t in imeis[:50]]
    for single, batched in zip(singles, response.responses, strict=False):
        batched_copy = eir_pb2.CheckIMEIResponse()
        batched_copy.CopyFrom(batched)
        batched_copy.request_id = ""
        assert batched_copy == single


def test_empty_batch(demo_server: RunningServer) -> None:
    """An empty batch gets an empty answer, not an error."""
    response = demo_server.eir.CheckIMEIBatch(Batch(), timeout=TIMEOUT)
    assert list(response.responses) == []


def test_batch_over_limit_is_invalid_argument(demo_server: RunningServer) -> None:
    """10,001 requests in one message: INVALID_ARGUMENT saying the limit."""
    batch = Batch(requests=[Request(imei=REGISTERED)] * 10_001)
    err = rpc_error(lambda: demo_server.eir.CheckIMEIBatch(batch, timeout=TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "batch holds 10001 requests; at most 10000 are allowed per message"


def test_undecodable_batch_is_invalid_argument(demo_server: RunningServer) -> None:
    """Bytes that are no CheckIMEIBatchRequest: INVALID_ARGUMENT in one line, not INTERNAL."""
    call = demo_server.channel.unary_unary(
        "/ceir.v1.EquipmentIdentityRegister/CheckIMEIBatch",
        request_serializer=None,
        response_deserializer=None,
    )
    err = rpc_error(lambda: call(b"\x0a\x05\x0a\x0f12", timeout=TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "the message is not a CheckIMEIBatchRequest"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with a 64 KiB message limit, a 100-request batch limit, grey-listing unknowns."""
    with run_server(
        tmp_path_factory.mktemp("small") / "store",
        max_message_bytes=64 * 1024,
        max_batch=100,
        unknown_status=UnknownStatus.GREYLISTED,
    ) as running:
        yield running


def test_message_over_size_limit_is_resource_exhausted(small_server: RunningServer) -> None:
    """A request message above max_message_bytes is refused with RESOURCE_EXHAUSTED."""
    batch = Batch(requests=[Request(imei=REGISTERED, request_id="x" * 70_000)])
    err = rpc_error(lambda: small_server.eir.CheckIMEIBatch(batch, timeout=TIMEOUT))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_answer_over_size_limit_is_resource_exhausted(tmp_path: Path) -> None:
    """A request under the limit whose answer would exceed it ends in RESOURCE_EXHAUSTED."""
    with run_server(tmp_path / "store", max_message_bytes=64 * 1024) as server:
        batch = Batch(requests=[Request(imei=REGISTERED[:14])] * 3000)
        assert batch.ByteSize() < 64 * 1024
        err = rpc_error(lambda: server.eir.CheckIMEIBatch(batch, timeout=TIMEOUT))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert check(server, REGISTERED).status == Status.WHITELISTED


def test_configured_batch_limit(small_server: RunningServer) -> None:
    """The configured max_batch is enforced exactly: 100 pass, 101 are refused."""
    ok = Batch(requests=[Request(imei=REGISTERED)] * 100)
    assert len(small_server.eir.CheckIMEIBatch(ok, timeout=TIMEOUT).responses) == 100
    over = Batch(requests=[Request(imei=REGISTERED)] * 101)
    err = rpc_error(lambda: small_server.eir.CheckIMEIBatch(over, timeout=TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_greylist_regime(small_server: RunningServer) -> None:
    """With unknown_status greylisted an unregistered IMEI is GREYLISTED and may connect."""
    r = check(small_server, UNREGISTERED)
    assert (r.status, r.reason) == (Status.GREYLISTED, Reason.NOT_REGISTERED)
    assert check(small_server, STOLEN).status == Status.BLACKLISTED
    device = small_server.device_check.LookupDevice(
        device_check_pb2.LookupDeviceRequest(imei=UNREGISTERED), timeout=TIMEOUT
    )
    assert device.state == device_check_pb2.DEVICE_STATE_NOT_REGISTERED
    assert device.allowed


# -- CheckIMEIStream ---------------------------------------------------------------


def test_stream_answers_each_message_in_order(demo_server: RunningServer) -> None:
    """One response message per request message, in order; one-IMEI messages included."""
    sizes = [1, 1, 3, 0, 1, 250, 1, 2, 1]
    imeis = mixed_imeis(sum(sizes), seed=2)
    messages, start = [], 0
    for size in sizes:
        chunk = imeis[start : start + size]
        messages.append(
            Batch(
                requests=[Request(imei=t, request_id=f"s{start + j}") for j, t in enumerate(chunk)]
            )
        )
        start += size
    answers = list(demo_server.eir.CheckIMEIStream(iter(messages), timeout=TIMEOUT))
    assert [len(a.responses) for a in answers] == sizes
    assert_answers(imeis, [r for a in answers for r in a.responses], "s")


def test_stream_message_over_limit_ends_the_stream(demo_server: RunningServer) -> None:
    """A stream message beyond the batch limit ends the call with INVALID_ARGUMENT."""
    messages = [
        Batch(requests=[Request(imei=REGISTERED)]),
        Batch(requests=[Request(imei=REGISTERED)] * 10_001),
    ]
    call = demo_server.eir.CheckIMEIStream(iter(messages), timeout=TIMEOUT)
    assert len(next(call).responses) == 1
    err = rpc_error(lambda: next(call))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10001 requests" in err.details()


def test_empty_stream(demo_server: RunningServer) -> None:
    """A stream with no messages ends cleanly with no answers."""
    assert list(demo_server.eir.CheckIMEIStream(iter([]), timeout=TIMEOUT)) == []


# -- CheckPacked -------------------------------------------------------------------


def test_packed_matches_string_answers(demo_server: RunningServer) -> None:
    """CheckPacked answers (reason << 2) | status per key, as CheckIMEI does for the same IMEI."""
    imeis = [d.imei for d in demo.devices(0)] + ["000000000000000"]
    keys = b"".join(parse(i).key for i in imeis) + (10**14).to_bytes(8, "big")
    results = demo_server.eir.CheckPacked(
        eir_pb2.CheckPackedRequest(keys=keys), timeout=TIMEOUT
    ).results
    assert len(results) == len(imeis) + 1
    for imei, byte in zip(imeis, results, strict=False):
        r = check(demo_server, imei)
        assert (byte & 3, byte >> 2) == (r.status, r.reason)
    assert (results[-1] & 3, results[-1] >> 2) == (Status.BLACKLISTED, Reason.INVALID_IMEI)


def test_packed_empty(demo_server: RunningServer) -> None:
    """No keys, no results."""
    assert demo_server.eir.CheckPacked(eir_pb2.CheckPackedRequest(), timeout=TIMEOUT).results == b""


@pytest.mark.parametrize(
    ("keys", "details"),
    [
        (b"\x00" * 13, "keys is 13 bytes long; expected a multiple of 8"),
        (b"\x00" * 8 * 10_001, "batch holds 10001 requests; at most 10000 are allowed per message"),
    ],
)
def test_packed_bad_request(demo_server: RunningServer, keys: bytes, details: str) -> None:
    """Keys of a wrong length or too many keys: INVALID_ARGUMENT saying which."""
    err = rpc_error(
        lambda: demo_server.eir.CheckPacked(eir_pb2.CheckPackedRequest(keys=keys), timeout=TIMEOUT)
    )
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, details)


# -- DeviceCheck -------------------------------------------------------------------


def lookup(server: RunningServer, imei: str) -> device_check_pb2.LookupDeviceResponse:
    return server.device_check.LookupDevice(
        device_check_pb2.LookupDeviceRequest(imei=imei), timeout=TIMEOUT
    )


@pytest.mark.parametrize(
    "typed",
    [
        "35-209900-176148-1",
        "35 209900 176148 1",
        " " + "".join(chr(0xFF10 + int(d)) for d in REGISTERED) + " ",  # fullwidth digits
        REGISTERED,
    ],
)
def test_lookup_device_lenient_input(demo_server: RunningServer, typed: str) -> None:
    """LookupDevice takes what people type and answers in plain terms with brand and model."""
    r = lookup(demo_server, typed)
    assert r == device_check_pb2.LookupDeviceResponse(
        imei=REGISTERED,
        tac="35209900",
        state=device_check_pb2.DEVICE_STATE_REGISTERED,
        summary="Registered: this device can be used on mobile networks.",
        brand="Nusantara",
        model="N1",
        device_type="Smartphone",
        allowed=True,
    )


@pytest.mark.parametrize(
    ("imei", "state", "allowed", "summary"),
    [
        (
            STOLEN,
            device_check_pb2.DEVICE_STATE_BLOCKED,
            False,
            "Blocked: this device has been reported lost or stolen and will not connect.",
        ),
        (
            UNREGISTERED,
            device_check_pb2.DEVICE_STATE_NOT_REGISTERED,
            False,
            "Not registered: this device will not get mobile service.",
        ),
        (
            EXPIRED,
            device_check_pb2.DEVICE_STATE_EXPIRED,
            False,
            "Expired: this device's temporary registration has ended; it will not connect.",
        ),
        (
            "012345000000013",
            device_check_pb2.DEVICE_STATE_REGISTERED,
            True,
            "Registered: this device can be used on mobile networks.",
        ),
    ],
)
def test_lookup_device_states(
    demo_server: RunningServer, imei: str, state: int, allowed: bool, summary: str
) -> None:
    """Blocked, not registered, expired and exempt devices are described in plain words."""
    r = lookup(demo_server, imei)
    assert (r.state, r.allowed, r.summary, r.imei) == (state, allowed, summary, imei)


def test_lookup_device_temporary_has_valid_until(demo_server: RunningServer) -> None:
    """A temporary registration says until when, in the summary and in valid_until."""
    record = demo_record(demo_server, TEMPORARY).record
    assert record is not None
    r = lookup(demo_server, TEMPORARY)
    until = time.strftime("%Y-%m-%d", time.gmtime(record.expires_at))
    assert (r.state, r.allowed) == (device_check_pb2.DEVICE_STATE_TEMPORARY, True)
    assert r.summary == f"Temporarily registered until {until} (UTC); it can connect until then."
    assert r.valid_until.seconds == record.expires_at
    assert (r.brand, r.model, r.device_type) == ("Garuda", "Tab 10", "Tablet")


def test_lookup_device_unknown_tac(demo_server: RunningServer) -> None:
    """A TAC missing from the TAC database leaves brand and model empty."""
    body = "99999999000001"
    r = lookup(demo_server, body)
    assert (r.brand, r.model, r.device_type, r.tac) == ("", "", "", "99999999")
    assert r.imei == body + str(check_digit(body))


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "IMEI is empty"),
        ("35-209900-17614X-1", "IMEI must be digits only; found 'X' at position 16"),
        ("35-417803-685978-2", "check digit 2 does not match; expected 9"),
        (
            "1234",
            "IMEI has 4 digits; expected 14 (no check digit), 15 (with check digit) or 16 (IMEISV)",
        ),
    ],
)
def test_lookup_device_invalid_is_invalid_argument(
    demo_server: RunningServer, typed: str, message: str
) -> None:
    """Invalid consumer input is INVALID_ARGUMENT with the validation message."""
    err = rpc_error(lambda: lookup(demo_server, typed))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_consumer_response_carries_no_internals(demo_server: RunningServer) -> None:
    """The consumer's answer has no source, dates of registration, subscriber or flags."""
    fields = {f.name for f in device_check_pb2.LookupDeviceResponse.DESCRIPTOR.fields}
    assert fields == {
        "imei",
        "state",
        "summary",
        "brand",
        "model",
        "device_type",
        "tac",
        "valid_until",
        "allowed",
    }
    for imei in (REGISTERED, STOLEN, TEMPORARY, "490154203237518", "012345000000013"):
        summary = lookup(demo_server, imei).summary.lower()
        for word in ("manufacturer", "customs", "operator", "ministry", "police", "grandfather"):
            assert word not in summary


# -- health and reflection ---------------------------------------------------------


@pytest.mark.parametrize(
    "service", ["", "ceir.v1.EquipmentIdentityRegister", "ceir.v1.DeviceCheck"]
)
def test_health_serving(demo_server: RunningServer, service: str) -> None:
    """grpc.health.v1.Health reports SERVING for the server and each ceir service."""
    stub = health_pb2_grpc.HealthStub(demo_server.channel)
    r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service(demo_server: RunningServer) -> None:
    """Health answers NOT_FOUND for a service it does not serve."""
    stub = health_pb2_grpc.HealthStub(demo_server.channel)
    err = rpc_error(
        lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope.Nope"), timeout=TIMEOUT)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_services(demo_server: RunningServer) -> None:
    """Server reflection lists the services and serves their descriptors (grpcurl works)."""
    database = ProtoReflectionDescriptorDatabase(demo_server.channel)
    assert set(database.get_services()) >= {
        "ceir.v1.EquipmentIdentityRegister",
        "ceir.v1.DeviceCheck",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("ceir.v1.EquipmentIdentityRegister")
    assert [m.name for m in service.methods] == [
        "CheckIMEI",
        "CheckIMEIBatch",
        "CheckIMEIStream",
        "CheckPacked",
    ]
    lookup_method = pool.FindServiceByName("ceir.v1.DeviceCheck").methods_by_name["LookupDevice"]
    assert lookup_method.output_type.full_name == "ceir.v1.LookupDeviceResponse"


# -- process life ------------------------------------------------------------------


def test_server_stops_and_releases_port(tmp_path: Path) -> None:
    """After the fixture's stop, the port no longer answers."""
    with run_server(tmp_path / "store") as running:
        assert check(running, REGISTERED).status == Status.WHITELISTED
        port = running.port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        err = rpc_error(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=2))
        assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_stop_reports_not_serving_and_drains_in_flight_calls(tmp_path: Path) -> None:
    """On stop, health watchers see NOT_SERVING and an open stream is still answered."""
    with run_server(tmp_path / "store") as running:
        watch = health_pb2_grpc.HealthStub(running.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        outbox: queue.Queue[Batch | None] = queue.Queue()
        stream = running.eir.CheckIMEIStream(iter(outbox.get, None), timeout=TIMEOUT)
        outbox.put(Batch(requests=[Request(imei=REGISTERED)]))
        assert next(stream).responses[0].reason == Reason.REGISTERED

        stopping = running.begin_stop(grace=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # a watch never ends by itself; the drain would wait out the grace
        assert not stopping.done()
        outbox.put(Batch(requests=[Request(imei=STOLEN)]))
        assert next(stream).responses[0].reason == Reason.LOST_STOLEN
        outbox.put(None)
        assert list(stream) == []
        stopping.result(timeout=TIMEOUT)
