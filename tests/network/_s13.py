"""An S13 face on a demo store, in the test's own event loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ceir.lookup import Checker
from ceir.network.s13 import S13Face, S13Options
from ceir.policy import Policy
from ceir.record import Status
from ceir.sightings import Observer
from ceir.store import Store


class Recorder:
    """An observer that keeps every sighting."""

    def __init__(self) -> None:
        self.sightings: list[tuple[bytes, str, str]] = []

    def __call__(self, device_key: bytes, imsi: str, operator_id: str) -> None:
        self.sightings.append((device_key, imsi, operator_id))


def options(**overrides: Any) -> S13Options:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "origin_host": "ceir.localdomain",
        "origin_realm": "localdomain",
        "peers": frozenset(),
        "unknown_not_found": False,
    }
    values.update(overrides)
    return S13Options(**values)


@contextlib.asynccontextmanager
async def face(
    store: Store,
    unknown: Status = Status.BLACKLISTED,
    observer: Observer | None = None,
    **overrides: Any,
) -> AsyncIterator[S13Face]:
    """A started face on *store*; stopped (grace 0) afterwards."""
    checker = Checker(store, Policy(unknown))
    extra: dict[str, Any] = {} if observer is None else {"observer": observer}
    started = S13Face(options(**overrides), checker, store, **extra)
    await started.start()
    try:
        yield started
    finally:
        await started.stop(0)
