"""``./scripts/bench-s13``: every row is measured and printed, every answer checked."""

from __future__ import annotations

import pytest

from loadtest import bench_s13


def test_bench_s13_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run prints the codec, hot-path, 1- and N-connection S13 rows and the gRPC
    baseline, each with a rate (and the load rows with p50/p99)."""
    bench_s13.main(["--devices", "2000", "--seconds", "0.5", "--ecrs", "300", "--connections", "3"])
    out = capsys.readouterr().out
    for name in (
        "codec (python-diameter) + lookup",
        "decode only (python-diameter)",
        "hot path + lookup",
        "s13 1 conn ",
        "s13 3 conns",
        "grpc unary CheckIMEI (baseline)",
    ):
        line = next(line for line in out.splitlines() if line.startswith(name))
        rate = float(line[len(name) :].split()[0].replace(",", ""))
        assert rate > 0, line
