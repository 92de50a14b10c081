"""The personal-data lifecycle: remove what the register no longer needs to keep.

- **Expired temporary registrations** (visitors) whose validity ended more than
  ``temporary_days`` ago: the device record and its details (the passport token) are
  deleted. A lost/stolen report on such a device is kept (its block matters more).
- **Identity tokens** past ``identity_days`` after the arrival they were recorded for:
  the per-identity quota counts (``identities``) are deleted, and customs details keep
  the declaration but lose the identity token.
- **Expired stages** of the two-person rule.
- **Rejected rows** (the ``rejects`` table) of imports started more than
  ``rejects_days`` ago: a reject may hold what a sender put in the wrong column.

Everything removed is recorded in the audit log: one origin with the counts and the
retention used, and one ``PURGE`` entry per deleted device (records only, never a
personal number or token).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ceir.config import DEFAULT_IDENTITY_DAYS, DEFAULT_REJECTS_DAYS, DEFAULT_TEMPORARY_DAYS
from ceir.feeds import Kind, staging
from ceir.feeds.rows import DAY, day_number
from ceir.record import Reason, Record
from ceir.store import Store, audit
from ceir.store.tables import Tables, pack_fields

__all__ = ["Purged", "purge"]

_BATCH = 50_000
_CUSTOMS_TOKEN_FIELD = 2  # declaration_no, id_type, id_token, arrival_date, channel


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge removed."""

    temporaries: int
    identities: int
    customs_tokens: int
    stages: int
    origin: int
    rejects: int = 0

    def line(self) -> str:
        return (
            f"purged {self.temporaries:,} expired temporary registrations, "
            f"{self.identities:,} identity quota entries, {self.customs_tokens:,} customs "
            f"identity tokens, {self.stages:,} expired stages, {self.rejects:,} old rejected "
            f"rows (audit import #{self.origin})"
        )


def _victims(store: Store, temp_before: int, id_day_before: int) -> tuple[list[Any], ...]:
    """What to purge, found in one read snapshot."""
    temporaries: list[tuple[bytes, Record]] = []
    customs: list[tuple[tuple[bytes, int], bytes]] = []
    code = Kind.CUSTOMS.code
    with store.snapshot() as tables:
        for key, record in tables.devices.items():
            if (
                record.reason is Reason.TEMPORARY
                and record.expires_at
                and record.expires_at < temp_before
                and not record.lost_stolen
            ):
                temporaries.append((key, record))
        identities = tables.identities.before(id_day_before)
        for device, kind, fields in tables.details.items():
            if kind != code or not fields[_CUSTOMS_TOKEN_FIELD]:
                continue
            found = tables.devices.record(device)
            arrived = found.registered_at if found else 0
            if day_number(arrived) < id_day_before:
                fields[_CUSTOMS_TOKEN_FIELD] = ""
                customs.append(((device, kind), pack_fields(*fields)))
    return temporaries, identities, customs


def purge(
    store: Store,
    *,
    actor: str,
    temporary_days: int = DEFAULT_TEMPORARY_DAYS,
    identity_days: int = DEFAULT_IDENTITY_DAYS,
    rejects_days: int = DEFAULT_REJECTS_DAYS,
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
        "retention": {
            "temporary_days": temporary_days,
            "identity_days": identity_days,
            "rejects_days": rejects_days,
        },
        "counts": {"temporaries": 0, "identities": 0, "customs_tokens": 0},
        "rows": len(temporaries),
        "rows_done": 0,
    }
    origin = store.write(lambda tables: audit.new_origin(tables, info))
    for i in range(0, len(temporaries), _BATCH):
        batch = temporaries[i : i + _BATCH]

        def delete(tables: Tables, batch: list[tuple[bytes, Record]] = batch) -> None:
            changes = []
            for key, old in batch:
                if tables.devices.delete(key):
                    changes.append(audit.Change(key, audit.Action.PURGE, old.pack(), None))
                    tables.details.put({(key, Kind.VISITOR.code): None})
            audit.append(tables, changes, now, origin)

        store.write(delete)
    for i in range(0, len(identities), _BATCH):
        store.write(_forget_identities(dict.fromkeys(identities[i : i + _BATCH])))
    for i in range(0, len(customs), _BATCH):
        store.write(_put_details(dict(customs[i : i + _BATCH])))
    stages = staging.purge_expired(store, now=now, actor=actor)
    rejects = sum(_forget_rejects(store, origin, now - rejects_days * DAY))
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
            "rejects": rejects,
        },
    )
    store.write(lambda tables: audit.put_origin(tables, origin, info))
    return Purged(len(temporaries), len(identities), len(customs), len(stages), origin, rejects)


def _forget_rejects(store: Store, purge_origin: int, before: int) -> Iterator[int]:
    """Delete the rejects of imports started before *before*, one import per write."""
    with store.snapshot() as tables:
        old = []
        for origin in tables.rejects.origins():
            info = tables.imports.get(origin) or {}
            if origin != purge_origin and int(info.get("started_at") or 0) < before:
                old.append(origin)
    for origin in old:
        yield store.write(_delete_rejects(origin))


def _delete_rejects(origin: int) -> Callable[[Tables], int]:
    return lambda tables: tables.rejects.delete_origin(origin)


def _forget_identities(gone: dict[tuple[bytes, int], None]) -> Callable[[Tables], None]:
    return lambda tables: tables.identities.put(gone)


def _put_details(items: dict[tuple[bytes, int], bytes | None]) -> Callable[[Tables], None]:
    return lambda tables: tables.details.put(items)
