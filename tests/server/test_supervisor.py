"""``ceir serve --workers N``: processes sharing the port, restarts, draining, no orphans."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.v1 import eir_pb2, eir_pb2_grpc

pytestmark = pytest.mark.timeout(60)
CEIR = str(Path(sys.executable).parent / "ceir")


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path, handle: IO[str]) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.handle = handle

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    def recorder(self) -> int:
        """The recorder process's pid, as the start-up line names it (recording is on)."""
        found = re.search(r"in the recorder process \(pid (\d+)\)", self.log.read_text())
        assert found, self.log.read_text()
        return int(found.group(1))

    def workers(self) -> set[int]:
        return self.children() - {self.recorder()}


def _start(tmp_path: Path, *args: str) -> Served:
    log = tmp_path / "serve.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return Served(proc, int(found.group(1)), log, handle)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    handle.close()
    raise AssertionError(f"ceir serve did not start:\n{log.read_text()}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = _start(tmp_path, "--workers", "2", "--grace", "1")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.handle.close()


def _check(port: int, imei: str = "352099001761481") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(channel)
        response = stub.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=imei), timeout=10)
    return int(response.status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] != "Z"


def test_two_workers_share_the_port_and_answer(served: Served) -> None:
    """With --workers 2 the parent has two worker processes (and the recorder process)
    and the port answers."""
    assert len(served.workers()) == 2
    assert served.recorder() in served.children()
    assert "; 2 worker processes (pids " in served.log.read_text()
    assert {_check(served.port) for _ in range(10)} == {1}


def test_dead_worker_is_replaced(served: Served) -> None:
    """A worker killed with SIGKILL is restarted and the port keeps answering."""
    victim = min(served.workers())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = served.workers()
        if len(children) == 2 and victim not in children:
            break
        time.sleep(0.05)
    assert len(children) == 2
    assert victim not in children
    assert "restarting it" in served.log.read_text()
    assert _check(served.port) == 1


def test_sigterm_drains_all_workers_and_exits_zero(served: Served) -> None:
    """SIGTERM to the parent stops every worker and the recorder, and the parent exits 0."""
    workers = served.children()
    assert len(workers) == 3
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=20) == 0
    assert not any(_alive(pid) for pid in workers)
    assert "(2 workers, signal 15)" in served.log.read_text()


def test_killed_parent_leaves_no_orphans(served: Served) -> None:
    """SIGKILL to the parent: the workers and the recorder get SIGTERM from the kernel
    and exit."""
    workers = served.children()
    assert len(workers) == 3
    served.proc.kill()
    served.proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


def test_taken_port_is_a_config_error(tmp_path: Path) -> None:
    """A port held by another program fails at once with exit code 6 and a clear message."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", str(port), "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 6
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_negative_workers_is_refused() -> None:
    """Settings(workers=-1) is a ConfigError."""
    with pytest.raises(ConfigError, match="workers"):
        Settings(workers=-1)


_BEFORE_FORK = """
import os, sys
from pathlib import Path
from ceir.config import Settings
from ceir.security.certs import write_dev_pki
from ceir.server import supervisor

tmp = Path(sys.argv[1])
pki = tmp / "pki"
write_dev_pki(pki)

def fork():
    print("grpc imported before fork:", sorted(m for m in sys.modules if m.split(".")[0] == "grpc"))
    sys.stdout.flush()
    os._exit(0)

os.fork = fork
supervisor.serve(Settings(
    db=tmp / "db", port=0, workers=2, tls_cert=pki / "server.pem",
    tls_key=pki / "server.key", client_ca=pki / "ca.pem",
    s13="off", web="off", sbi="off",  # no fixed ports: other servers may hold them
))
"""


def test_supervisor_imports_no_grpc_before_it_forks(tmp_path: Path) -> None:
    """With TLS, mutual TLS and workers, the parent has not imported grpc when it forks."""
    proc = subprocess.run(
        [sys.executable, "-c", _BEFORE_FORK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "grpc imported before fork: []"
