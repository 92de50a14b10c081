"""Issue 10 §2 and §4: revocation is live, certificates can be revoked, and a secured
store is never filled with demo data. Against real ``ceir serve`` processes."""

from __future__ import annotations

import re
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_first_hour import CHECKED, Serve, ceir, one_line

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
    operator = ("--operator", "510-10") if role == "operator" else ()
    ran = ceir("token", "add", name, "--role", role, *operator, "--tokens", tokens)
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


# -- live revocation -------------------------------------------------------------------------

N5G_QUERY = "/n5g-eir-eic/v1/equipment-status?pei=imei-" + CHECKED
LIVE_WITHIN = 10.0
"""Seconds a revocation may take to reach every worker (the watch polls every 1 s)."""


def _faces(server: Serve) -> tuple[str, str]:
    """The web and N5g-eir base URLs the start-up line names."""
    line = server.seen[-1]
    web = re.search(r"/metrics on (https?://[^\s;]+)", line)
    sbi = re.search(r"N5g-eir on (https?://[^\s;]+)", line)
    assert web is not None, line
    assert sbi is not None, line
    return web.group(1), sbi.group(1)


def _reloaded(server: Serve, pattern: str, workers: int) -> float:
    """Wait until *workers* distinct processes logged a reload matching *pattern*; the
    seconds it took."""
    started = time.monotonic()
    pids: set[str] = set()
    while len(pids) < workers:
        left = LIVE_WITHIN - (time.monotonic() - started)
        assert left > 0, f"{len(pids)} of {workers} workers reloaded: {server.seen[-8:]}"
        found = server.wait_for(r"pid (\d+): reloaded " + pattern, timeout=left)
        pids.add(found.group(1))
    return time.monotonic() - started


def _registered(tmp_path: Path) -> Path:
    from tests.cli.test_first_hour import registered_store

    return registered_store(tmp_path)


def test_token_revoke_is_live_in_every_worker_without_a_signal(
    tmp_path: Path, serve: list[Serve]
) -> None:
    """`ceir token revoke` and nothing else: within seconds both workers refuse the token
    on gRPC (exit 9), N5g-eir (401) and the web API (401); the other token still works."""
    tokens = tmp_path / "tokens.json"
    old = _token(tokens, "old", "operator")
    new = _token(tokens, "new", "operator")
    server = Serve(
        "--db", _registered(tmp_path), "--tokens", tokens, "--workers", "2",
        "--sbi", "127.0.0.1:0", "--web", "127.0.0.1:0",
    )  # fmt: skip
    serve.append(server)
    web, sbi = _faces(server)
    check = ("check", CHECKED, "--server", server.address, "--token")
    bearer = {"authorization": f"Bearer {old}"}
    with (
        httpx.Client(http1=False, http2=True, timeout=10) as n5g,
        httpx.Client(timeout=10) as page,
    ):
        assert ceir(*check, old).code == 0
        assert n5g.get(sbi + N5G_QUERY, headers=bearer).status_code == 200
        assert page.get(f"{web}/api/v1/devices/{CHECKED}", headers=bearer).status_code == 200
        ran = ceir("token", "revoke", "old", "--tokens", tokens)
        assert ran.code == 0, ran.stderr
        _reloaded(server, r"bearer tokens from .*tokens\.json: 1 token", 2)
        for _ in range(6):  # each `ceir check` is a new connection: either worker
            one_line(ceir(*check, old), 9, "UNAUTHENTICATED")
        assert ceir(*check, new).code == 0
        # New connections, so the kernel spreads them over both workers too.
        for _ in range(4):
            with httpx.Client(http1=False, http2=True, timeout=10) as fresh:
                assert fresh.get(sbi + N5G_QUERY, headers=bearer).status_code == 401
            with httpx.Client(timeout=10) as fresh:
                got = fresh.get(f"{web}/api/v1/devices/{CHECKED}", headers=bearer)
                assert got.status_code == 401
        assert n5g.get(sbi + N5G_QUERY, headers=bearer).status_code == 401  # the old connection
    assert server.process.poll() is None


# -- certificate revocation ------------------------------------------------------------------


def _mtls(pki: Path, name: str, *, http2: bool) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
    return httpx.Client(http1=not http2, http2=http2, verify=context, timeout=10)


@pytest.mark.parametrize("watch", ["1", "0"], ids=["watched", "sighup"])
def test_a_revoked_client_certificate_is_refused_on_every_face(
    tmp_path: Path, serve: list[Serve], watch: str
) -> None:
    """`ceir certs revoke telkomsel.pem`: both workers refuse that certificate within
    seconds (watched) or after SIGHUP (--watch-interval 0) on gRPC (UNAUTHENTICATED:
    client certificate revoked), N5g-eir and the web API (401); other certificates work."""
    pki = tmp_path / "pki"
    assert ceir("certs", pki).code == 0
    deny = tmp_path / "denied.txt"
    deny.write_text("# revoked client certificates\n")
    server = Serve(
        "--db", _registered(tmp_path), "--workers", "2", "--watch-interval", watch,
        "--tls-cert", pki / "server.pem", "--tls-key", pki / "server.key",
        "--client-ca", pki / "ca.pem", "--cert-deny", deny,
        "--sbi", "127.0.0.1:0", "--web", "127.0.0.1:0",
    )  # fmt: skip
    serve.append(server)
    assert "0 revoked certificate(s) denied" in server.seen[-1], server.seen[-1]
    web, sbi = (url.replace("127.0.0.1", "localhost") for url in _faces(server))

    def check(name: str) -> tuple[str | Path, ...]:
        key = ("--cert", pki / f"{name}.pem", "--key", pki / f"{name}.key")
        return ("check", CHECKED, "--server", f"localhost:{server.port}", "--ca", pki / "ca.pem",
                *key)  # fmt: skip

    def answers(name: str) -> tuple[int, int]:
        with _mtls(pki, name, http2=True) as n5g, _mtls(pki, name, http2=False) as page:
            return (
                n5g.get(sbi + N5G_QUERY).status_code,
                page.get(f"{web}/api/v1/devices/{CHECKED}").status_code,
            )

    assert ceir(*check("telkomsel")).code == 0
    assert answers("telkomsel") == (200, 200)
    ran = ceir("certs", "revoke", pki / "telkomsel.pem", "--cert-deny", deny)
    assert ran.code == 0, ran.stderr
    assert "revoked telkomsel.pem: CN=telkomsel" in ran.stdout
    assert re.search(r"^sha256:[0-9a-f]{64}  # telkomsel\.pem", deny.read_text(), re.M)
    if watch == "0":
        time.sleep(1.5)  # no watch: nothing changes until the signal
        assert ceir(*check("telkomsel")).code == 0
        server.process.send_signal(signal.SIGHUP)
    _reloaded(server, r"certificate deny-list .*denied\.txt: 1 revoked", 2)
    for _ in range(6):  # new connections: either worker
        one_line(ceir(*check("telkomsel")), 9, "UNAUTHENTICATED", "client certificate revoked")
        assert answers("telkomsel") == (401, 401)
    assert ceir(*check("indosat")).code == 0
    assert answers("indosat") == (200, 200)
    with _mtls(pki, "telkomsel", http2=True) as n5g:
        body = n5g.get(sbi + N5G_QUERY).json()
    assert body["detail"] == "client certificate revoked"
    assert server.process.poll() is None
