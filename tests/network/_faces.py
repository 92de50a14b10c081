"""Real faces on 127.0.0.1:0 in a background event loop, for synchronous test clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from ceir.config import Settings
from ceir.network.n5g_eir import N5gEirFace
from ceir.policy import Policy
from ceir.server import access
from ceir.server.app import create_faces, nrf_agents
from ceir.server.faces import Face
from ceir.store import Store

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


async def start_all(faces: list[Face]) -> None:
    for face in faces:
        await face.start()


async def stop_all(faces: list[Face], grace: float | None) -> None:
    await asyncio.gather(*(face.stop(grace) for face in faces))


def configured(settings: Settings, store: Store) -> list[Face]:
    """The faces ``ceir serve`` would create for *settings*, S13 and web off (they have
    their own tests)."""
    settings = dataclasses.replace(settings, s13="off", web="off")
    gate, security = access.from_settings(settings)
    policy = Policy(settings.unknown_status.status)
    faces = create_faces(settings, store, policy, gate, security)
    return faces + nrf_agents(settings, faces)


@dataclasses.dataclass
class RunningFaces:
    faces: list[Face]
    loop: LoopThread

    @property
    def n5g(self) -> N5gEirFace:
        return next(f for f in self.faces if isinstance(f, N5gEirFace))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>/n5g-eir-eic/v1/equipment-status``."""
        return self.n5g.url + "/n5g-eir-eic/v1/equipment-status"

    def stop(self, grace: float | None = 0) -> None:
        self.loop.run(stop_all(self.faces, grace))


@contextlib.contextmanager
def running_faces(settings: Settings, store: Store, **created: Any) -> Iterator[RunningFaces]:
    """The faces *settings* configure on *store*, started; the N5g-eir one on port 0
    unless *settings* name a port. *created* replaces faces.configured's result."""
    if settings.sbi == Settings.__dataclass_fields__["sbi"].default:
        settings = dataclasses.replace(settings, sbi="127.0.0.1:0")
    loop = LoopThread()
    try:
        doors = created.get("faces") or configured(settings, store)
        loop.run(start_all(doors))
        running = RunningFaces(doors, loop)
        try:
            yield running
        finally:
            running.stop()
    finally:
        loop.close()
