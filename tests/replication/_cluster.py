"""Real processes for replication tests: a broker, ``ceir serve --publish`` and
``ceir replica`` subprocesses, and the checks every fault test ends with."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ceir.replication.keys import generate
from ceir.v1 import replication_pb2, replication_pb2_grpc
from loadtest.edge import NatsServer, Node

CEIR = str(Path(sys.executable).parent / "ceir")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            if check():
                return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Proc(Node):
    """A node with the calls the tests make to it."""

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def call(self, method: str, request: Any) -> Any:
        with self.channel() as channel:
            stub = replication_pb2_grpc.ReplicationStub(channel)
            return getattr(stub, method)(request, timeout=30)

    def status(self) -> replication_pb2.ReplicationStatusResponse:
        return self.call("Status", replication_pb2.ReplicationStatusRequest())

    def digest(self) -> replication_pb2.DigestResponse:
        return self.call("Digest", replication_pb2.DigestRequest())

    def health(self) -> int:
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            return int(reply.status)


@dataclass
class Cluster:
    """A broker, the central register and its replicas, all in *root*."""

    root: Path
    broker: NatsServer
    keys: tuple[Path, Path]
    central: Proc
    replicas: list[Proc] = field(default_factory=list)

    @property
    def central_db(self) -> Path:
        return self.root / "central"

    def add_replica(self, name: str = "r1", *extra: str, start: bool = True) -> Proc:
        proc = Proc(
            [
                "replica",
                "--db",
                str(self.root / name),
                "--nats",
                self.broker.url,
                "--source",
                self.central.address,
                "--verify-key",
                str(self.keys[1]),
                *extra,
            ],
            self.root / f"{name}.log",
        )
        self.replicas.append(proc)
        return proc.start() if start else proc

    def ceir(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CEIR, *args], capture_output=True, text=True, check=check, timeout=120
        )

    def gen_feed(self, kind: str, rows: int, start: int) -> Path:
        out = self.root / f"{kind}-{start}-{rows}.csv"
        self.ceir("gen", kind, str(out), "--rows", str(rows), "--start", str(start), "-q")
        return out

    def import_feed(self, kind: str, path: Path, *extra: str) -> None:
        self.ceir("import", kind, str(path), "--db", str(self.central_db), "-q", *extra)

    def manufacturer(self, rows: int, start: int) -> None:
        """Import *rows* new manufacturer registrations (TACs first) on the central."""
        tacs = self.root / "tacs.csv"
        if not tacs.exists():
            self.ceir("gen", "tac", str(tacs), "--rows", "500", "-q")
            self.import_feed("tac", tacs)
        path = self.gen_feed("manufacturer", rows, start)
        self.import_feed(
            "manufacturer", path, "--max-new-devices", str(rows + 1), "--rejects", str(path) + ".r"
        )

    def converged(self, replica: Proc, timeout: float = 60.0) -> None:
        """Wait until *replica* has applied the central's head; then digests are equal."""

        def caught_up() -> bool:
            head = self.central.status().applied_sequence
            return replica.status().applied_sequence == head

        wait_for(f"{replica.args[2]} to catch up", caught_up, timeout)
        central, copy = self.central.digest(), replica.digest()
        assert copy.sequence == central.sequence
        differ = [
            a.range
            for a, b in zip(central.ranges, copy.ranges, strict=True)
            if a.sha256 != b.sha256
        ]
        assert differ == []
        assert [r.count for r in copy.ranges] == [r.count for r in central.ranges]


@contextlib.contextmanager
def cluster(root: Path, *central_extra: str) -> Iterator[Cluster]:
    keys = generate(root / "keys")
    with NatsServer.running(root / "nats") as broker:
        central = Proc(
            [
                "serve",
                "--db",
                str(root / "central"),
                "--publish",
                broker.url,
                "--signing-key",
                str(keys[0]),
                *central_extra,
            ],
            root / "central.log",
        )
        made = Cluster(root, broker, keys, central)
        try:
            central.start()
            yield made
        finally:
            for proc in made.replicas:
                proc.kill()
            central.kill()
