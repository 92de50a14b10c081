"""A few seconds of scripts/soak: no errors, no wrong answers, flat memory, clean exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_has_no_errors_and_flat_memory() -> None:
    """Mixed load with connection churn for 3 s: every answer right, server exits 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_soak.py"), "--duration", "3",
         "--concurrency", "3", "--max-growth", "0.5"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors 0 , wrong answers 0" in result.stdout
    assert "server exit 0" in result.stdout
