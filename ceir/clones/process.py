"""The recorder process: one per site, beside ``ceir serve``'s workers.

The supervisor (:mod:`ceir.server.supervisor`) forks it before the workers and stops it
after them. It listens on a unix socket in a private (0700) directory; each worker's
:class:`ceir.sightings.RecorderLink` connects and writes frames of sightings. Here they are
queued (:meth:`ceir.clones.recorder.Recorder.receive`), and the recorder's thread
tokenises, merges, evaluates the conditions and writes — the work that, done inside a
worker, shared its interpreter with the answers. The upstream tasks of the site run here
too: an operator's replica publishes its counts and tokens, the central ingests them
(:mod:`ceir.clones.upstream`).

It runs at a lower CPU priority than the workers (``nice`` +:data:`NICE`): on a busy
machine the answers come first and the recorder catches up later (or drops past its
bound, counted). Clear IMSIs exist only in its memory and the socket's buffers, never in
a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ceir.clones.site import clone_site
from ceir.config import Settings
from ceir.sightings import read_frames
from ceir.store import open_store

if TYPE_CHECKING:
    from ceir.clones.recorder import Recorder
    from ceir.server.faces import Face

__all__ = ["NICE", "SOCKET_NAME", "run"]

log = logging.getLogger("ceir.clones")

NICE = 19
"""How much lower the recorder's CPU priority is than the workers'."""
SOCKET_NAME = "recorder.sock"


def run(settings: Settings, path: Path, ready_fd: int) -> int:
    """Serve *path* until SIGTERM, then take what the workers still send, write it, exit.
    Writes ``ready`` (or ``error …``) to *ready_fd* once listening."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    store = open_store(settings.db, durable=not settings.replica)
    try:
        site = clone_site(settings, store)
        assert site.recorder is not None  # settings.observe: the supervisor checked
        with asyncio.Runner() as runner:
            runner.run(_main(site.faces, site.recorder, path, ready_fd, settings.grace))
    finally:
        store.close()
    return 0


async def _main(
    faces: list[Face], recorder: Recorder, path: Path, ready_fd: int, grace: float
) -> None:
    started: list[Face] = []
    connections: set[asyncio.Task[None]] = set()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            async for frame in read_frames(reader):
                recorder.receive(frame)
        finally:
            connections.discard(task)
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a predecessor's, left by a crash
    server = await asyncio.start_unix_server(take, str(path))
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for face in faces:
            await face.start()
            started.append(face)
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
        await stop.wait()
        server.close()
        # The workers stopped first and handed over what they had: read it to the end.
        if connections:
            await asyncio.wait(set(connections), timeout=grace + 2)
    finally:
        for face in reversed(started):
            await face.stop(grace)  # the recorder's last flush, the upstream tasks
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    log.debug(
        "recorder: %d sightings recorded, %d dropped, %d transitions",
        recorder.recorded,
        recorder.dropped,
        recorder.transitions,
    )
