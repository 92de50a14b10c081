"""The web face on a real in-process server: the page, the JSON endpoint, the shared rate
limit, the security headers, /metrics, /version and who may call what."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ceir import __version__, version_text
from ceir.config import Settings
from ceir.security.principals import Role
from ceir.security.roles import METHOD_RULES
from ceir.security.tokens import TokenBook
from ceir.store import SCHEMA_VERSION, demo
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, eir_pb2, eir_pb2_grpc
from ceir.web.app import CSP, ROUTES, RULE_PREFIX, WebFace
from tests._serving import Running, serving

WEB = "127.0.0.1:0"


class Web:
    """A running server and a tiny HTTP client for its web face."""

    def __init__(self, running: Running) -> None:
        self.running = running
        face = next(f for f in running.server.faces if isinstance(f, WebFace))
        self.base = f"http://127.0.0.1:{face.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read().decode()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    with serving(Settings(db=tmp_path / "db", web=WEB)) as running:
        yield Web(running)


def test_every_web_route_is_in_the_access_table() -> None:
    """Each route has a rule under web:<name>, and no stale web: rules remain."""
    web_rules = {k.removeprefix(RULE_PREFIX) for k in METHOD_RULES if k.startswith(RULE_PREFIX)}
    assert web_rules == set(ROUTES)


def test_the_page_shows_the_answer_as_on_the_box(web: Web) -> None:
    """A registered IMEI typed with dashes: 200, its box form, brand and model, plain words."""
    status, headers, html = web.get("/?imei=35-209900-176148-1&lang=en")
    assert status == 200
    assert "35-209900-176148-1" in html
    assert "Nusantara" in html
    assert "This phone is registered. It works on Indonesian mobile networks." in html
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Server"] == "ceir"
    assert "<script" not in html
    assert 'lang="en"' in html


def test_the_page_defaults_to_the_browsers_language(web: Web) -> None:
    """Accept-Language picks Bahasa Indonesia or English; without one, Bahasa Indonesia."""
    _, _, indonesian = web.get("/?imei=352099001761499", {"Accept-Language": "id-ID,id"})
    assert "Diblokir: dilaporkan hilang atau dicuri" in indonesian
    _, _, english = web.get("/?imei=352099001761499", {"Accept-Language": "en-GB"})
    assert "Blocked: reported lost or stolen" in english
    _, _, default = web.get("/")
    assert 'lang="id"' in default


def test_each_demo_device_gets_the_words_of_its_state(web: Web) -> None:
    """Registered, temporary with its date, expired, blocked, not registered (customs)."""
    expected = {
        "352099001761481": "REGISTERED",
        "860123450000012": "TEMPORARY",
        "860123450000020": "EXPIRED",
        "352099001761499": "BLOCKED",
        "352099009999992": "NOT_REGISTERED",
    }
    for imei, key in expected.items():
        _, _, html = web.get(f"/?lang=en&imei={imei}")
        assert f'data-state="{key}"' in html, imei
    _, _, html = web.get("/?lang=en&imei=352099009999992")
    assert "declare it to customs (Bea Cukai)" in html
    _, _, html = web.get("/?lang=en&imei=860123450000012")
    assert "Temporarily registered until " in html


def test_an_invalid_imei_is_explained_with_400(web: Web) -> None:
    """A wrong check digit: 400, the expected digit, the input shown back escaped."""
    status, _, html = web.get("/?lang=en&imei=352099001761482")
    assert status == 400
    assert "it is 2, it should be 1" in html
    assert 'aria-invalid="true"' in html
    status, _, html = web.get("/?lang=en&imei=%3Cb%3E12")
    assert status == 400
    assert "<b>12" not in html
    assert "&lt;b&gt;12" in html


def test_json_endpoint_is_the_lookup_device_answer(web: Web) -> None:
    """GET /api/v1/devices/{imei} returns exactly what DeviceCheck.LookupDevice returns."""
    for imei in (d.imei for d in demo.devices(0)):
        status, headers, body = web.get(f"/api/v1/devices/{imei}")
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        with web.running.channel() as ch:
            answer = device_check_pb2_grpc.DeviceCheckStub(ch).LookupDevice(
                device_check_pb2.LookupDeviceRequest(imei=imei)
            )
        assert json.loads(body) == json_format.MessageToDict(
            answer, always_print_fields_with_no_presence=True
        )


def test_json_endpoint_explains_an_invalid_imei(web: Web) -> None:
    """400 with a machine-readable reason and the one-line message."""
    status, _, body = web.get("/api/v1/devices/35209900176148299")
    assert status == 400
    error = json.loads(body)["error"]
    assert (error["code"], error["reason"]) == ("INVALID_IMEI", "BAD_LENGTH")
    assert "17 digits" in error["message"]


def test_version_says_what_ceir_version_says(web: Web) -> None:
    """/version, the health service's trailing metadata and `ceir --version` agree."""
    status, _, body = web.get("/version")
    assert (status, json.loads(body)) == (200, {"version": __version__, "schema": SCHEMA_VERSION})
    with web.running.channel() as ch:
        _, call = health_pb2_grpc.HealthStub(ch).Check.with_call(health_pb2.HealthCheckRequest())
    assert dict(call.trailing_metadata())["ceir-version"] == version_text()


