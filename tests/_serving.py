"""A real server on 127.0.0.1:0 in a background thread, for synchronous test clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from ceir.config import Settings
from ceir.server.app import CeirServer, create_server
from ceir.store import Store, demo, open_store


@dataclasses.dataclass
class Running:
    """A started server: where it listens and what it serves."""

    port: int
    server: CeirServer
    store: Store
    loop: asyncio.AbstractEventLoop

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self, credentials: Any = None, **options: Any) -> grpc.Channel:
        opts = list(options.items())
        if credentials is None:
            return grpc.insecure_channel(self.address, options=opts)
        return grpc.secure_channel(f"localhost:{self.port}", credentials, options=opts)


@contextlib.contextmanager
def serving(settings: Settings, store: Store | None = None) -> Iterator[Running]:
    """Serve *settings* (port forced to 0) on *store* or a demo store at settings.db."""
    # Faces on free ports too (never the fixed defaults: other tests run at the same time).
    s13 = "127.0.0.1:0" if settings.s13_address else "off"
    web = "127.0.0.1:0" if settings.web_address else "off"
    sbi = "127.0.0.1:0" if settings.sbi_address else "off"
    settings = dataclasses.replace(settings, port=0, s13=s13, web=web, sbi=sbi)
    own = store is None
    if store is None:
        store = open_store(Path(settings.db))
        if store.device_count() == 0:
            demo.load(store)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            server, port = create_server(settings, store)
            await server.start()
        except Exception as exc:  # handed to the test thread, raised there
            box["error"] = exc
            started.set()
            return
        box["server"], box["port"] = server, port
        started.set()
        await stop.wait()
        await server.stop(0)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        if "error" in box:
            raise box["error"]
        yield Running(box["port"], box["server"], store, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
        if own:
            store.close()
