"""/metrics across worker processes: one answer for all of them, a private directory that
is wiped at the end, and a dead worker's live gauges dropped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)
CEIR = str(Path(sys.executable).parent / "ceir")


def _wait(log: Path, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in:\n{log.read_text()}")


def test_dead_worker_gauges_are_dropped_and_the_directory_removed(tmp_path: Path) -> None:
    """Kill one of two workers: its live gauge file goes, the other's stays, /metrics still
    answers for all; the private (0700) directory is gone after SIGTERM."""
    log = tmp_path / "serve.log"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--workers", "2",
             "--web", "127.0.0.1:0", "--grace", "1"],
            stdout=handle, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            start = _wait(log, r"2 worker processes \(pids (\d+) (\d+)\)")
            pids = (int(start.group(1)), int(start.group(2)))
            base = _wait(log, r"/metrics on (http://127\.0\.0\.1:\d+)").group(1)
            for _ in range(20):  # some requests to each worker (the kernel spreads them)
                with urllib.request.urlopen(base + "/version", timeout=10) as response:
                    assert response.status == 200
            (directory,) = tmp_path.glob("ceir-metrics-*")
            assert oct(directory.stat().st_mode & 0o777) == "0o700"
            live = {pid: directory / f"gauge_livemax_{pid}.db" for pid in pids}
            assert all(path.exists() for path in live.values())
            os.kill(pids[0], signal.SIGKILL)
            _wait(log, rf"worker \d \(pid {pids[0]}\) died")
            deadline = time.monotonic() + 10
            while live[pids[0]].exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not live[pids[0]].exists()
            assert live[pids[1]].exists()
            with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
                text = response.read().decode()
            assert 'ceir_request_duration_seconds_count{face="web",method="version"' in text
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert list(tmp_path.glob("ceir-metrics-*")) == []
