"""The access table and interceptor: authentication, authorisation, limits, the principal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ceir.config import Settings
from ceir.network import n5g_eir
from ceir.security.principals import OPEN, Principal, Role, current
from ceir.security.tokens import TokenBook
from ceir.server import app as server_mod
from ceir.server.access import (
    DENIED,
    METHOD_RULES,
    UNAUTHENTICATED,
    AccessInterceptor,
    Rule,
    StreamLimits,
)
from ceir.store import open_store
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, eir_pb2, eir_pb2_grpc
from tests._serving import serving

REGISTERED = "352099001761481"


def registered_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every method create_server registers, seen by spying on the aio server."""
    seen: set[str] = set()
    real = grpc.aio.server

    def spying(*args: Any, **kwargs: Any) -> Any:
        srv = real(*args, **kwargs)
        add = srv.add_generic_rpc_handlers

        def record(handlers: Any) -> None:
            for h in handlers:
                seen.update(h._method_handlers)  # full names: /package.Service/Method
            add(handlers)

        srv.add_generic_rpc_handlers = record
        return srv

    monkeypatch.setattr(server_mod.grpc.aio, "server", spying)
    # grpc.aio.server() wants a current event loop: give it its own, whatever ran before.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with open_store(tmp_path / "db") as store:
            server_mod.create_server(Settings(db=tmp_path / "db", port=0), store)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return seen


def test_every_registered_rpc_is_in_the_access_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each RPC of each service the server registers (now or later) has a rule, and vice
    versa; the N5g-eir face's operation has one too."""
    methods = registered_methods(tmp_path, monkeypatch)
    assert len(methods) >= 9
    grpc_rules = {name for name in METHOD_RULES if name.startswith("/")}
    assert sorted(methods - grpc_rules) == [], "add these RPCs to METHOD_RULES"
    assert sorted(grpc_rules - methods) == [], "stale entries in METHOD_RULES"
    assert set(n5g_eir.OPERATIONS) <= METHOD_RULES.keys(), "add N5g-eir to METHOD_RULES"


def test_every_rule_admits_admin_so_the_open_default_works() -> None:
    """With no security every caller is the OPEN admin, so every rule must admit admins."""
    assert OPEN.role is Role.ADMIN
    assert all(Role.ADMIN in rule.roles for rule in METHOD_RULES.values())


def test_open_mode_serves_every_lookup_without_credentials(tmp_path: Path) -> None:
    """Without security configured, the EIR, the consumer check and health answer anyone."""
    with serving(Settings(db=tmp_path / "db")) as running, running.channel() as ch:
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        assert eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=REGISTERED)).imei == REGISTERED
        batch = eir_pb2.CheckIMEIBatchRequest(requests=[eir_pb2.CheckIMEIRequest(imei=REGISTERED)])
        assert len(eir.CheckIMEIBatch(batch).responses) == 1
        assert [len(r.responses) for r in eir.CheckIMEIStream(iter([batch, batch]))] == [1, 1]
        dc = device_check_pb2_grpc.DeviceCheckStub(ch)
        answer = dc.LookupDevice(device_check_pb2.LookupDeviceRequest(imei=REGISTERED))
        assert answer.state == device_check_pb2.DEVICE_STATE_REGISTERED
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """A server with bearer tokens for an operator, a consumer and an admin."""
    book = TokenBook()
    secrets: dict[str, str] = {}
    for name, role, op in (
        ("telkomsel", Role.OPERATOR, "510-10"),
        ("portal", Role.CONSUMER, ""),
        ("ops", Role.ADMIN, ""),
    ):
        book, secrets[name] = book.add(name, role, op)
    book.save(tmp_path / "tokens.json")
    settings = Settings(db=tmp_path / "db", tokens=tmp_path / "tokens.json")
    with serving(settings) as running:
        yield running, secrets


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def check_imei(ch: grpc.Channel, metadata: Any = None) -> Any:
    stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
    return stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=REGISTERED), metadata=metadata)


def test_unknown_callers_get_unauthenticated_without_detail(token_server: Any) -> None:
    """No token, a wrong token or a malformed header: UNAUTHENTICATED, 'authentication required'."""
    running, _ = token_server
    with running.channel() as ch:
        for metadata in (None, bearer("ceir_wrong"), (("authorization", "Basic eA=="),)):
            with pytest.raises(grpc.RpcError) as err:
                check_imei(ch, metadata)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert err.value.details() == UNAUTHENTICATED


