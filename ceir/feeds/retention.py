"""The personal-data lifecycle: remove what the register no longer needs to keep.

- **Expired temporary registrations** (visitors) whose validity ended more than
  ``temporary_days`` ago: the device record and its details (the passport token) are
  deleted. A lost/stolen report on such a device is kept (its block matters more).
- **Identity tokens** past ``identity_days`` after the arrival they were recorded for:
  the per-identity quota counts (``identities``) are deleted, and customs details keep
  the declaration but lose the identity token.
- **Expired stages** of the two-person rule.

Everything removed is recorded in the audit log: one origin with the counts and the
retention used, and one ``PURGE`` entry per deleted device (records only, never a
personal number or token).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ceir.feeds import Kind, staging
from ceir.feeds.base import SEP
from ceir.feeds.rows import DAY, day_number
from ceir.record import Reason, Record
from ceir.store import Store, audit

__all__ = ["Purged", "purge"]

DEFAULT_TEMPORARY_DAYS = 90
"""Days after a visitor registration ends before it is deleted (registered <= 90 days
+ 90 = gone within 6 months, as the regulation asks)."""
DEFAULT_IDENTITY_DAYS = 365
"""Days after an arrival before its identity token is deleted (>= the 180-day cooldown)."""
_BATCH = 50_000
_DAY = struct.Struct(">I")
_TOKEN = 16
_CUSTOMS_TOKEN_FIELD = 2  # declaration_no, id_type, id_token, arrival_date, channel


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge removed."""

    temporaries: int
    identities: int
    customs_tokens: int
    stages: int
    origin: int

    def line(self) -> str:
        return (
            f"purged {self.temporaries:,} expired temporary registrations, "
            f"{self.identities:,} identity quota entries, {self.customs_tokens:,} customs "
            f"identity tokens, {self.stages:,} expired stages (audit import #{self.origin})"
        )


def _victims(store: Store, temp_before: int, id_day_before: int) -> tuple[list[Any], ...]:
    """Keys to purge, found in one read snapshot."""
    temporaries: list[tuple[bytes, Record]] = []
    identities: list[bytes] = []
    customs: list[tuple[bytes, bytes]] = []
    customs_code = bytes((Kind.CUSTOMS.code,))
    with store.snapshot() as txn:
        for key, value in txn.cursor(store.devices):
            record = Record.unpack(value)
            if (
                record.reason is Reason.TEMPORARY
                and record.expires_at
                and record.expires_at < temp_before
                and not record.lost_stolen
            ):
                temporaries.append((bytes(key), record))
        ids = store.dbs["identities"]
        if ids is not None:
            identities.extend(
                bytes(key)
                for key in txn.cursor(ids).iternext(keys=True, values=False)
                if _DAY.unpack(key[_TOKEN : _TOKEN + 4])[0] < id_day_before
            )
        details = store.dbs["details"]
        if details is not None:
            for key, value in txn.cursor(details):
                if key[-1:] != customs_code:
                    continue
                fields = bytes(value).decode().split(SEP)
                device = txn.get(key[:-1], db=store.devices)
                arrived = Record.unpack(device).registered_at if device else 0
                if fields[_CUSTOMS_TOKEN_FIELD] and day_number(arrived) < id_day_before:
                    fields[_CUSTOMS_TOKEN_FIELD] = ""
                    customs.append((bytes(key), SEP.join(fields).encode()))
    return temporaries, identities, customs


def purge(
    store: Store,
    *,
    actor: str,
    temporary_days: int = DEFAULT_TEMPORARY_DAYS,
    identity_days: int = DEFAULT_IDENTITY_DAYS,
    clock: Callable[[], float] = time.time,
) -> Purged:
    """Remove what is past retention; returns the counts (see the module docstring)."""
    now = int(clock())
    temporaries, identities, customs = _victims(
        store, now - temporary_days * DAY, day_number(now) - identity_days
    )
    info: dict[str, Any] = {
        "kind": "purge",
        "file": "",
        "actor": actor,
        "state": "writing",
        "started_at": now,
        "retention": {"temporary_days": temporary_days, "identity_days": identity_days},
        "counts": {"temporaries": 0, "identities": 0, "customs_tokens": 0},
        "rows": len(temporaries),
        "rows_done": 0,
    }
    origin = store.write(lambda txn: audit.new_origin(txn, store, info))
    details = store.dbs["details"]
    for i in range(0, len(temporaries), _BATCH):
        batch = temporaries[i : i + _BATCH]

        def delete(txn: Any, batch: list[tuple[bytes, Record]] = batch) -> None:
            changes = []
            for key, old in batch:
                if txn.delete(key, db=store.devices):
                    changes.append(audit.Change(key, audit.Action.PURGE, old.pack(), None))
                    txn.delete(key + bytes((Kind.VISITOR.code,)), db=details)
            audit.append(txn, store, changes, now, origin)

        store.write(delete)
    for i in range(0, len(identities), _BATCH):
        store.write(_deleter(store.dbs["identities"], identities[i : i + _BATCH]))
    for i in range(0, len(customs), _BATCH):
        store.write(_putter(details, customs[i : i + _BATCH]))
    stages = staging.purge_expired(store, now=now, actor=actor)
    info.update(
        id=origin,
        state="done",
        finished_at=int(clock()),
        rows_done=len(temporaries),
        counts={
            "temporaries": len(temporaries),
            "identities": len(identities),
            "customs_tokens": len(customs),
            "stages": len(stages),
        },
    )
    store.write(lambda txn: audit.put_origin(txn, store, origin, info))
    return Purged(len(temporaries), len(identities), len(customs), len(stages), origin)


def _deleter(db: Any, keys: list[bytes]) -> Callable[[Any], None]:
    def delete(txn: Any) -> None:
        for key in keys:
            txn.delete(key, db=db)

    return delete


def _putter(db: Any, items: list[tuple[bytes, bytes]]) -> Callable[[Any], None]:
    def put(txn: Any) -> None:
        txn.cursor(db).putmulti(items)

    return put
