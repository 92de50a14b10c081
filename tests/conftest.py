"""Shared fixtures: a temporary store that is always closed, and a running server.

The server is the real aio server from :func:`ceir.server.app.create_server`, bound to
127.0.0.1 port 0 and run on its own event loop in a background thread, so tests talk to
it over real gRPC with a plain synchronous channel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import settings

from ceir.config import Settings
from ceir.server.app import CeirServer, create_server
from ceir.store import Store, demo, open_store
from ceir.v1 import device_check_pb2_grpc, eir_pb2_grpc

T = TypeVar("T")


# A loaded 2-core machine must not turn slow examples into failures; example counts are
# set per test where a property deserves more (or fewer) than the default.
settings.register_profile("ceir", deadline=None)
settings.load_profile("ceir")

# Every `ceir serve` a test starts binds its faces to free ports, never the fixed
# defaults (other engineers' tests run at the same time); a test may still pass --s13/--sbi.
os.environ.setdefault("CEIR_S13", "127.0.0.1:0")
os.environ.setdefault("CEIR_WEB", "127.0.0.1:0")
os.environ.setdefault("CEIR_SBI", "127.0.0.1:0")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty store in a temporary directory, closed after the test."""
    with open_store(tmp_path / "store") as opened:
        yield opened


@dataclass(frozen=True)
class RunningServer:
    """A started server and a channel to it."""

    port: int
    store: Store
    settings: Settings
    channel: grpc.Channel
    eir: eir_pb2_grpc.EquipmentIdentityRegisterStub
    device_check: device_check_pb2_grpc.DeviceCheckStub
    loaded_at: int
    """Unix seconds the demo data was dated from (0 if no demo data)."""
    server: CeirServer
    loop: asyncio.AbstractEventLoop

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def begin_stop(self, grace: float | None) -> concurrent.futures.Future[None]:
        """Start the graceful stop (as SIGTERM does) without waiting for it to finish."""
        return asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)


class _LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@contextlib.contextmanager
def run_server(path: Path, *, load_demo: bool = True, **overrides: Any) -> Iterator[RunningServer]:
    """Open a store at *path* (demo data unless told not to) and serve it on port 0."""
    overrides.setdefault("s13", "127.0.0.1:0")
    overrides.setdefault("web", "127.0.0.1:0")
    overrides.setdefault("sbi", "127.0.0.1:0")
    server_settings = Settings(db=path, host="127.0.0.1", port=0, **overrides)
    loaded_at = int(time.time()) if load_demo else 0
    with open_store(path) as opened:
        if load_demo:
            demo.load(opened, now=loaded_at)
        loop = _LoopThread()

        async def start() -> tuple[CeirServer, int]:
            server, port = create_server(server_settings, opened)
            await server.start()
            return server, port

        try:
            server, port = loop.run(start())
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    yield RunningServer(
                        port=port,
                        store=opened,
                        settings=server_settings,
                        channel=channel,
                        eir=eir_pb2_grpc.EquipmentIdentityRegisterStub(channel),
                        device_check=device_check_pb2_grpc.DeviceCheckStub(channel),
                        loaded_at=loaded_at,
                        server=server,
                        loop=loop.loop,
                    )
            finally:
                loop.run(server.stop(None))
        finally:
            loop.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server on the demo data with default settings, shared by a test module."""
    with run_server(tmp_path_factory.mktemp("demo") / "store") as running:
        yield running
