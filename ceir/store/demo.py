"""Demo data for an empty store: a small TAC table and a device in every state.

The brands are invented; the IMEIs are valid and fixed, so the README's examples work.
Temporary registrations are dated relative to the moment the demo is loaded. The demo
writes go through the audit log like any other: one origin (kind ``demo``, actor
``ceir:demo``) and one entry per change, so ``ceir audit IMEI`` says where they came from.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import NamedTuple

from ceir.imei import parse
from ceir.record import Reason, Record, Source
from ceir.store import Store, TacInfo, audit
from ceir.store.tables import Tables

log = logging.getLogger("ceir.store.demo")

DAY = 86_400
ACTOR = "ceir:demo"
"""Who the audit log says wrote the demo data."""
_ACTIONS = {
    Reason.REGISTERED: {
        Source.MANUFACTURER: audit.Action.MANUFACTURER,
        Source.CUSTOMS: audit.Action.CUSTOMS,
    },
    Reason.GRANDFATHERED: {Source.OPERATOR: audit.Action.GRANDFATHER},
    Reason.TEMPORARY: {Source.OPERATOR: audit.Action.VISITOR},
    Reason.EXEMPT: {Source.MINISTRY: audit.Action.EXCEPTION},
}

TACS = (
    TacInfo("35209900", "Nusantara", "N1", "Smartphone"),
    TacInfo("35686800", "Nusantara", "N1 Pro", "Smartphone"),
    TacInfo("86012345", "Garuda", "Tab 10", "Tablet"),
    TacInfo("49015420", "Komodo", "K2 Lite", "Feature phone"),
    TacInfo("01234500", "Merapi", "M5", "Smartphone"),
)


class DemoDevice(NamedTuple):
    imei: str
    """15 digits with check digit."""
    record: Record | None
    """None: listed here as an example, not stored."""
    note: str


def devices(now: int) -> list[DemoDevice]:
    """The demo devices, dated relative to *now* (Unix seconds)."""
    year = 365 * DAY
    return [
        DemoDevice(
            "352099001761481",
            Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=now - year),
            "registered by its manufacturer",
        ),
        DemoDevice(
            "356868000041418",
            Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=now - 30 * DAY),
            "registered at customs",
        ),
        DemoDevice(
            "490154203237518",
            Record(Reason.GRANDFATHERED, Source.OPERATOR, registered_at=now - 6 * year),
            "active before the 2020 cutoff",
        ),
        DemoDevice(
            "860123450000012",
            Record(
                Reason.TEMPORARY,
                Source.OPERATOR,
                registered_at=now - 10 * DAY,
                expires_at=now + 80 * DAY,
            ),
            "a visitor's phone, temporary",
        ),
        DemoDevice(
            "860123450000020",
            Record(
                Reason.TEMPORARY,
                Source.OPERATOR,
                registered_at=now - 120 * DAY,
                expires_at=now - 30 * DAY,
            ),
            "a visitor's phone, expired",
        ),
        DemoDevice(
            "012345000000013",
            Record(Reason.EXEMPT, Source.MINISTRY, registered_at=now - 60 * DAY),
            "on the ministry's exception list",
        ),
        DemoDevice(
            "352099001761499",
            Record(
                Reason.REGISTERED,
                Source.MANUFACTURER,
                lost_stolen=True,
                registered_at=now - year,
            ),
            "registered, then reported stolen",
        ),
        DemoDevice("352099009999992", None, "never registered"),
    ]


def _changes(key: bytes, old: Record | None, new: Record) -> list[audit.Change]:
    """The audit entries that make *new*: its registration, then a block if stolen."""
    registered = dataclasses.replace(new, lost_stolen=False)
    out = [audit.Change(key, _ACTIONS[new.reason][new.source], old, registered)]
    if new.lost_stolen:
        out.append(audit.Change(key, audit.Action.BLOCK, registered, new))
    return out


def load(store: Store, now: int | None = None) -> int:
    """Write the demo TACs and devices into *store*, with their audit entries; returns
    how many devices."""
    at = int(time.time()) if now is None else now
    store.put_tacs(TACS)
    items = sorted((parse(d.imei).key, d.record) for d in devices(at) if d.record is not None)

    def write(tables: Tables) -> int:
        info = {"kind": "demo", "request": "demo data", "actor": ACTOR}
        origin = audit.new_origin(tables, {**info, "started_at": at, "state": "done"})
        changes = [c for key, r in items for c in _changes(key, tables.devices.record(key), r)]
        tables.devices.put({key: r.pack() for key, r in items})
        audit.append(tables, changes, at, origin)
        return len(items)

    return store.write(write)


def load_if_empty(store: Store, *, secured: bool = False) -> None:
    """Load the demo data into *store* when it holds no device, and log that it did.

    Never into a store served with security configured (*secured*: bearer tokens or TLS):
    its invented devices would answer real networks. Such a store stays empty, and the
    log says so."""
    if store.device_count() != 0:
        return
    if secured:
        log.info(
            "empty store: demo data is not loaded when security is configured (tokens or "
            "TLS); import real data with `ceir import`"
        )
        return
    n = load(store)
    log.info("empty store: loaded demo data (%d devices, %d TACs)", n, len(TACS))
