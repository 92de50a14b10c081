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
