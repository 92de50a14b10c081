"""A few rounds of scripts/crash: SIGKILLed server and imports lose no acknowledged write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_three_rounds_of_sigkill_lose_nothing() -> None:
    """Kill `ceir serve` and `ceir import` at random 3 times: verify passes, no losses,
    resumed imports neither lose nor repeat rows."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_crash.py"), "--rounds", "3", "--rows", "3000",
         "--max-wait", "1.0"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("rounds 3, ")
    assert last.endswith("losses 0, problems 0")
