"""A central that authenticates: a replica bootstraps with a bearer token of role
``replica``; without one it is refused and stays NOT_SERVING."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.replication._cluster import CEIR, cluster, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _token(tokens: Path, name: str, role: str) -> str:
    import subprocess

    out = subprocess.run(
        [CEIR, "token", "add", name, "--role", role, "--tokens", str(tokens)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"\b([A-Za-z0-9_\-]{32,})\b", out)
    assert found, out
    return found.group(1)


def test_only_a_replica_principal_gets_the_snapshot(tmp_path: Path) -> None:
    """Token of role replica: bootstrapped and serving; no token: refused, not serving."""
    tokens = tmp_path / "tokens.json"
    secret = _token(tokens, "edge-510-10", "replica")
    with cluster(tmp_path, "--tokens", str(tokens)) as c:
        r = c.add_replica("r1", "--source-token", secret)
        wait_for("SERVING", lambda: r.health() == health_pb2.HealthCheckResponse.SERVING)
        anonymous = c.add_replica("r2")
        wait_for("a refusal", lambda: "cannot bootstrap" in anonymous.log.read_text())
        assert "UNAUTHENTICATED" in anonymous.log.read_text()
        assert anonymous.health() == health_pb2.HealthCheckResponse.NOT_SERVING


def _certs(root: Path) -> Path:
    import subprocess

    directory = root / "certs"
    subprocess.run([CEIR, "certs", str(directory)], capture_output=True, check=True)
    return directory


def _mutual(certs: Path) -> tuple[str, ...]:
    return (
        *("--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")),
        *("--client-ca", str(certs / "ca.pem")),
    )


def _present(certs: Path, name: str) -> tuple[str, ...]:
    return (
        *("--source-ca", str(certs / "ca.pem")),
        *("--source-cert", str(certs / f"{name}.pem"), "--source-key", str(certs / f"{name}.key")),
    )


def test_a_replica_certificate_gets_the_snapshot_over_mutual_tls(tmp_path: Path) -> None:
    """Central with --client-ca: a replica presenting `ceir certs`' replica.pem bootstraps,
    follows and ends equal (digest, compared as admin over mutual TLS); an operator's
    certificate is refused (PERMISSION_DENIED) and no certificate at all fails the
    handshake: both stay NOT_SERVING."""
    certs = _certs(tmp_path)
    with cluster(tmp_path, *_mutual(certs)) as c:
        r = c.add_replica("r1", *_present(certs, "replica"))
        wait_for("SERVING", lambda: r.health() == health_pb2.HealthCheckResponse.SERVING)
        c.manufacturer(1_000, 0)
        admin = ("--ca", str(certs / "ca.pem"))
        admin += ("--cert", str(certs / "admin.pem"), "--key", str(certs / "admin.key"))
        central = f"localhost:{c.central.port}"
        same = c.ceir(
            *("verify", "--db", str(tmp_path / "r1"), "--compare", central, "--wait", "60"),
            *admin,
            check=False,
        )
        assert same.returncode == 0, same.stderr
        assert "every digest equal" in same.stdout
        assert r.status().applied_sequence > 0
        operator = c.add_replica("r2", *_present(certs, "telkomsel"))
        bare = c.add_replica("r3", "--source-ca", str(certs / "ca.pem"))
        for refused in (operator, bare):
            wait_for("a refusal", lambda p=refused: "cannot bootstrap" in p.log.read_text())
        assert "PERMISSION_DENIED" in operator.log.read_text()
        for refused in (operator, bare):
            assert refused.health() == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--source-cert", "replica.pem"), "--source-cert and --source-key go together"),
        (
            ("--source-cert", "replica.pem", "--source-key", "replica.key"),
            "--source-cert needs --source-ca",
        ),
        (
            ("--source-ca", "ca.pem", "--source-cert", "replica.pem", "--source-key", "admin.key"),
            "does not belong to the certificate",
        ),
        (
            ("--source-ca", "missing.pem"),
            "cannot read the central's CA certificate",
        ),
    ],
)
def test_client_certificate_flags_that_do_not_fit_are_one_line_errors(
    tmp_path: Path, flags: tuple[str, ...], says: str
) -> None:
    """A lone --source-cert, a cert without --source-ca, a key of another certificate and
    an unreadable file: exit 6 (configuration) with one line naming the problem."""
    import subprocess

    certs = _certs(tmp_path)
    keys = tmp_path / "keys"
    subprocess.run([CEIR, "replica", "keygen", str(keys)], capture_output=True, check=True)
    done = subprocess.run(
        [
            *(CEIR, "replica", "--db", str(tmp_path / "r"), "--nats", "nats://127.0.0.1:1"),
            *("--source", "127.0.0.1:1", "--verify-key", str(keys / "verify.pem")),
            *(f if f.startswith("--") else str(certs / f) for f in flags),
            *("--port", "0", "--s13", "off", "--sbi", "off", "--web", "off"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 6, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