def test_forbidden_calls_get_permission_denied_without_detail(token_server: Any) -> None:
    """A consumer calling CheckIMEI, an operator calling reflection: PERMISSION_DENIED, no hint."""
    running, secrets = token_server
    with running.channel() as ch:
        with pytest.raises(grpc.RpcError) as err:
            check_imei(ch, bearer(secrets["portal"]))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details() == DENIED
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ServerReflectionInfo(iter([request]), metadata=bearer(secrets["telkomsel"])))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        answers = list(stub.ServerReflectionInfo(iter([request]), metadata=bearer(secrets["ops"])))
        assert answers[0].list_services_response.service


def test_allowed_roles_are_served(token_server: Any) -> None:
    """An operator token may check IMEIs; a consumer token may use DeviceCheck."""
    running, secrets = token_server
    with running.channel() as ch:
        assert check_imei(ch, bearer(secrets["telkomsel"])).imei == REGISTERED
        dc = device_check_pb2_grpc.DeviceCheckStub(ch)
        answer = dc.LookupDevice(
            device_check_pb2.LookupDeviceRequest(imei=REGISTERED),
            metadata=bearer(secrets["portal"]),
        )
        assert answer.allowed


def test_health_is_public_even_with_security(token_server: Any) -> None:
    """Load-balancer probes need no credentials."""
    running, _ = token_server
    with running.channel() as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_unregistered_method_is_refused_like_a_forbidden_one(token_server: Any) -> None:
    """With security on, a made-up method is not revealed as UNIMPLEMENTED to strangers."""
    running, secrets = token_server
    with running.channel() as ch:
        call = ch.unary_unary("/ceir.v1.Secret/Dump")
        with pytest.raises(grpc.RpcError) as err:
            call(b"")
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            call(b"", metadata=bearer(secrets["ops"]))
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_denials_are_logged_with_principal_but_never_the_token(
    token_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The log names who was denied what; the secret token appears nowhere."""
    running, secrets = token_server
    caplog.set_level(logging.INFO, "ceir.server.access")
    with running.channel() as ch, contextlib.suppress(grpc.RpcError):
        check_imei(ch, bearer(secrets["portal"]))
    assert "denied /ceir.v1.EquipmentIdentityRegister/CheckIMEI to consumer:portal" in caplog.text
    assert secrets["portal"] not in caplog.text


# -- the interceptor on its own: the principal in handlers, stream limits -----------------

TEST_RULES = {
    "/t.T/Unary": Rule(frozenset({Role.OPERATOR})),
    "/t.T/ServerStream": Rule(frozenset({Role.OPERATOR})),
    "/t.T/ClientStream": Rule(frozenset({Role.OPERATOR})),
    "/t.T/Both": Rule(frozenset({Role.OPERATOR})),
}


async def _unary(request: bytes, context: Any) -> bytes:
    return current().label.encode()


async def _server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield current().label.encode()


async def _client_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
    n = 0
    async for _ in requests:
        n += 1
    return f"{current().label} {n}".encode()


async def _both(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for r in requests:
        yield current().label.encode() + b" " + r


@contextlib.contextmanager
def bare_server(gate: AccessInterceptor) -> Iterator[str]:
    """An aio server with only the test service behind *gate*; yields its address."""
    loop = asyncio.new_event_loop()
    handlers = grpc.method_handlers_generic_handler(
        "t.T",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "Both": grpc.stream_stream_rpc_method_handler(_both),
        },
    )

    async def start() -> Any:
        srv = grpc.aio.server(interceptors=[gate])
        srv.add_generic_rpc_handlers((handlers,))
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        return srv, port

    import threading

    srv, port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(srv.stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def gate_with_operator(**kwargs: Any) -> tuple[AccessInterceptor, str]:
    book, token = TokenBook().add("xl", Role.OPERATOR, "510-11")
    return AccessInterceptor(tokens=book, rules=TEST_RULES, **kwargs), token


def test_handlers_of_every_kind_see_the_callers_principal() -> None:
    """Unary, server-, client- and bidi-streaming handlers read the principal via current()."""
    gate, token = gate_with_operator()
    md = bearer(token)
    with bare_server(gate) as address, grpc.insecure_channel(address) as ch:
        assert ch.unary_unary("/t.T/Unary")(b"", metadata=md) == b"operator:xl@510-11"
        assert list(ch.unary_stream("/t.T/ServerStream")(b"", metadata=md)) == [
            b"operator:xl@510-11"
        ]
        got = ch.stream_unary("/t.T/ClientStream")(iter([b"a", b"b"]), metadata=md)
        assert got == b"operator:xl@510-11 2"
        both = list(ch.stream_stream("/t.T/Both")(iter([b"1"]), metadata=md))
        assert both == [b"operator:xl@510-11 1"]


def test_a_stream_longer_than_the_limit_is_ended() -> None:
    """More than max_messages in one client stream: RESOURCE_EXHAUSTED."""
    gate, token = gate_with_operator(stream_limits=StreamLimits(max_messages=3))
    with bare_server(gate) as address, grpc.insecure_channel(address) as ch:
        ok = ch.stream_unary("/t.T/ClientStream")(iter([b"x"] * 3), metadata=bearer(token))
        assert ok.endswith(b" 3")
        with pytest.raises(grpc.RpcError) as err:
            list(ch.stream_stream("/t.T/Both")(iter([b"x"] * 4), metadata=bearer(token)))
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_silent_stream_is_ended_after_the_idle_time() -> None:
    """A client that opens a stream and sends nothing is cut off after `idle` seconds."""
    gate, token = gate_with_operator(stream_limits=StreamLimits(idle=0.3))

    def silent() -> Iterator[bytes]:
        yield b"first"
        import time

        time.sleep(3)
        yield b"late"

    with bare_server(gate) as address, grpc.insecure_channel(address) as ch:
        call = ch.stream_stream("/t.T/Both")(silent(), metadata=bearer(token), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_principal_labels() -> None:
    """Audit labels read role:name[@operator]."""
    assert Principal("telkomsel", Role.OPERATOR, "510-10").label == "operator:telkomsel@510-10"
    assert Principal("bea", Role.CUSTOMS).label == "customs:bea"


def test_a_method_is_gated_once_and_each_call_is_still_checked() -> None:
    """The gated handler is built on a method's first call and reused; every call is still
    authenticated (a good token is served, then a bad one refused, on the same handler)."""
    gate, token = gate_with_operator()
    with bare_server(gate) as address, grpc.insecure_channel(address) as ch:
        call = ch.unary_unary("/t.T/Unary")
        assert call(b"", metadata=bearer(token)) == b"operator:xl@510-11"
        gated = dict(gate._gated)
        assert call(b"", metadata=bearer(token)) == b"operator:xl@510-11"
        with pytest.raises(grpc.RpcError) as err:
            call(b"", metadata=bearer("not-a-token"))
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert gate._gated == gated
        assert len(gated) == 1


def test_a_new_handler_object_for_a_method_gets_its_own_gate() -> None:
    """The cache is keyed on the handler's identity, so a re-registered handler is used."""
    gate = AccessInterceptor(rules=TEST_RULES | {"/t.T/Open": Rule(frozenset({Role.ADMIN}))})
    first = grpc.unary_unary_rpc_method_handler(_unary)
    second = grpc.unary_unary_rpc_method_handler(_unary)
    details = type("Details", (), {"method": "/t.T/Open"})()

    async def continuation_to(handler: Any) -> Any:
        async def continuation(_: Any) -> Any:
            return handler

        return await gate.intercept_service(continuation, details)

    a = asyncio.run(continuation_to(first))
    assert asyncio.run(continuation_to(first)) is a
    assert asyncio.run(continuation_to(second)) is not a


def test_only_open_unlimited_methods_skip_the_per_call_check() -> None:
    """admitted(): OPEN without security for rules that admit admins and are not rate
    limited; None (each call checked) with security, limits or roles without admin."""
    from ceir.server.ratelimit import RateLimiter

    rules = {
        "/t.T/Plain": Rule(frozenset({Role.ADMIN})),
        "/t.T/NoAdmin": Rule(frozenset({Role.OPERATOR})),
        "/t.T/Limited": Rule(frozenset({Role.ADMIN}), rate_limited=True),
        "/t.T/Writes": Rule(frozenset({Role.ADMIN}), write_limited=True),
    }
    open_gate = AccessInterceptor(rules=rules)
    assert open_gate.admitted("/t.T/Plain") is OPEN
    assert open_gate.admitted("/t.T/NoAdmin") is None
    assert open_gate.admitted("/t.T/Unknown") is None
    assert open_gate.admitted("/t.T/Limited") is OPEN  # no limiter configured
    limited = AccessInterceptor(
        rules=rules, limiter=RateLimiter(1, 1), write_limiter=RateLimiter(1, 1)
    )
    assert limited.admitted("/t.T/Limited") is None
    assert limited.admitted("/t.T/Writes") is None
    assert limited.admitted("/t.T/Plain") is OPEN
    secure, _ = gate_with_operator()
    assert secure.admitted("/t.T/Unary") is None
