"""The broker connection both sides share: NATS with JetStream, reconnecting for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceir.errors import ConfigError

__all__ = ["Broker", "BrokerTask", "ensure_stream"]

log = logging.getLogger("ceir.replication")


@dataclass(frozen=True, slots=True)
class Broker:
    """Where the broker is and how to log in (user/password or a creds file)."""

    url: str
    user: str | None = None
    password: str | None = None
    creds: Path | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("nats://", "tls://")):
            raise ConfigError(f"broker URL {self.url!r} must start with nats:// or tls://")
        if (self.user is None) != (self.password is None):
            raise ConfigError("--nats-user and --nats-password go together")

    async def connect(self, name: str) -> Any:
        """A connection that keeps reconnecting while the broker is away."""
        import nats

        async def on_error(exc: Exception) -> None:
            log.debug("broker: %s", exc)

        async def on_disconnect() -> None:
            log.warning("broker %s: disconnected; reconnecting", self.url)

        async def on_reconnect() -> None:
            log.info("broker %s: reconnected", self.url)

        options: dict[str, Any] = {
            "name": name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
            "connect_timeout": 2,
            "error_cb": on_error,
            "disconnected_cb": on_disconnect,
            "reconnected_cb": on_reconnect,
        }
        if self.user is not None:
            options["user"], options["password"] = self.user, self.password
        if self.creds is not None:
            options["user_credentials"] = str(self.creds)
        return await nats.connect(self.url, **options)


async def ensure_stream(js: Any, stream: str, subject: str) -> Any:
    """The stream's info, creating it (file storage, one subject) if it is missing."""
    from nats.js import api
    from nats.js.errors import NotFoundError

    try:
        return await js.stream_info(stream)
    except NotFoundError:
        return await js.add_stream(
            name=stream,
            subjects=[subject],
            storage=api.StorageType.FILE,
            duplicate_window=120.0,
        )


class BrokerTask:
    """One background task on a broker connection: started, then cancelled and closed.

    The relay and the follower are both this: ``start()`` runs :meth:`_run` in the
    serving loop; ``stop()`` cancels it and closes the connection it opened (``_nc``).
    """

    task_name = "ceir-broker"

    def __init__(self) -> None:
        self._nc: Any = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self, grace: float | None = None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), timeout=grace or 2.0)
