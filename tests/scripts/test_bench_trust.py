"""scripts/bench-trust: both phases measured against one server, figures printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_trust_prints_both_phases_and_the_ratios() -> None:
    """A short run imports the whole file and prints p50/p99 alone and during the import;
    --repeat 2 does it twice, each table with the load average."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_bench_trust.py"),
         "--rows", "20000", "--lookups", "60", "--reports", "6", "--repeat", "2"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    out = done.stdout
    imports = re.findall(r"^import: 20,000 rows, 20,000 added in [\d.]+ s.*load average "
                         r"[\d.]+ before, [\d.]+ after$", out, re.M)  # fmt: skip
    assert len(imports) == 2, out
    assert "-- run 2 of 2" in out
    for name in ("CheckIMEI", "ReportLostStolen"):
        assert re.search(rf"^{name} alone +\d+ +[\d.]+ +[\d.]+$", out, re.M), out
        assert re.search(rf"^{name} \+ import +\d+ +[\d.]+ +[\d.]+$", out, re.M), out
        assert re.search(rf"^{name} p99 ratio \(import / alone\): [\d.]+$", out, re.M), out
