"""The web face over TLS with the gRPC port's certificate; client certificates (mutual
TLS) name the same principals as on gRPC."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from ceir.cli.app import main
from ceir.config import Settings
from ceir.web.app import WebFace
from tests._serving import serving


def _get(url: str, context: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_https_with_client_certificates(tmp_path: Path) -> None:
    """HTTPS with the server certificate; the page needs no client certificate; /metrics
    wants operations: the admin's certificate gets it, a consumer's does not."""
    pki = tmp_path / "pki"
    assert CliRunner().invoke(main, ["certs", str(pki)]).exit_code == 0
    settings = Settings(
        db=tmp_path / "db",
        web="127.0.0.1:0",
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        client_ca=pki / "ca.pem",
    )
    with serving(settings) as running:
        face = next(f for f in running.server.faces if isinstance(f, WebFace))
        assert face.describe().endswith(f"https://127.0.0.1:{face.port}")
        base = f"https://localhost:{face.port}"

        def context(name: str | None) -> ssl.SSLContext:
            made = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            if name is not None:
                made.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
            return made

        assert _get(base + "/?imei=352099001761481", context(None)) == 200
        assert _get(base + "/metrics", context(None)) == 401
        assert _get(base + "/metrics", context("portal")) == 403
        assert _get(base + "/metrics", context("admin")) == 200
        assert _get(base + "/api/v1/devices/352099001761481", context("portal")) == 200
        with pytest.raises(urllib.error.URLError):  # not our CA: refused by the client
            urllib.request.urlopen(base + "/", timeout=10, context=ssl.create_default_context())
