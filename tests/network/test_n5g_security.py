"""N5g-eir security: TLS with ALPN h2, bearer tokens and mTLS principals, as for gRPC."""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.network import n5g_eir
from ceir.security.certs import write_dev_pki
from ceir.security.principals import Role
from ceir.security.tokens import TokenBook
from ceir.store import Store, demo, open_store
from tests.network._faces import running_faces

QUERY = "?pei=imei-352099001761481"
WHITELISTED = {"status": "WHITELISTED"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem/key and one client certificate per demo principal."""
    directory = tmp_path_factory.mktemp("pki")
    write_dev_pki(directory)
    return directory


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(tmp_path_factory.mktemp("n5g-sec") / "db") as store:
        demo.load(store)
        yield store


def tls_client(pki: Path, name: str | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if name is not None:
        context.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
    return httpx.Client(http1=False, http2=True, verify=context, timeout=10)


def https_url(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


def test_tls_negotiates_h2_by_alpn(pki: Path, demo_store: Store, tmp_path: Path) -> None:
    """With --tls-cert/--tls-key the face speaks TLS and ALPN selects h2."""
    settings = Settings(db=tmp_path, tls_cert=pki / "server.pem", tls_key=pki / "server.key")
    with running_faces(settings, demo_store) as running, tls_client(pki) as client:
        assert running.n5g.url.startswith("https://")
        response = client.get(https_url(running.url) + QUERY)
        assert response.http_version == "HTTP/2"
        assert response.json() == WHITELISTED
        curl = shutil.which("curl")
        if curl is not None:  # an independent TLS + ALPN client
            out = subprocess.run(
                [curl, "-sS", "--http2", "--cacert", str(pki / "ca.pem"),
                 https_url(running.url) + QUERY, "-w", " %{http_version}"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout  # fmt: skip
            assert out == '{"status":"WHITELISTED"} 2'


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    book, operator = TokenBook().add("telkomsel", Role.OPERATOR, "510-10")
    book, consumer = book.add("portal", Role.CONSUMER)
    book, admin = book.add("ops", Role.ADMIN)
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    book.save(path)
    return path, {"operator": operator, "consumer": consumer, "admin": admin}


def test_bearer_tokens_as_for_grpc(
    token_file: tuple[Path, dict[str, str]], demo_store: Store, tmp_path: Path
) -> None:
    """No token or a wrong one: 401 (www-authenticate: Bearer); a consumer's token: 403;
    an operator's or an admin's: 200."""
    path, tokens = token_file
    settings = Settings(db=tmp_path, tokens=path)
    with (
        running_faces(settings, demo_store) as running,
        httpx.Client(http1=False, http2=True) as client,
    ):
        url = running.url + QUERY
        for headers in ({}, {"authorization": "Bearer ceir_wrong"}, {"authorization": "Basic x"}):
            response = client.get(url, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert json.loads(response.content)["status"] == 401
        response = client.get(url, headers={"authorization": f"Bearer {tokens['consumer']}"})
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        for role in ("operator", "admin"):
            response = client.get(url, headers={"authorization": f"Bearer {tokens[role]}"})
            assert response.json() == WHITELISTED, role


def test_a_tokens_operator_id_reaches_the_observer(
    token_file: tuple[Path, dict[str, str]], demo_store: Store, tmp_path: Path
) -> None:
    """The sighting names the operator (MCC-MNC) of the principal that asked."""
    path, tokens = token_file
    settings = Settings(db=tmp_path, tokens=path, sbi="127.0.0.1:0")
    seen: list[tuple[bytes, str, str]] = []
    face = n5g_eir.create_face(settings, demo_store, observe=lambda *a: seen.append(a))
    assert face is not None
    with (
        running_faces(settings, demo_store, faces=[face]) as running,
        httpx.Client(http1=False, http2=True) as client,
    ):
        response = client.get(
            running.url + QUERY + "&supi=imsi-510101234567890",
            headers={"authorization": f"Bearer {tokens['operator']}"},
        )
        assert response.status_code == 200
    assert [operator for _, _, operator in seen] == ["510-10"]


def test_mutual_tls_principals(pki: Path, demo_store: Store, tmp_path: Path) -> None:
    """With --client-ca the certificate names the principal: an operator's is answered,
    a consumer's is 403; a client without a certificate does not get through TLS."""
    settings = Settings(
        db=tmp_path,
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        client_ca=pki / "ca.pem",
    )
    with running_faces(settings, demo_store) as running:
        url = https_url(running.url) + QUERY
        with tls_client(pki, "telkomsel") as client:
            assert client.get(url).json() == WHITELISTED
        with tls_client(pki, "portal") as client:
            assert client.get(url).status_code == 403
        with tls_client(pki) as client, pytest.raises(httpx.HTTPError):
            client.get(url)


def test_off_loopback_needs_tls_and_authentication(demo_store: Store, tmp_path: Path) -> None:
    """As for gRPC: a non-loopback address in clear, or with nobody authenticated, is refused."""
    settings = Settings(db=tmp_path, sbi="0.0.0.0:0")
    with pytest.raises(ConfigError, match="without TLS"):
        n5g_eir.create_face(settings, demo_store)


def test_a_missing_rule_refuses_everybody(
    demo_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an entry in the method -> roles table the face fails closed (403)."""
    monkeypatch.delitem(n5g_eir.METHOD_RULES, n5g_eir.OPERATION)
    with (
        running_faces(Settings(db=tmp_path), demo_store) as running,
        httpx.Client(http1=False, http2=True) as client,
    ):
        assert client.get(running.url + QUERY).status_code == 403


def test_an_empty_token_file_refuses_everybody(demo_store: Store, tmp_path: Path) -> None:
    """Configured security never degrades to open: a token file listing nobody is 401."""
    path = tmp_path / "tokens.json"
    TokenBook().save(path)
    with (
        running_faces(Settings(db=tmp_path, tokens=path), demo_store) as running,
        httpx.Client(http1=False, http2=True) as client,
    ):
        assert client.get(running.url + QUERY).status_code == 401


def test_refused_calls_get_access_lines(
    token_file: tuple[Path, dict[str, str]],
    demo_store: Store,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 and a 403 on N5g-eir each write an access-log line, as refusals do on every face."""
    caplog.set_level(logging.INFO, "ceir.access_log")
    path, tokens = token_file
    with (
        running_faces(Settings(db=tmp_path, tokens=path), demo_store) as running,
        httpx.Client(http1=False, http2=True) as client,
    ):
        assert client.get(running.url + QUERY).status_code == 401
        consumer = {"authorization": f"Bearer {tokens['consumer']}"}
        assert client.get(running.url + QUERY, headers=consumer).status_code == 403
    lines = [r for r in caplog.records if r.name == "ceir.access_log"]
    assert [(r.face, r.method, r.status) for r in lines] == [  # type: ignore[attr-defined]
        ("n5g-eir", "GetEquipmentStatus", "401"),
        ("n5g-eir", "GetEquipmentStatus", "403"),
    ]
    assert lines[0].principal == "anonymous"  # type: ignore[attr-defined]
    assert tokens["consumer"] not in caplog.text