def test_unknown_paths_and_methods_get_a_page_not_a_trace(web: Web) -> None:
    """404 and 405 are answered with the page's own words, never a traceback."""
    status, _, html = web.get("/nowhere?lang=en")
    assert status == 404
    assert "Page not found" in html
    request = urllib.request.Request(web.base + "/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405
    assert "Traceback" not in err.value.read().decode()


def test_page_and_grpc_share_one_token_bucket(tmp_path: Path) -> None:
    """The web page draws on the client's DeviceCheck bucket: 429, Retry-After, a page
    saying when to retry; then gRPC's LookupDevice is refused too."""
    settings = Settings(db=tmp_path / "db", web=WEB, consumer_rate=0.01, consumer_burst=2)
    with serving(settings) as running:
        web = Web(running)
        assert web.get("/?imei=352099001761481")[0] == 200
        assert web.get("/api/v1/devices/352099001761481")[0] == 200
        status, headers, html = web.get("/?lang=en&imei=352099001761481")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert "Please try again in" in html
        status, headers, body = web.get("/api/v1/devices/352099001761481")
        assert (status, json.loads(body)["error"]["code"]) == (429, "RATE_LIMITED")
        with running.channel() as ch, pytest.raises(grpc.RpcError) as err:
            device_check_pb2_grpc.DeviceCheckStub(ch).LookupDevice(
                device_check_pb2.LookupDeviceRequest(imei="352099001761481")
            )
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert web.get("/")[0] == 200  # the empty form costs no token


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Web, dict[str, str]]]:
    book = TokenBook()
    secrets: dict[str, str] = {}
    for name, role, op in (("xl", Role.OPERATOR, "510-11"), ("ops", Role.ADMIN, "")):
        book, secrets[name] = book.add(name, role, op)
    book.save(tmp_path / "tokens.json")
    settings = Settings(db=tmp_path / "db", web=WEB, tokens=tmp_path / "tokens.json")
    with serving(settings) as running:
        yield Web(running), secrets


def test_with_tokens_the_page_is_public_and_the_rest_follows_the_table(secured: Any) -> None:
    """Page public; JSON needs a principal (as LookupDevice); /metrics operations only."""
    web, secrets = secured
    assert web.get("/?imei=352099001761481")[0] == 200
    assert web.get("/version")[0] == 200
    status, headers, _ = web.get("/api/v1/devices/352099001761481")
    assert status == 401
    ok = {"Authorization": f"Bearer {secrets['xl']}"}
    assert web.get("/api/v1/devices/352099001761481", ok)[0] == 200
    assert web.get("/metrics")[0] == 401
    status, _, body = web.get("/metrics", ok)
    assert status == 403
    assert secrets["xl"] not in body
    status, headers, body = web.get("/metrics", {"Authorization": f"Bearer {secrets['ops']}"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'face="web",method="device",operator="510-11"' in body


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_every_face_by_method_status_and_reason(web: Web) -> None:
    """CheckIMEI, LookupDevice and the web page each show up with their answers."""
    before = web.get("/metrics")[2]
    with web.running.channel() as ch:
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        for _ in range(3):
            eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei="352099001761499"))
        device_check_pb2_grpc.DeviceCheckStub(ch).LookupDevice(
            device_check_pb2.LookupDeviceRequest(imei="352099009999992")
        )
        packed = eir_pb2.CheckPackedRequest(keys=(123).to_bytes(8, "big") * 4)
        eir.CheckPacked(packed)
    web.get("/?imei=352099001761481")
    after = web.get("/metrics")[2]

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    calls = "ceir_request_duration_seconds_count"
    assert grew(calls, face="grpc", method="CheckIMEI") == 3
    assert grew(calls, face="device-check", method="LookupDevice") == 1
    assert grew(calls, face="web", method="page") == 1
    answers = "ceir_answers_total"
    assert grew(answers, face="grpc", status="BLACKLISTED", reason="LOST_STOLEN") == 3
    assert grew(answers, face="grpc", status="BLACKLISTED", reason="NOT_REGISTERED") == 4
    assert grew(answers, face="device-check", reason="NOT_REGISTERED") == 1
    assert grew(answers, face="web", status="WHITELISTED", reason="REGISTERED") == 1
    assert _sample(after, "ceir_store_devices") == 7
    assert _sample(after, "ceir_build_info", version=__version__) == 1


@pytest.mark.parametrize("value", ["8080", "localhost:", "[::1]:99999", "host:port"])
def test_a_bad_web_address_is_one_line_and_exit_6(tmp_path: Path, value: str) -> None:
    """--web that is not HOST:PORT or off: one line saying so, exit 6, nothing served."""
    from click.testing import CliRunner

    from ceir.cli.app import main

    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "db"), "--web", value])
    assert result.exit_code == 6
    assert result.stderr.strip().splitlines() == [
        f"ceir: --web {value!r} is not HOST:PORT (port 0..65535, [addr]:PORT for IPv6) or 'off'"
    ]


def test_serve_help_shows_the_web_flags() -> None:
    """`ceir serve --help` lists --web (with its default), --metrics and --log-format."""
    from click.testing import CliRunner

    from ceir.cli.app import main

    text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--web TEXT" in text
    assert "127.0.0.1:8080" in text
    assert "--metrics / --no-metrics" in text
    assert "--log-format [text|json]" in text
