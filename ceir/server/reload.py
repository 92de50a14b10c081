"""Reloading what a running server can re-read, without dropping a call (SIGHUP).

A :class:`Reloader` holds named hooks. Each hook re-reads one thing (the bearer-token
file, the TLS files), checks it and swaps it in, and says what it loaded; or it raises
:class:`~ceir.errors.CeirError` and the server keeps what it had. ``SIGHUP`` runs every
hook in every worker process (the supervisor forwards the signal) and logs one line per
hook. A hook added with a file to *watch* also runs when that file changes: every worker
polls the files' identity (inode, size, modification time) about once a second
(:meth:`Reloader.watch`), so ``ceir token revoke`` or ``ceir certs revoke`` takes effect
on a running server within seconds, with no signal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ceir.errors import CeirError

__all__ = ["Hook", "Reloaded", "Reloader"]

log = logging.getLogger("ceir.server.reload")

Hook = Callable[[], str]
"""Re-read one thing and swap it in; return what was loaded ("3 bearer tokens from ...")."""


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What one hook did: ``loaded`` on success, else ``error`` (the old state is kept)."""

    what: str
    loaded: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Reloader:
    """Named reload hooks of one server process."""

    hooks: dict[str, Hook] = field(default_factory=dict)
    watched: dict[str, Path] = field(default_factory=dict)
    """Hooks that also run when their file changes (:meth:`watch`)."""
    _seen: dict[str, tuple[int, int, int, int] | None] = field(default_factory=dict)

    def add(self, what: str, hook: Hook, *, watch: Path | None = None) -> None:
        """Run *hook* on every reload; *what* names it in the log ("bearer tokens"). With
        *watch*, also whenever that file changes."""
        self.hooks[what] = hook
        if watch is not None:
            self.watched[what] = watch
            self._seen[what] = _identity(watch)  # as the caller just read it

    def __len__(self) -> int:
        return len(self.hooks)

    def reload(self, only: tuple[str, ...] | None = None) -> list[Reloaded]:
        """Run every hook (or those named in *only*); a hook that fails leaves its old
        state in place. Logs each."""
        done: list[Reloaded] = []
        for what, hook in self.hooks.items():
            if only is not None and what not in only:
                continue
            try:
                loaded = hook()
            except CeirError as exc:
                log.warning("pid %d: cannot reload %s: %s; keeping the old", os.getpid(), what, exc)
                done.append(Reloaded(what, error=str(exc)))
            else:
                log.info("pid %d: reloaded %s", os.getpid(), loaded)
                done.append(Reloaded(what, loaded=loaded))
        if not self.hooks:
            log.info("pid %d: SIGHUP: nothing to reload (no token file, no TLS)", os.getpid())
        return done

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP in *loop* (which must run in the main thread)."""
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def watch(self, interval: float) -> None:
        """Poll the watched files every *interval* s until cancelled; run the hook of each
        one that changed (replaced, rewritten, removed or created)."""
        seen = self._seen
        while True:
            await asyncio.sleep(interval)
            changed = []
            for what, path in self.watched.items():
                now = _identity(path)
                if now != seen[what]:
                    seen[what] = now
                    changed.append(what)
            if changed:
                log.info("pid %d: %s changed on disk", os.getpid(), ", ".join(changed))
                self.reload(tuple(changed))


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a rewritten file from the one read before: device, inode, size and
    modification time (ns); None while it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
