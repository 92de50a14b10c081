"""`ceir certs`: a development PKI whose client certificates name the demo principals."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from ceir.cli.app import main
from ceir.config import Settings
from ceir.security.certs import DEMO_PRINCIPALS, DevCA
from ceir.security.principals import Principal, Role, principal_from_certificate
from tests._serving import serving


def test_certs_writes_ca_server_and_one_client_per_demo_principal(tmp_path: Path) -> None:
    """Every demo principal gets a cert/key; keys are private; each cert names its principal."""
    result = CliRunner().invoke(main, ["certs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "telkomsel.pem  operator:telkomsel@510-10" in result.output
    for p in DEMO_PRINCIPALS:
        key = tmp_path / f"{p.name}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        named = principal_from_certificate((tmp_path / f"{p.name}.pem").read_bytes())
        assert named == Principal(p.name, p.role, p.operator_id, via="certificate")
    assert {r.value for r in Role} <= {p.role.value for p in DEMO_PRINCIPALS}


def test_a_certificate_without_a_role_names_nobody() -> None:
    """The server certificate (no role URI) and garbage are not principals."""
    ca = DevCA()
    assert principal_from_certificate(ca.server().cert) is None
    assert principal_from_certificate(ca.pem) is None
    assert principal_from_certificate(b"-----BEGIN CERTIFICATE-----\nxx\n") is None


def test_check_command_speaks_mutual_tls(tmp_path: Path) -> None:
    """`ceir check --ca --cert --key` works against a mutual-TLS server; without them it fails."""
    pki = tmp_path / "pki"
    CliRunner().invoke(main, ["certs", str(pki)])
    settings = Settings(
        db=tmp_path / "db",
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        client_ca=pki / "ca.pem",
    )
    with serving(settings) as running:
        server = f"localhost:{running.port}"
        tls = ["--ca", str(pki / "ca.pem"), "--cert", str(pki / "portal.pem")]
        ok = CliRunner().invoke(
            main, ["check", "352099001761481", "--server", server, *tls, "--key",
                   str(pki / "portal.key")],
        )  # fmt: skip
        assert ok.exit_code == 0, ok.output
        assert "Registered" in ok.output
        refused = CliRunner().invoke(
            main, ["check", "352099001761481", "--server", server, "--timeout", "2"]
        )
        # Clear text against TLS is a credential failure (issue 9 §3): exit 9, with a hint.
        assert refused.exit_code == 9
        assert "give --ca" in refused.stderr
