"""Issue 10 §2 and §4: revocation is live, certificates can be revoked, and a secured
store is never filled with demo data. Against real ``ceir serve`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_first_hour import CHECKED, Serve, ceir

DEMO_DEVICE = "352099001761481"
"""Registered by the demo data (and by nothing else in these tests' stores)."""


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    """Servers a test starts (append them); each is stopped in teardown."""
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


def _token(tokens: Path, name: str, role: str = "consumer") -> str:
    ran = ceir("token", "add", name, "--role", role, "--tokens", tokens)
    assert ran.code == 0, ran.stderr
    return ran.stdout.strip()


# -- demo data ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("security", ["tokens", "tls"])
def test_a_secured_server_starts_with_an_empty_store_not_demo_data(
    tmp_path: Path, serve: list[Serve], workers: str, security: str
) -> None:
    """Tokens or TLS configured: an empty store stays empty (0 devices in the start-up
    line, the log says why), and the demo's registered phone is not in it."""
    if security == "tokens":
        tokens = tmp_path / "tokens.json"
        secret = _token(tokens, "portal")
        args: tuple[str | Path, ...] = ("--tokens", tokens)
        client: tuple[str | Path, ...] = ("--token", secret)
        address = "127.0.0.1"
    else:
        pki = tmp_path / "pki"
        assert ceir("certs", pki).code == 0
        args = ("--tls-cert", pki / "server.pem", "--tls-key", pki / "server.key")
        client = ("--ca", pki / "ca.pem")
        address = "localhost"
    server = Serve("--db", tmp_path / "db", "--workers", workers, *args)
    serve.append(server)
    assert "(0 devices, 0 TACs)" in server.seen[-1], server.seen[-1]
    assert any("demo data is not loaded when security is configured" in s for s in server.seen)
    ran = ceir("check", DEMO_DEVICE, "--server", f"{address}:{server.port}", *client)
    assert ran.code == 1, (ran.code, ran.stdout, ran.stderr)  # unknown: refused, not demo's


def test_the_open_loopback_default_still_loads_demo_data(
    tmp_path: Path, serve: list[Serve]
) -> None:
    """No tokens, no TLS (`./scripts/run`): an empty store gets the demo data."""
    server = Serve("--db", tmp_path / "db", "--workers", "1")
    serve.append(server)
    assert "(0 devices" not in server.seen[-1], server.seen[-1]
    ran = ceir("check", DEMO_DEVICE, "--server", server.address)
    assert ran.code == 0, ran.stderr
    assert CHECKED == DEMO_DEVICE  # the first-hour tests import the device they check
