"""scripts/bench (loadtest.bench) runs end to end on tiny stores and prints every row."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bench

pytestmark = pytest.mark.timeout(120)


def test_bench_prints_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run (no Redis, no SQLite) prints the floor, every gRPC form for 1 and N
    workers and the small-store rows, each with a positive rate."""
    argv = ["--dir", str(tmp_path), "--entries", "3000", "--small", "2000", "--lookups", "2000"]
    argv += ["--seconds", "0.3", "--workers", "2", "--no-redis", "--no-sqlite"]
    argv += ["--json", str(tmp_path / "rows.json")]
    bench.main(argv)
    out = capsys.readouterr().out
    for name in (
        "bare txn.get, one read txn (floor)",
        "Checker.check_batch 1,000",
        "empty grpcio unary handler",
        "CheckIMEI unary",
        "CheckIMEIBatch 1,000/call",
        "CheckIMEIStream 1/message",
        "CheckIMEIStream 1,000/message",
        "ceir.client coalesced",
        "CheckPacked 1,000/call",
    ):
        assert name in out
    assert "-- ceir gRPC, 2 worker processes" in out
    assert "-- 2,000 devices" in out
    assert (tmp_path / "rows.json").stat().st_size > 0
