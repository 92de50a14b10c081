"""`./scripts/gen-proto`: the committed ceir/v1 is what proto/ generates, venv or not."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gen_proto_check_passes_without_an_activated_venv() -> None:
    """With only the system PATH (no venv bin), --check finds the plugins and finds no diff."""
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "gen-proto"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "differs" not in proc.stderr
