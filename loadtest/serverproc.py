"""``ceir serve`` in a subprocess for load tests and benchmarks, with its CPU use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from loadtest.engine import Face

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of *pid* and its live descendants (Linux /proc), 0 if gone."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / _TICK
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(c)) for c in children)


class ServerProcess:
    """``ceir serve --workers N`` on *db*, on a free loopback port; stop() when done."""

    def __init__(self, db: Path, *, workers: int, extra: tuple[str, ...] = ()) -> None:
        command = [sys.executable, "-c", "from ceir.cli import run; run()", "serve"]
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter running ceir, fixed args
            [
                *command,
                "--db",
                str(db),
                "--port",
                "0",
                "--no-demo",
                "--grace",
                "1",
                "--workers",
                str(workers),
                # Every face on a free port too, named in the same start-up line.
                "--s13",
                "127.0.0.1:0",
                "--web",
                "127.0.0.1:0",
                "--sbi",
                "127.0.0.1:0",
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.workers = workers
        self.log: list[str] = []
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.address = f"127.0.0.1:{found.group(1)}"
                s13 = re.search(r"S13 Diameter on (127\.0\.0\.1:\d+)", line)
                self.addresses = {Face.GRPC: self.address}
                if s13:
                    self.addresses[Face.S13] = s13.group(1)
                web = re.search(r"/metrics on (http://127\.0\.0\.1:\d+)", line)
                self.web = web.group(1) if web else None
                """The web face's base URL (/metrics, /api/v1), None if it is off."""
                sbi = re.search(r"N5g-eir on (https?://\S+)", line)
                if sbi:
                    self.addresses[Face.N5G] = sbi.group(1)  # the apiRoot
                break
        else:
            raise RuntimeError(
                f"ceir serve did not start (exit {self.process.wait()}):\n{''.join(self.log)}"
            )
        # Keep draining stderr so the server never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def cpu_seconds(self) -> float:
        """CPU the server (all its worker processes) has used so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
