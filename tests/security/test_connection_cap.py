"""Issue 10 §4: one address cannot hold the server's descriptors. Past
``--max-connections-per-address`` its connections are closed, on the gRPC port and on
the N5g-eir, S13 and web faces, long before the 5 s handshake timeout would."""

from __future__ import annotations

import contextlib
import errno
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_first_hour import Serve, ceir

HELD = 80
"""Raw connections the test opens to each port from 127.0.0.1."""
CAP = 6
CUT_WITHIN = 2.5
"""Seconds by which the excess must be closed (the handshake timeout is 5 s)."""


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


def _open(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        held.append(sock)
    return held


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed *sock* (EOF or reset); what it sent is read away."""
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError as exc:
            return exc.errno in (errno.ECONNRESET, errno.EPIPE)
        if not data:
            return True


def _closed_within(held: list[socket.socket], within: float) -> set[socket.socket]:
    """Which of *held* the server has closed within *within* seconds."""
    deadline = time.monotonic() + within
    closed: set[socket.socket] = set()
    while time.monotonic() < deadline:
        watching = [sock for sock in held if sock not in closed]
        readable, _, _ = select.select(watching, [], [], 0.1)
        closed.update(sock for sock in readable if _closed_by_peer(sock))
    return closed


@pytest.mark.parametrize("workers", ["1", "2"])
def test_one_address_cannot_hold_more_than_the_cap_on_any_port(
    tmp_path: Path, serve: list[Serve], workers: str
) -> None:
    """80 raw connections from one address to each port (gRPC, N5g-eir, S13, web): within
    2.5 s each worker keeps at most the cap and closes the rest; once they are gone, a
    normal client is served again."""
    server = Serve(
        "--db", tmp_path / "db", "--workers", workers,
        "--max-connections-per-address", str(CAP),
        "--sbi", "127.0.0.1:0", "--web", "127.0.0.1:0", "--s13", "127.0.0.1:0",
    )  # fmt: skip
    serve.append(server)
    line = server.seen[-1]
    ports = {"grpc": server.port}
    for face, pattern in (
        ("sbi", r"N5g-eir on http://127\.0\.0\.1:(\d+)"),
        ("web", r"/metrics on http://127\.0\.0\.1:(\d+)"),
        ("s13", r"S13 Diameter on 127\.0\.0\.1:(\d+)"),
    ):
        found = re.search(pattern, line)
        assert found is not None, line
        ports[face] = int(found.group(1))
    allowed = CAP * int(workers)  # each worker counts its own connections
    held = {face: _open(port, HELD) for face, port in ports.items()}
    try:
        closed = _closed_within([sock for socks in held.values() for sock in socks], CUT_WITHIN)
        left = {face: sum(sock not in closed for sock in socks) for face, socks in held.items()}
        for face, count in left.items():
            assert count <= allowed, (face, left)
            assert count >= 1, (face, left)  # capped, not refused outright
    finally:
        for socks in held.values():
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.close()
    time.sleep(0.5)
    ran = ceir("check", "352099001761481", "--server", server.address)
    assert ran.code == 0, ran.stderr
    server.wait_for(r"WARNING .*max-connections-per-address")
