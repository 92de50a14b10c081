"""TLS and mutual TLS, where the server may listen in clear, and the start-up description."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.security.certs import DevCA, write_dev_pki
from ceir.server.transport import Security, is_loopback
from ceir.v1 import eir_pb2, eir_pb2_grpc
from tests._serving import serving

REGISTERED = "352099001761481"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI: ca.pem, server.pem/key, one client per demo principal."""
    directory = tmp_path_factory.mktemp("pki")
    write_dev_pki(directory)
    return directory


def client_credentials(pki: Path, name: str | None) -> Any:
    ca = (pki / "ca.pem").read_bytes()
    if name is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(pki / f"{name}.key").read_bytes(),
        certificate_chain=(pki / f"{name}.pem").read_bytes(),
    )


def check(ch: grpc.Channel) -> Any:
    stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
    return stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=REGISTERED), timeout=5)


@pytest.fixture
def mtls(pki: Path, tmp_path: Path) -> Iterator[Any]:
    settings = Settings(
        db=tmp_path / "db",
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        client_ca=pki / "ca.pem",
    )
    with serving(settings) as running:
        yield running


def test_mutual_tls_admits_an_operator_certificate(pki: Path, mtls: Any) -> None:
    """An operator's client certificate from the CA may call CheckIMEI."""
    with mtls.channel(client_credentials(pki, "telkomsel")) as ch:
        assert check(ch).imei == REGISTERED


def test_mutual_tls_denies_a_consumer_certificate_on_the_operator_path(
    pki: Path, mtls: Any
) -> None:
    """The certificate names the role; a consumer's may not call CheckIMEI."""
    with mtls.channel(client_credentials(pki, "portal")) as ch, pytest.raises(grpc.RpcError) as err:
        check(ch)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_mutual_tls_refuses_clients_without_a_certificate(pki: Path, mtls: Any) -> None:
    """No client certificate: the handshake fails, nothing is served."""
    with mtls.channel(client_credentials(pki, None)) as ch, pytest.raises(grpc.RpcError) as err:
        check(ch)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_certificate_from_another_ca(
    pki: Path, mtls: Any, tmp_path: Path
) -> None:
    """A self-made CA's 'admin' certificate is not trusted."""
    from ceir.security.certs import DEMO_PRINCIPALS

    rogue = DevCA("rogue").client(DEMO_PRINCIPALS[-1])
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=rogue.key,
        certificate_chain=rogue.cert,
    )
    with mtls.channel(creds) as ch, pytest.raises(grpc.RpcError) as err:
        check(ch)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plain_clients_cannot_talk_to_a_tls_server(mtls: Any) -> None:
    """A clear-text client gets no answer from a TLS port."""
    with mtls.channel() as ch, pytest.raises(grpc.RpcError) as err:
        check(ch)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_tls_with_tokens_authenticates_by_token(pki: Path, tmp_path: Path) -> None:
    """Server-only TLS plus bearer tokens: an operator token works, no token does not."""
    from ceir.security.principals import Role
    from ceir.security.tokens import TokenBook

    book, token = TokenBook().add("xl", Role.OPERATOR, "510-11")
    book.save(tmp_path / "t.json")
    settings = Settings(
        db=tmp_path / "db",
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        tokens=tmp_path / "t.json",
    )
    with serving(settings) as running, running.channel(client_credentials(pki, None)) as ch:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        request = eir_pb2.CheckIMEIRequest(imei=REGISTERED)
        md = (("authorization", f"Bearer {token}"),)
        assert stub.CheckIMEI(request, metadata=md).imei == REGISTERED
        with pytest.raises(grpc.RpcError) as err:
            stub.CheckIMEI(request)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert running.server.security == "TLS, 1 bearer token(s)"


def test_a_key_that_does_not_match_the_certificate_is_refused(pki: Path) -> None:
    """Mixing up server files fails at start with both file names."""
    security = Security(tls_cert=pki / "server.pem", tls_key=pki / "admin.key")
    with pytest.raises(ConfigError, match=r"admin\.key does not belong to .*server\.pem"):
        security.credentials()


def test_cert_and_key_go_together() -> None:
    """--tls-cert without --tls-key, or a client CA without TLS, is a configuration error."""
    with pytest.raises(ConfigError, match="go together"):
        Security(tls_cert=Path("a.pem"))
    with pytest.raises(ConfigError, match="mutual TLS is TLS"):
        Security(client_ca=Path("ca.pem"))


class _RecordingServer:
    """Stands in for a grpc server: records the port it is asked to open, opens nothing."""

    def __init__(self) -> None:
        self.added: list[str] = []

    def add_insecure_port(self, address: str) -> int:
        self.added.append(address)
        return 1234


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "ceir.example"])
def test_clear_text_on_a_non_loopback_address_is_refused(host: str) -> None:
    """Without TLS only loopback addresses may be bound; the message says how to fix it."""
    with pytest.raises(ConfigError, match="--insecure"):
        Security().bind(_RecordingServer(), host, 1, authenticated=True)


def test_insecure_allows_a_non_loopback_address_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """--insecure binds anyway and logs that traffic is in clear and unauthenticated."""
    fake = _RecordingServer()
    assert Security(insecure=True).bind(fake, "0.0.0.0", 1, authenticated=False) == 1234
    assert fake.added == ["0.0.0.0:1"]
    assert "WITHOUT TLS" in caplog.text
    assert "WITHOUT authentication" in caplog.text


def test_tls_without_authentication_on_a_public_address_is_refused(pki: Path) -> None:
    """TLS alone on 0.0.0.0 would make every stranger an admin: refused."""
    security = Security(tls_cert=pki / "server.pem", tls_key=pki / "server.key")
    with pytest.raises(ConfigError, match="no authentication"):
        security.bind(_RecordingServer(), "0.0.0.0", 1, authenticated=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Loopback means 127/8, ::1 and localhost; everything else is the network."""
    assert is_loopback(host) is loopback


def test_start_up_description_says_when_nothing_is_secured() -> None:
    """The embedded default says so in the start-up line."""
    assert Security().describe(tokens=None) == (
        "open: no TLS, no authentication (the embedded default, loopback only)"
    )
    assert Security().describe(tokens=0) == "no TLS, 0 bearer tokens: every call is refused"
    mutual = Security(tls_cert=Path("s"), tls_key=Path("k"), client_ca=Path("c"))
    assert mutual.describe(tokens=None) == "mutual TLS (client certificates)"
