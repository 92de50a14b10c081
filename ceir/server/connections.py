"""A cap on the concurrent connections one address may hold, on every face.

3,000 connections from one address held 3,000 descriptors; the handshake timeout
(:class:`ceir.server.transport.TransportLimits`) ends those that never start, this ends
the excess of those that do. Counts are per server process (``--workers`` processes
each count their own: the kernel spreads one address's connections over them).

- The faces on asyncio (N5g-eir, S13, the web page) wrap their protocol factory in
  :func:`capped`: a connection past the cap is aborted as it is accepted (over TLS, once
  its handshake is done; the handshake itself is bounded by the handshake timeout).
- grpcio's server has no per-connection hook, so for the gRPC port :class:`GrpcSweeper`
  looks at the process's own sockets (``/proc/self/fd``) four times a second and shuts
  down those past the cap (the newest first: socket inode numbers grow with age), which
  gRPC then closes: within a quarter of a second, not at once. Linux only; elsewhere the
  gRPC port is not capped, and the log says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

__all__ = ["AddressCap", "GrpcSweeper", "capped"]

log = logging.getLogger("ceir.server.connections")


class AddressCap:
    """Open connections per remote address, and the most one address may have."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: collections.Counter[str] = collections.Counter()
        self.refused = 0

    def take(self, address: str) -> bool:
        """Count a new connection from *address*; False (and nothing counted) past the cap."""
        if self.open[address] >= self.limit:
            self.refused += 1
            return False
        self.open[address] += 1
        return True

    def give_back(self, address: str) -> None:
        left = self.open[address] - 1
        if left > 0:
            self.open[address] = left
        else:
            del self.open[address]


def _host(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class _Capped(asyncio.Protocol):
    """The face's own protocol behind the cap: told of the connection only if admitted."""

    def __init__(self, inner: asyncio.Protocol, cap: AddressCap, face: str) -> None:
        self.inner = inner
        self.cap = cap
        self.face = face
        self.address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = _host(transport)
        if not self.cap.take(address):
            if self.cap.refused in (1, 10, 100) or self.cap.refused % 1000 == 0:  # flood-cut
                log.warning(
                    "%s: refused a connection from %s: it holds %d (--max-connections-per-"
                    "address); %d refused so far", self.face, address, self.cap.limit,
                    self.cap.refused,
                )  # fmt: skip
            cast(asyncio.Transport, transport).abort()  # uvloop's is not a subclass
            return
        self.address = address
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is None:
            return
        self.cap.give_back(self.address)
        self.address = None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.address is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.address is not None else None

    def pause_writing(self) -> None:
        if self.address is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.address is not None:
            self.inner.resume_writing()


def capped(factory: Callable[[], Any], limit: int, face: str) -> Callable[[], asyncio.Protocol]:
    """*factory* (an asyncio protocol factory) with at most *limit* concurrent connections
    per remote address; 0: *factory* itself."""
    if limit <= 0:
        return factory
    cap = AddressCap(limit)
    return lambda: _Capped(factory(), cap, face)


# -- the gRPC port --------------------------------------------------------------------------

_LOG_EVERY = 10.0
_FDS = Path("/proc/self/fd")


def _inspect(fd: int, port: int) -> str | None:
    """The remote address of the connection on *fd* if it is one accepted on local *port*;
    None for anything else (the listener, other faces, files)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        with socket.socket(fileno=dup) as sock:
            dup = -1  # the socket object closes it
            if sock.type != socket.SOCK_STREAM or sock.getsockname()[1] != port:
                return None
            return str(sock.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return None  # not a socket, not connected, not TCP
    finally:
        if dup >= 0:
            os.close(dup)


def _shut(fd: int, inode: int) -> bool:
    """Shut down the connection on *fd* if it is still socket *inode* (the number may have
    been reused since it was looked at); gRPC sees it end and closes it."""
    try:
        dup = os.dup(fd)
    except OSError:
        return False
    try:
        if os.fstat(dup).st_ino != inode:
            return False
        with socket.socket(fileno=dup) as sock:
            dup = -1
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return True
    finally:
        if dup >= 0:
            os.close(dup)


class GrpcSweeper:
    """Shuts down this process's gRPC connections past the per-address cap.

    Each look lists the process's descriptors (``/proc/self/fd``); a socket seen for the
    first time is asked its local port and peer once (its inode identifies it after)."""

    def __init__(self, port: int, limit: int, *, interval: float = 0.25) -> None:
        self.port = port
        self.limit = limit
        self.interval = interval
        self.closed = 0
        self._known: dict[int, str | None] = {}  # socket inode -> peer address or None
        self._logged = -_LOG_EVERY

    @staticmethod
    def available() -> bool:
        return _FDS.is_dir()

    def connections(self) -> dict[str, list[tuple[int, int]]]:
        """Remote address -> (inode, fd) of this process's connections on the port."""
        found: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        known: dict[int, str | None] = {}
        try:
            names = os.listdir(_FDS)
        except OSError:
            return found
        for name in names:
            try:
                target = os.readlink(f"{_FDS}/{name}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            inode, fd = int(target[8:-1]), int(name)
            peer = self._known[inode] if inode in self._known else _inspect(fd, self.port)
            known[inode] = peer
            if peer is not None:
                found[peer].append((inode, fd))
        self._known = known  # forget closed sockets
        return found

    def sweep(self) -> int:
        """One look: shut down the excess connections (the newest); how many."""
        shut = 0
        for held in self.connections().values():
            if len(held) > self.limit:
                shut += sum(_shut(fd, inode) for inode, fd in sorted(held)[self.limit :])
        self.closed += shut
        now = time.monotonic()
        if shut and now - self._logged >= _LOG_EVERY:  # flood-cut: one line per 10 s
            self._logged = now
            log.warning(
                "gRPC: closed %d connection(s) past %d per address (--max-connections-per-"
                "address); %d so far", shut, self.limit, self.closed,
            )  # fmt: skip
        return shut

    async def run(self) -> None:
        """Sweep every *interval* seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.sweep()
