"""N5g-eir over HTTP/2: every answer and error shape, from real HTTP/2 clients.

Clients: httpx (h2 prior knowledge), curl ``--http2-prior-knowledge`` and a raw
python-hyper ``h2`` client for PING, garbage and long connections.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from ceir.config import Settings, UnknownAnswer, UnknownStatus
from ceir.lookup import Checker
from ceir.network import n5g_eir
from ceir.policy import Policy
from ceir.record import Status
from ceir.store import Store, demo, open_store
from ceir.v1 import eir_pb2
from tests.network._faces import RunningFaces, running_faces

REGISTERED = "352099001761481"
STOLEN = "352099001761499"
EXPIRED = "860123450000020"
UNKNOWN = "352099009999992"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(tmp_path_factory.mktemp("n5g") / "db") as store:
        demo.load(store)
        yield store


@pytest.fixture(scope="module")
def face(demo_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFaces]:
    settings = Settings(db=tmp_path_factory.mktemp("unused"), sbi="127.0.0.1:0")
    with running_faces(settings, demo_store) as running:
        yield running


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(http1=False, http2=True, timeout=10) as c:
        yield c


def get(client: httpx.Client, face: RunningFaces, query: str) -> httpx.Response:
    return client.get(face.url + ("?" + query if query else ""))


def problem_of(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == PROBLEM
    body = json.loads(response.content)
    assert body["status"] == response.status_code
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    return body  # type: ignore[no-any-return]


def test_a_registered_imei_is_whitelisted_over_h2c(
    client: httpx.Client, face: RunningFaces
) -> None:
    """The AMF's request over cleartext HTTP/2 gets 200 {"status":"WHITELISTED"}."""
    response = get(client, face, f"pei=imei-{REGISTERED}")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"status":"WHITELISTED"}'


@pytest.mark.parametrize(
    ("imei", "status"),
    [(REGISTERED, "WHITELISTED"), (STOLEN, "BLACKLISTED"), (EXPIRED, "BLACKLISTED"),
     (UNKNOWN, "BLACKLISTED")],
)  # fmt: skip
def test_statuses_are_checkimeis(
    client: httpx.Client, face: RunningFaces, demo_store: Store, imei: str, status: str
) -> None:
    """Each demo device's status is the EquipmentStatus CheckIMEI gives it."""
    answer = Checker(demo_store, Policy()).check_one(eir_pb2.CheckIMEIRequest(imei=imei))
    assert Status(answer.status).name == status
    assert get(client, face, f"pei=imei-{imei}").json() == {"status": status}


def test_every_demo_device_and_imeisv_agrees_with_checkimei(
    client: httpx.Client, face: RunningFaces, demo_store: Store
) -> None:
    """imei-<15> and imeisv-<16> of every demo device answer as CheckIMEI does."""
    checker = Checker(demo_store, Policy())
    for device in demo.devices(int(time.time())):
        expected = Status(checker.check_one(eir_pb2.CheckIMEIRequest(imei=device.imei)).status)
        for pei in (f"imei-{device.imei}", f"imeisv-{device.imei[:14]}07"):
            assert get(client, face, f"pei={pei}").json() == {"status": expected.name}, pei


def test_optional_parameters_are_accepted(client: httpx.Client, face: RunningFaces) -> None:
    """supi, gpsi and supported-features (URL-encoded or not) do not change the answer."""
    query = (
        f"pei=imei-{REGISTERED}&supi=imsi-510101234567890&gpsi=msisdn-6281234567890"
        "&supported-features=0a"
    )
    assert get(client, face, query).json() == {"status": "WHITELISTED"}
    assert get(client, face, f"pei=imei%2D{REGISTERED}&supi=nai-a%40b").json() == {
        "status": "WHITELISTED"
    }


