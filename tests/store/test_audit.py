"""The audit log: append-only sequence, keyed by device, batches, origins."""

from __future__ import annotations

from pathlib import Path

from ceir.imei import parse
from ceir.record import Reason, Record, Source
from ceir.store import audit, open_store
from ceir.store.tables import Tables

A = parse("352099001761481").key
B = parse("356868000041418").key
REG = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1_700_000_000)


def test_sequence_grows_and_history_is_per_device(tmp_path: Path) -> None:
    """Entries get 1, 2, 3... across appends; each device's history is its entries in order,
    each entry's new record the next one's old (the last one's: the device's record)."""
    with open_store(tmp_path / "db") as store:

        def first(tables: Tables) -> int:
            origin = audit.new_origin(tables, {"actor": "t", "request": "one"})
            changes = [
                audit.Change(A, audit.Action.MANUFACTURER, None, REG, 2),
                audit.Change(B, audit.Action.MANUFACTURER, None, REG.pack(), 3),
            ]
            tables.devices.put({A: REG.pack(), B: REG.pack()})  # as the register writes
            return audit.append(tables, changes, 100, origin)

        def second(tables: Tables) -> int:
            origin = audit.new_origin(tables, {"actor": "t", "request": "two"})
            blocked = REG.with_block(blocked=True)
            tables.devices.put({A: blocked.pack()})
            return audit.append(
                tables, [audit.Change(A, audit.Action.BLOCK, REG, blocked)], 200, origin
            )

        assert store.write(first) == 1
        assert store.write(second) == 3
        history = audit.history(store, A)
        assert [(e.seq, e.action, e.origin, e.at) for e in history] == [
            (1, audit.Action.MANUFACTURER, 1, 100),
            (3, audit.Action.BLOCK, 2, 200),
        ]
        assert history[0].old is None
        assert history[0].new == REG
        assert history[1].new == REG.with_block(blocked=True)
        assert [e.seq for e in audit.history(store, B)] == [2]
        assert [e.seq for e in audit.entries(store, after=1)] == [2, 3]
        origin = audit.get_origin(store, 2)
        assert origin == {"actor": "t", "request": "two", "id": 2}


def test_empty_append_writes_nothing(tmp_path: Path) -> None:
    """Appending no change returns the next number and adds no entry."""
    with open_store(tmp_path / "db") as store:
        assert store.write(lambda tables: audit.append(tables, [], 1, 1)) == 1
        assert list(audit.entries(store)) == []


def test_local_actor_names_user_and_host() -> None:
    """The CLI's actor is local:user@host."""
    actor = audit.local_actor()
    assert actor.startswith("local:")
    assert "@" in actor


def test_a_batch_is_numbered_in_key_order_and_shares_one_link(tmp_path: Path) -> None:
    """One append is one batch: its entries numbered in key order (a device's changes in
    the order given), its origin and time stored once, linked to the batch before."""
    with open_store(tmp_path / "db") as store:
        blocked = REG.with_block(blocked=True)

        def write(tables: Tables) -> int:
            origin = audit.new_origin(tables, {"actor": "t", "request": "one"})
            tables.devices.put({A: blocked.pack(), B: REG.pack()})
            changes = [
                audit.Change(B, audit.Action.MANUFACTURER, None, REG, 2),
                audit.Change(A, audit.Action.MANUFACTURER, None, REG, 3),
                audit.Change(A, audit.Action.BLOCK, REG, blocked, 4),
            ]
            return audit.append(tables, changes, 100, origin)

        assert store.write(write) == 1
        assert [(e.seq, e.line, e.new) for e in audit.history(store, A)] == [
            (1, 3, REG),
            (2, 4, blocked),
        ]
        assert [(e.seq, e.line) for e in audit.history(store, B)] == [(3, 2)]
        with store.snapshot() as tables:
            batches = list(tables.audit.batches())
            assert [first for first, _v in batches] == [1]
            batch = audit.Batch.unpack(batches[0][1])
            assert (batch.origin, batch.at, batch.size, batch.prev) == (1, 100, 3, audit.GENESIS)
            assert audit.head(tables) != audit.GENESIS
