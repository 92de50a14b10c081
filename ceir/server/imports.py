"""Served imports run in a child process, so single writes and lookups keep their latency.

An ImportFeed's file is spooled by the serving process into the store's private spool
(a nameless file, 0700 directory); the import itself — both passes, staging, the rolling
24-hour volume rules — runs in a child process (``python -m ceir.server.imports``) that
inherits the spool file's descriptor and opens the same store. The serving process keeps
its interpreter (and its GIL) for the calls it serves; the child's writes are ordinary
LMDB write transactions, as those of a second worker or a ``ceir import`` beside the server.

The child reads its :class:`Job` from stdin and writes JSON lines to stdout: progress
(``{"phase": ..., "total": ...}``, ``{"done": n}``) and, last, the result — the summary
or the stage, or the :class:`~ceir.errors.CeirError` it raised — pickled (parent and child
are the same program, and the pipe is theirs alone). The child ends when its stdin closes:
a serving process that dies takes its imports with it. A cancelled call or a draining
server kills the child; the importer's progress records make a killed import resume
exactly when the file is sent again (:mod:`ceir.feeds.importer`).

At most :attr:`Imports.slots` children run at once in a serving process (more wait);
the servicer keeps one running import per principal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ceir.errors import CeirError, StoreError
from ceir.feeds import Format, Kind
from ceir.feeds.base import Options

__all__ = ["Imports", "Job"]

log = logging.getLogger("ceir.server.imports")

PROGRESS_EVERY = 1.0
"""Seconds between two progress lines of a child (phases are always reported)."""
_LINE_LIMIT = 64 << 20
"""Longest line the parent reads from a child (a result with up to 10,000 rejects)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One served import, as the child runs it: :func:`ceir.feeds.staging.submit`'s
    arguments, with the spool file as a descriptor number the child inherits."""

    db: str
    kind: Kind
    fd: int
    actor: str
    name: str
    person: str
    fmt: Format | None
    options: Options
    stage_above: int
    stage_lost_stolen_above: int
    channel_daily_above: int
    channel_daily_lost_stolen_above: int


def _frame(value: object) -> str:
    return base64.b64encode(pickle.dumps(value)).decode()


def _unframe(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))  # noqa: S301 - our own child's answer


def _rebuild(module: str, name: str, message: str, state: dict[str, Any]) -> Exception:
    """The child's CeirError, built again in the parent (its attributes included)."""
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, CeirError)):
        return StoreError(f"the import failed: {message}")
    exc: Exception = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class Imports:
    """The serving process's side: runs each :class:`Job` in a child, at most *slots* at
    once; kills them on cancel and on :meth:`close`."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = asyncio.Semaphore(slots)
        self._running: set[asyncio.subprocess.Process] = set()

    @property
    def running(self) -> int:
        """Children alive now."""
        return len(self._running)

    async def run(self, job: Job, spool: IO[bytes]) -> Any:
        """The summary or stage of *job* (*spool* is the file it imports), or the
        CeirError the child raised."""
        async with self._free:
            return await self._run(job, spool)

    async def _run(self, job: Job, spool: IO[bytes]) -> Any:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ceir.server.imports",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(spool.fileno(),),
            limit=_LINE_LIMIT,
        )
        self._running.add(proc)
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write((_frame(job) + "\n").encode())
            await proc.stdin.drain()  # stdin stays open: the child ends when it closes
            answer = await self._follow(job, proc.stdout)
            await proc.wait()
        finally:
            self._running.discard(proc)
            if proc.returncode is None:  # cancelled (the call, or the server draining)
                log.warning("import of %s by %s stopped: killing its process", job.name, job.actor)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        if answer is None:
            raise StoreError(
                f"the import of {job.name} ended without an answer (exit {proc.returncode}); "
                "send the file again: it resumes where it stopped"
            )
        kind, value = answer
        if kind == "error":
            raise _rebuild(*value)
        return value

    async def _follow(self, job: Job, out: asyncio.StreamReader) -> tuple[str, Any] | None:
        """Read the child's lines: log its progress, return its answer."""
        while line := await out.readline():
            message = json.loads(line)
            if "phase" in message:
                total = message["total"]
                log.info(
                    "import of %s by %s: %s%s", job.name, job.actor, message["phase"],
                    "" if total is None else f" {total:,} rows",
                )  # fmt: skip
            elif "done" in message:
                log.debug("import of %s by %s: %s rows", job.name, job.actor, message["done"])
            elif "result" in message:
                return "result", _unframe(message["result"])
            elif "error" in message:
                return "error", _unframe(message["error"])
        return None

    async def close(self) -> None:
        """Kill every running child (the server is stopping)."""
        for proc in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


# -- the child ---------------------------------------------------------------------------


class _Lines:
    """Progress as JSON lines on stdout (at most one ``done`` line a second)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.done = 0
        self.shown = 0.0
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()

    def phase(self, name: str, total: int | None) -> None:
        self.done = 0
        self.send({"phase": name, "total": total})

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            self.send({"done": self.done})

    def close(self) -> None:
        """Nothing to close: the result line follows."""


def _orphaned() -> None:
    """Exit when stdin closes: the serving process is gone or gave the import up."""
    sys.stdin.buffer.read()
    os._exit(3)


def _child() -> None:
    from ceir.feeds.staging import submit
    from ceir.store import open_store

    logging.basicConfig(level=logging.WARNING, format="ceir import child: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C in the server's terminal: its call
    job: Job = _unframe(sys.stdin.buffer.readline().decode())
    threading.Thread(target=_orphaned, daemon=True).start()
    lines = _Lines(sys.stdout)
    try:
        store = open_store(job.db, metasync=False)  # one fsync a batch; close syncs
        try:
            result = submit(
                store, job.kind, Path(f"/proc/self/fd/{job.fd}"), actor=job.actor,
                fmt=job.fmt, name=job.name, private=True, options=job.options,
                person=job.person, progress=lines, stage_above=job.stage_above,
                stage_lost_stolen_above=job.stage_lost_stolen_above,
                channel_daily_above=job.channel_daily_above,
                channel_daily_lost_stolen_above=job.channel_daily_lost_stolen_above,
                repack=False,  # one long write transaction: single writes would wait
            )  # fmt: skip
        finally:
            store.close()
    except CeirError as exc:
        state = dict(getattr(exc, "__dict__", {}))
        lines.send({"error": _frame((type(exc).__module__, type(exc).__name__, str(exc), state))})
        return
    lines.send({"result": _frame(result)})


if __name__ == "__main__":
    _child()
    sys.stdout.flush()
    os._exit(0)  # not a normal exit: the thread reading stdin would block the shutdown
