"""NRF registration against an NRF stand-in.

No real NRF (free5GC's or Open5GS's, both Go/C services with a MongoDB) can run here, so
the NRF is a stand-in: a real HTTP/2 server (ceir's own h2 layer, a different code path
from the httpx client under test) that implements the three Nnrf_NFManagement
operations the EIR uses and checks each NFProfile against the fields TS 29.510 requires.
"""

from __future__ import annotations

import asyncio
import json
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.network._http2 import Http2Server, Request, Response
from ceir.network.nrf import NrfAgent
from ceir.server.app import create_server
from ceir.store import Store, demo, open_store
from tests.network._faces import LoopThread, configured, running_faces, start_all, stop_all

PREFIX = "/nnrf-nfm/v1/nf-instances/"


def check_profile(instance: str, profile: dict[str, object]) -> list[str]:
    """What is wrong with an NFProfile for an N5g-eir EIR (empty: nothing)."""
    problems = []
    if profile.get("nfInstanceId") != instance:
        problems.append("nfInstanceId differs from the URI")
    try:
        uuid.UUID(instance)
    except ValueError:
        problems.append("nfInstanceId is not a UUID")
    if profile.get("nfType") != "5G_EIR":
        problems.append("nfType")
    if profile.get("nfStatus") != "REGISTERED":
        problems.append("nfStatus")
    timer = profile.get("heartBeatTimer")
    if not isinstance(timer, int) or timer <= 0:
        problems.append("heartBeatTimer")
    if not (profile.get("ipv4Addresses") or profile.get("ipv6Addresses") or profile.get("fqdn")):
        problems.append("no address")
    services = profile.get("nfServices")
    if not isinstance(services, list) or len(services) != 1:
        return [*problems, "nfServices"]
    service = services[0]
    required = ("serviceInstanceId", "serviceName", "versions", "scheme", "nfServiceStatus")
    problems += [f"nfServices[0].{name}" for name in required if name not in service]
    if service.get("serviceName") != "n5g-eir-eic":
        problems.append("serviceName")
    if service.get("scheme") not in ("http", "https"):
        problems.append("scheme")
    versions = service.get("versions") or [{}]
    if versions[0].get("apiVersionInUri") != "v1" or not versions[0].get("apiFullVersion"):
        problems.append("versions")
    endpoints = service.get("ipEndPoints") or [{}]
    if not isinstance(endpoints[0].get("port"), int):
        problems.append("ipEndPoints[0].port")
    return problems


@dataclass
class NrfStandIn:
    """The three NF management operations, recorded; heartBeatTimer answered as 1 s."""

    heartbeat: int = 1
    log: list[tuple[str, str]] = field(default_factory=list)
    profiles: dict[str, dict[str, object]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    forget: bool = False
    """Answer the next heart-beat 404, as an NRF that restarted does."""

    def __call__(self, request: Request) -> Response:
        path = request.path.decode()
        method = request.method.decode()
        self.log.append((method, path))
        if not path.startswith(PREFIX):
            return Response(404, b"{}")
        instance = path.removeprefix(PREFIX)
        if method == "PUT":
            if request.headers.get(b"content-type") != b"application/json":
                self.problems.append("PUT without content-type application/json")
            profile = json.loads(request.body)
            self.problems += check_profile(instance, profile)
            created = instance not in self.profiles
            profile["heartBeatTimer"] = self.heartbeat
            self.profiles[instance] = profile
            return Response(201 if created else 200, json.dumps(profile).encode())
        if method == "PATCH":
            if request.headers.get(b"content-type") != b"application/json-patch+json":
                self.problems.append("PATCH without content-type application/json-patch+json")
            if self.forget or instance not in self.profiles:
                self.forget = False
                self.profiles.pop(instance, None)
                return Response(404, b"{}", b"application/problem+json")
            patch = json.loads(request.body)
            if patch != [{"op": "replace", "path": "/nfStatus", "value": "REGISTERED"}]:
                self.problems.append(f"unexpected patch {patch}")
            return Response(204, b"")
        if method == "DELETE":
            found = self.profiles.pop(instance, None)
            return Response(204 if found else 404, b"")
        return Response(405, b"")


@pytest.fixture
def nrf() -> Iterator[tuple[NrfStandIn, str]]:
    loop = LoopThread()
    stand_in = NrfStandIn()
    server = Http2Server(stand_in, lambda: Response(500, b""))
    port = loop.run(server.listen("127.0.0.1", 0, ssl_context=None, reuse_port=False))
    try:
        yield stand_in, f"http://127.0.0.1:{port}"
    finally:
        loop.run(server.stop(0))
        loop.close()


@pytest.fixture
def demo_store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "db") as store:
        demo.load(store)
        yield store


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_registers_heartbeats_and_deregisters(
    nrf: tuple[NrfStandIn, str], demo_store: Store, tmp_path: Path
) -> None:
    """--nrf: PUT of a complete NFProfile naming the face's bound port, PATCH heart-beats
    at the NRF's heartBeatTimer, a new PUT when the NRF forgot us, DELETE on shutdown."""
    stand_in, url = nrf
    settings = Settings(db=tmp_path, sbi="127.0.0.1:0", nrf=url)
    with running_faces(settings, demo_store) as running:
        agents = [f for f in running.faces if isinstance(f, NrfAgent)]
        assert len(agents) == 1
        instance = agents[0].registration.nf_instance_id
        assert stand_in.log[0] == ("PUT", PREFIX + instance)
        profile = stand_in.profiles[instance]
        endpoint = profile["nfServices"][0]["ipEndPoints"][0]  # type: ignore[index]
        port = running.n5g.port
        assert endpoint == {"transport": "TCP", "port": port, "ipv4Address": "127.0.0.1"}
        wait_for(lambda: stand_in.log.count(("PATCH", PREFIX + instance)) >= 2)
        stand_in.forget = True
        wait_for(lambda: [m for m, _ in stand_in.log].count("PUT") >= 2)
        assert instance in stand_in.profiles
    assert stand_in.log[-1] == ("DELETE", PREFIX + instance)
    assert stand_in.profiles == {}
    assert stand_in.problems == []


