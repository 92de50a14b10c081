"""Helpers for list tests: devices written with their audit entries, files read back."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from ceir.imei import body_key
from ceir.record import Record
from ceir.store import Store, audit
from ceir.store.tables import Tables

ACTOR = "test:lists"
DAY = 86400


def key_of(body: int) -> bytes:
    return body_key(f"{body:014d}")


def write(store: Store, at: int, states: Mapping[int, Record | None]) -> None:
    """Give each device (by body) its new record (None: delete it), with audit entries
    made at Unix time *at*: a block where the lost/stolen flag is set, as the feeds do."""

    def go(tables: Tables) -> None:
        info = {"kind": "test", "actor": ACTOR, "started_at": at, "state": "done"}
        origin = audit.new_origin(tables, info)
        changes, puts = [], {}
        for body, new in sorted(states.items()):
            key = key_of(body)
            old = tables.devices.record(key)
            was_lost = old is not None and old.lost_stolen
            if new is not None and new.lost_stolen and not was_lost:
                action = audit.Action.BLOCK
            elif was_lost and (new is None or not new.lost_stolen):
                action = audit.Action.UNBLOCK
            else:
                action = audit.Action.MANUFACTURER
            changes.append(audit.Change(key, action, old, new))
            puts[key] = None if new is None else new.pack()
        tables.devices.put(puts)
        audit.append(tables, changes, at, origin)

    store.write(go)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file, read with the csv module."""
    with path.open(newline="", encoding="ascii") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def one(out: Path, pattern: str) -> Path:
    found = sorted(out.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]