@pytest.mark.parametrize(
    ("query", "cause", "param"),
    [
        ("", "MANDATORY_QUERY_PARAM_MISSING", "query pei"),
        ("supi=imsi-510101234567890", "MANDATORY_QUERY_PARAM_MISSING", "query pei"),
        ("pei=", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        (f"pei=imei-{REGISTERED[:14]}2", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        (f"pei=imei-{REGISTERED[:14]}", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        (f"pei={REGISTERED}", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        ("pei=imeisv-35209900176148", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        ("pei=mac-00-1a-2b-3c-4d-5e", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        ("pei=eui-00-1a-2b-ff-fe-3c-4d-5e", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        (f"pei=imei-{REGISTERED}&pei=imei-{REGISTERED}", "MANDATORY_QUERY_PARAM_INCORRECT",
         "query pei"),
        ("pei=%ff%fe", "MANDATORY_QUERY_PARAM_INCORRECT", "query pei"),
        (f"pei=imei-{REGISTERED}&supi=510101234567890", "OPTIONAL_QUERY_PARAM_INCORRECT",
         "query supi"),
        (f"pei=imei-{REGISTERED}&gpsi=6281234567890", "OPTIONAL_QUERY_PARAM_INCORRECT",
         "query gpsi"),
        (f"pei=imei-{REGISTERED}&supported-features=xyz", "OPTIONAL_QUERY_PARAM_INCORRECT",
         "query supported-features"),
    ],
)  # fmt: skip
def test_bad_queries_get_400_problem_details(
    client: httpx.Client, face: RunningFaces, query: str, cause: str, param: str
) -> None:
    """Missing/malformed pei (or a MAC/EUI PEI) and bad optional parameters: 400 with the
    cause and invalidParams naming the parameter as 'query <name>'."""
    response = get(client, face, query)
    assert response.status_code == 400
    body = problem_of(response)
    assert body["cause"] == cause
    params = body["invalidParams"]
    assert isinstance(params, list)
    assert len(params) == 1
    assert params[0]["param"] == param
    assert params[0]["reason"]


def test_personal_data_is_not_echoed_in_errors(client: httpx.Client, face: RunningFaces) -> None:
    """A malformed supi or gpsi is named, never repeated, in the problem."""
    response = get(client, face, f"pei=imei-{REGISTERED}&supi=imsi-51010123456789012345")
    assert response.status_code == 400
    assert b"51010123456789012345" not in response.content
    response = get(client, face, f"pei=imei-{REGISTERED}&gpsi=msisdn-62812345678901234")
    assert b"62812345678901234" not in response.content


def test_unknown_paths_get_404_and_wrong_methods_405(
    client: httpx.Client, face: RunningFaces
) -> None:
    """Other paths: 404 RESOURCE_URI_STRUCTURE_NOT_FOUND; POST/PUT/DELETE: 405 with allow."""
    root = face.n5g.url
    for path in ("/", "/n5g-eir-eic/v2/equipment-status", "/n5g-eir-eic/v1/equipment-statuses"):
        response = client.get(root + path)
        assert response.status_code == 404
        assert problem_of(response)["cause"] == "RESOURCE_URI_STRUCTURE_NOT_FOUND"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = client.request(method, face.url + f"?pei=imei-{REGISTERED}", content=b"{}")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
        problem_of(response)


def test_the_unknown_answer_follows_unknown_status(demo_store: Store, tmp_path: Path) -> None:
    """With --unknown-status greylisted an unregistered PEI is 200 GREYLISTED."""
    settings = Settings(db=tmp_path, unknown_status=UnknownStatus.GREYLISTED)
    with running_faces(settings, demo_store) as running, httpx.Client(http1=False, http2=True) as c:
        assert get(c, running, f"pei=imei-{UNKNOWN}").json() == {"status": "GREYLISTED"}
        assert get(c, running, f"pei=imei-{STOLEN}").json() == {"status": "BLACKLISTED"}


def test_strict_unknown_is_404_equipment_unknown(demo_store: Store, tmp_path: Path) -> None:
    """--sbi-unknown not-found: an unregistered valid PEI is 404 ERROR_EQUIPMENT_UNKNOWN;
    registered and blocked devices still get 200."""
    settings = Settings(db=tmp_path, sbi_unknown=UnknownAnswer.NOT_FOUND)
    with running_faces(settings, demo_store) as running, httpx.Client(http1=False, http2=True) as c:
        response = get(c, running, f"pei=imei-{UNKNOWN}")
        assert response.status_code == 404
        assert problem_of(response)["cause"] == "ERROR_EQUIPMENT_UNKNOWN"
        assert get(c, running, f"pei=imeisv-{UNKNOWN[:14]}11").status_code == 404
        assert get(c, running, f"pei=imei-{REGISTERED}").json() == {"status": "WHITELISTED"}
        assert get(c, running, f"pei=imei-{STOLEN}").json() == {"status": "BLACKLISTED"}


def test_a_failing_lookup_is_500_without_a_trace(face: RunningFaces, client: httpx.Client) -> None:
    """A failure inside the handler is 500 SYSTEM_FAILURE: no stack trace reaches the client."""
    service = face.n5g.service
    real = service.checker

    class Broken:
        def check_one(self, request: object) -> object:
            raise RuntimeError("boom in the store")

    service.checker = Broken()  # type: ignore[assignment]
    try:
        response = get(client, face, f"pei=imei-{REGISTERED}")
    finally:
        service.checker = real
    assert response.status_code == 500
    body = problem_of(response)
    assert body["cause"] == "SYSTEM_FAILURE"
    assert b"boom" not in response.content
    assert b"Traceback" not in response.content


def test_supi_reaches_the_observer_and_no_log(
    demo_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The IMSI of a supi goes to the observation seam (which tokenises it before storing)
    with the device key; neither the IMSI nor the MSISDN is logged."""
    seen: list[tuple[bytes, str, str]] = []
    settings = Settings(db=tmp_path, sbi="127.0.0.1:0")
    face = n5g_eir.create_face(settings, demo_store, observe=lambda *a: seen.append(a))
    assert face is not None
    caplog.set_level(logging.DEBUG)
    with (
        running_faces(settings, demo_store, faces=[face]) as running,
        httpx.Client(http1=False, http2=True) as c,
    ):
        query = f"pei=imei-{REGISTERED}&supi=imsi-510101234567890&gpsi=msisdn-6281234567890"
        assert get(c, running, query).status_code == 200
        assert get(c, running, f"pei=imei-{REGISTERED}&supi=nai-x%40y").status_code == 200
        assert get(c, running, f"pei=imei-{REGISTERED}").status_code == 200
    assert len(seen) == 1
    key, imsi, operator = seen[0]
    assert key == int(REGISTERED[:14]).to_bytes(8, "big")
    assert imsi == "510101234567890"
    assert operator == ""  # no security: nobody's operator id
    # Every log line of the server side (the client's own httpx log names its URL).
    server_side = [
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    ]
    assert server_side  # debug logging was on
    assert not [m for m in server_side if "510101234567890" in m or "6281234567890" in m]


# -- raw HTTP/2: PING, long connections, garbage --------------------------------------


class RawClient:
    """A python-hyper h2 client on a plain socket (h2c prior knowledge)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def request(self, path: str) -> int:
        stream = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream,
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)],
            end_stream=True,
        )
        return stream

    def events(self) -> list[h2.events.Event]:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        events = self.h2.receive_data(data)
        self.flush()
        return events

    def close(self) -> None:
        self.sock.close()


def test_pings_are_answered_promptly_and_connections_are_long_lived(face: RunningFaces) -> None:
    """2,000 requests on one connection (hypercorn would close it at 1,000), PINGs
    acknowledged within 0.5 s between them, and no GOAWAY."""
    client = RawClient(face.n5g.port)
    try:
        path = f"/n5g-eir-eic/v1/equipment-status?pei=imei-{REGISTERED}"
        done = 0
        for batch in range(40):
            streams = {client.request(path) for _ in range(50)}
            client.flush()
            while streams:
                for event in client.events():
                    assert not isinstance(event, h2.events.ConnectionTerminated)
                    if isinstance(event, h2.events.ResponseReceived):
                        assert dict(event.headers or ())[b":status"] == b"200"
                    if isinstance(event, h2.events.StreamEnded):
                        streams.discard(event.stream_id)
                        done += 1
            if batch % 10 == 0:
                opaque = f"ping{batch:04d}".encode()
                client.h2.ping(opaque)
                client.flush()
                started = time.monotonic()
                acked = False
                while not acked:
                    acked = any(
                        isinstance(e, h2.events.PingAckReceived) and e.ping_data == opaque
                        for e in client.events()
                    )
                assert time.monotonic() - started < 0.5
        assert done == 2000
    finally:
        client.close()


def test_garbage_closes_that_connection_only(face: RunningFaces, client: httpx.Client) -> None:
    """HTTP/1.1 or random bytes instead of the HTTP/2 preface: that connection is closed
    (GOAWAY), the server keeps answering everyone else."""
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 4):
        with socket.create_connection(("127.0.0.1", face.n5g.port), timeout=5) as sock:
            sock.sendall(junk)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            assert b"Traceback" not in received
    assert get(client, face, f"pei=imei-{REGISTERED}").json() == {"status": "WHITELISTED"}


def test_a_request_body_beyond_the_limit_resets_the_stream(face: RunningFaces) -> None:
    """A request streaming more than MAX_BODY bytes is refused (RST_STREAM), the
    connection stays usable."""
    client = RawClient(face.n5g.port)
    try:
        stream = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            stream,
            [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
             (":path", "/n5g-eir-eic/v1/equipment-status")],
        )  # fmt: skip
        chunk = b"x" * 16_000
        reset = False
        for _ in range(3):
            client.h2.send_data(stream, chunk)
        client.flush()
        while not reset:
            reset = any(isinstance(e, h2.events.StreamReset) for e in client.events())
        again = client.request(f"/n5g-eir-eic/v1/equipment-status?pei=imei-{REGISTERED}")
        client.flush()
        ended = False
        while not ended:
            ended = any(
                isinstance(e, h2.events.StreamEnded) and e.stream_id == again
                for e in client.events()
            )
    finally:
        client.close()


# -- real tools: curl and h2load -------------------------------------------------------


def test_curl_http2_prior_knowledge(face: RunningFaces) -> None:
    """What the README shows: curl --http2-prior-knowledge prints {"status":"WHITELISTED"}."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (Debian: apt-get install curl)")
    out = subprocess.run(
        [curl, "-sS", "--http2-prior-knowledge", face.url + f"?pei=imei-{REGISTERED}",
         "-w", " %{http_version} %{http_code}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert out == '{"status":"WHITELISTED"} 2 200'


def test_h2load_many_requests_on_one_connection(face: RunningFaces) -> None:
    """h2load (nghttp2): 5,000 requests over a single connection, all 2xx."""
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.skip("h2load is not installed (Debian: apt-get install nghttp2-client)")
    out = subprocess.run(
        [h2load, "-n", "5000", "-c", "1", "-m", "20", face.url + f"?pei=imei-{REGISTERED}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "5000 succeeded, 0 failed, 0 errored" in out
    assert "status codes: 5000 2xx" in out
