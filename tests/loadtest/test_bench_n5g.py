"""The N5g-eir benchmark rows: h2load against a real `ceir serve`, gRPC beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadtest import bench_core, bench_n5g, sbi_servers

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        shutil.which("h2load") is None,
        reason="h2load is not installed (Debian: apt-get install nghttp2-client)",
    ),
]


def test_server_rows_measure_n5g_and_grpc(tmp_path: Path) -> None:
    """The three h2load rows and the unary gRPC row come out of one server, with server CPU per
    request and latency percentiles; every h2load answer was 2xx (else it raises)."""
    db = tmp_path / "store"
    keys = bench_core.build_store(db, 5_000)
    rows = bench_n5g.server_rows(db, bench_n5g._imeis(keys, 500), 1, 3_000, 1.0, "g")
    assert [r.name.split(" ")[0] for r in rows] == ["N5g-eir", "N5g-eir", "N5g-eir", "CheckIMEI"]
    for row in rows:
        assert row.imeis_per_s > 0
        assert row.cpu_us is not None
        assert row.cpu_us > 0
        assert row.p50_ms is not None
        assert row.p99_ms is not None
        assert row.p50_ms <= row.p99_ms


def test_h2load_output_is_read(tmp_path: Path) -> None:
    """The candidates' measurement reads h2load's totals and its per-request log."""
    name, result = sbi_servers.measure("h2", 2_000)
    assert name == "h2"
    assert not isinstance(result, str)
    assert result.requests == result.succeeded == 2_000
    assert result.per_second > 0
    assert 0 < result.p50_ms <= result.p99_ms
