"""``scripts/edge-demo``: a broker, the central and five operators' replicas, each one's
ports printed, all stopped at the end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_edge_demo_starts_the_five_operators_and_stops_them(tmp_path: Path) -> None:
    """Every operator line names its MCC-MNC and a gRPC port; the demo ends with 'stopped'."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.edge_demo", "--dir", str(tmp_path), "--for", "1"],
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    lines = done.stdout.splitlines()
    for name, mcc_mnc in (
        ("telkomsel", "510-10"),
        ("indosat", "510-01"),
        ("xl", "510-11"),
        ("tri", "510-89"),
        ("smartfren", "510-09"),
    ):
        assert any(re.match(rf"{name}\s+{mcc_mnc}  grpc 127\.0\.0\.1:\d+", x) for x in lines)
        assert f"for operator {mcc_mnc}" in (tmp_path / f"{name}.log").read_text()
    assert lines[-1] == "stopped"
