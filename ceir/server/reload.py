"""Reloading what a running server can re-read, without dropping a call (SIGHUP).

A :class:`Reloader` holds named hooks. Each hook re-reads one thing (the bearer-token
file, the TLS files), checks it and swaps it in, and says what it loaded; or it raises
:class:`~ceir.errors.CeirError` and the server keeps what it had. ``SIGHUP`` runs every
hook in every worker process (the supervisor forwards the signal) and logs one line per
hook. Anything else that learns of a change (a file watcher, an admin RPC) calls
:meth:`Reloader.reload` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

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

    def add(self, what: str, hook: Hook) -> None:
        """Run *hook* on every reload; *what* names it in the log ("bearer tokens")."""
        self.hooks[what] = hook

    def __len__(self) -> int:
        return len(self.hooks)

    def reload(self) -> list[Reloaded]:
        """Run every hook; a hook that fails leaves its old state in place. Logs each."""
        done: list[Reloaded] = []
        for what, hook in self.hooks.items():
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
