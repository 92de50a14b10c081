"""loadtest.bench_core runs end to end on a tiny store and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import bench_core

ROWS = (
    "bare txn.get, one read txn (floor)",
    "Store.get_many, 100/txn",
    "Checker.check_many, 100/batch",
    "Checker.check_packed, 100/batch",
    "CheckIMEI unary, 4 in flight",
    "CheckIMEIBatch 100/call, 2 in flight",
    "CheckPacked 100/call, 2 in flight",
)


def test_bench_core_runs_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny run builds the store, checks answers, and prints every row with a rate."""
    argv = ["--db", str(tmp_path / "store"), "--entries", "3000", "--lookups", "2000"]
    argv += ["--batch", "100", "--seconds", "0.2"]
    argv += ["--unary-concurrency", "4", "--batch-concurrency", "2"]
    bench_core.main(argv)
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("row ")))
    table = lines[header + 1 : header + 1 + len(ROWS)]
    assert [line[:46].strip() for line in table] == list(ROWS)
    for line in table:
        assert float(line[46:].split()[0].replace(",", "")) > 0
    assert table[0].split()[-2] == "100.0%"