def test_an_unreachable_nrf_does_not_stop_the_face(demo_store: Store, tmp_path: Path) -> None:
    """An NRF that is down is logged and retried; the EIR serves and shuts down cleanly."""
    loop = LoopThread()
    try:
        settings = Settings(db=tmp_path, sbi="127.0.0.1:0", nrf="http://127.0.0.1:9")
        doors = configured(settings, demo_store)
        loop.run(start_all(doors))
        agent = next(f for f in doors if isinstance(f, NrfAgent))
        assert not agent.registered
        loop.run(stop_all(doors, 0))
    finally:
        loop.close()


def test_only_worker_zero_registers(demo_store: Store, tmp_path: Path) -> None:
    """The NF is one instance however many workers: the server of the process that does
    the site's background work (worker 0) has the agent, the others do not."""
    settings = Settings(
        db=tmp_path, port=0, sbi="127.0.0.1:0", s13="off", web="off", nrf="http://127.0.0.1:9"
    )
    loop = LoopThread()

    async def agents(background: bool) -> int:
        server, _ = create_server(settings, demo_store, background=background)
        await server.grpc_server.stop(0)
        return sum(isinstance(f, NrfAgent) for f in server.faces)

    try:
        assert loop.run(agents(True)) == 1
        assert loop.run(agents(False)) == 0
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"nrf": "ftp://nrf"}, "not the http"), ({"nrf": "http://nrf", "sbi": "off"}, "needs --sbi")],
)
def test_bad_nrf_settings_are_refused(overrides: dict[str, str], message: str) -> None:
    """--nrf must be an http(s) URL and needs the N5g-eir face."""
    with pytest.raises(ConfigError, match=message):
        Settings(**overrides)  # type: ignore[arg-type]


def test_the_instance_id_is_stable() -> None:
    """A restarted server keeps its nfInstanceId (same host, same address)."""
    from ceir.network.nrf import instance_id

    assert instance_id("127.0.0.1", 7777) == instance_id("127.0.0.1", 7777)
    assert instance_id("127.0.0.1", 7777) != instance_id("127.0.0.1", 7778)


class _HangingNrf:
    """An httpx stand-in whose PUT never answers: the request is out, the answer is not."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def put(self, url: str, json: object) -> object:
        self.calls.append("PUT")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def delete(self, url: str) -> object:
        self.calls.append("DELETE")
        return types.SimpleNamespace(status_code=204)

    async def aclose(self) -> None:
        self.calls.append("close")


def test_a_registration_cut_short_by_the_stop_is_deregistered(
    demo_store: Store, tmp_path: Path
) -> None:
    """A stop that cancels a re-registration in flight still sends the DELETE: the NRF may
    hold the profile the PUT carried (a stale EIR profile at the NRF otherwise)."""
    settings = Settings(db=tmp_path, sbi="127.0.0.1:0", nrf="http://127.0.0.1:9")
    agent = next(f for f in configured(settings, demo_store) if isinstance(f, NrfAgent))
    client = _HangingNrf()

    async def scenario() -> None:
        agent.registration = agent._registration()
        agent._client = client
        agent._task = asyncio.create_task(agent._register())
        await asyncio.sleep(0.05)
        await agent.stop(0)

    asyncio.run(scenario())
    assert client.calls == ["PUT", "DELETE", "close"]
    assert not agent.registered
