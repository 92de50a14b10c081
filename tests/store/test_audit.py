"""The audit log: append-only sequence, keyed by device, batches, origins."""

from __future__ import annotations

from pathlib import Path

from ceir.imei import parse
from ceir.record import Reason, Record, Source
from ceir.store import audit, open_store
from ceir.store.backup import verify
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


def _create(tables: Tables, keys: list[bytes], fields: bytes, line: int = 2) -> int:
    """Devices *keys* created by one batch that registers *fields* for them (manufacturer)."""
    origin = audit.new_origin(tables, {"actor": "t", "file": "m.csv"})
    tables.devices.put(dict.fromkeys(keys, REG.pack()))
    changes = [
        audit.Change(k, audit.Action.MANUFACTURER, None, REG, line + i) for i, k in enumerate(keys)
    ]
    details = {(k, 1): fields for k in keys}
    return audit.append(tables, changes, 100, origin, details, 1, shared=True)


def test_a_creation_keeps_its_entry_in_details_and_history_reads_it(tmp_path: Path) -> None:
    """A batch that creates devices writes no audit row for them: the entry (number, line,
    action) rides on the details value, and the history, the log and verify see it."""
    fields = b"Brand\x1fModel\x1fTPP-1\x1fM1\x1f2025-01-01"
    with open_store(tmp_path / "db") as store:
        assert store.write(lambda tables: _create(tables, [A, B], fields, line=7)) == 1
        with store.snapshot() as tables:
            assert tables.details.get(A, 1) == fields  # readers see the value as registered
            assert tables.audit.of_device(A) != []
        assert store.dump()["audit"] == []
        (entry,) = audit.history(store, A)
        assert (entry.seq, entry.line, entry.action, entry.origin, entry.at) == (
            1, 7, audit.Action.MANUFACTURER, 1, 100,
        )  # fmt: skip
        assert entry.old is None
        assert entry.new == REG
        assert [e.seq for e in audit.entries(store)] == [1, 2]
    assert verify(tmp_path / "db").ok


def test_replacing_or_deleting_the_details_moves_the_entry_into_audit(tmp_path: Path) -> None:
    """A later registration of the same channel (new fields) and a deletion of the value
    both keep the creation's entry, under its own number: the history and the chain's
    digests are unchanged."""
    fields = b"Brand\x1fModel\x1fTPP-1\x1fM1\x1f2025-01-01"
    with open_store(tmp_path / "db") as store:
        store.write(lambda tables: _create(tables, [A, B], fields))
    head = verify(tmp_path / "db").audit_head
    with open_store(tmp_path / "db") as store:
        before = [audit.history(store, k) for k in (A, B)]
        changed = b"Brand\x1fModel 2\x1fTPP-1\x1fM1\x1f2025-01-02"

        def rewrite(tables: Tables) -> None:
            tables.details.put({(A, 1): changed}, shared=True)
            tables.details.put({(B, 1): None})

        store.write(rewrite)
        assert [k[:8] for k, _v in store.dump()["audit"]] == [A, B]
        assert [audit.history(store, k) for k in (A, B)] == before
        with store.snapshot() as tables:
            assert tables.details.get(A, 1) == changed
            assert tables.details.get(B, 1) is None
    report = verify(tmp_path / "db")
    assert report.ok
    assert report.audit_head == head


def test_a_removed_or_edited_kept_entry_fails_verify(tmp_path: Path) -> None:
    """The kept entries are covered by their batch's digest like any other."""
    fields = b"Brand\x1fModel"
    for edit in ("remove", "line"):
        db = tmp_path / edit
        with open_store(db) as store:
            store.write(lambda tables: _create(tables, [A, B], fields))

            def tamper(tables: Tables, edit: str = edit) -> None:
                txn, details = tables.details._txn, tables.details._db
                key = A + b"\x01"
                if edit == "remove":
                    txn.delete(key, db=details)  # a raw delete: no entry moved
                else:
                    value = bytearray(txn.get(key, db=details))
                    value[-2] ^= 1  # the line's last byte
                    txn.put(key, bytes(value), db=details)

            store.write(tamper)
        report = verify(db)
        assert not report.ok
        assert any("batch 1-2" in p for p in report.problems), report.problems


def test_values_that_look_like_markers_read_back_whole(tmp_path: Path) -> None:
    """Values beginning with a control byte (an empty first field begins with the field
    separator) are escaped, with or without a kept entry."""
    odd = [b"\x1fModel", b"\x10x", b"\x00", b"", b"plain", b"\x12\x00\x00\x00\x01ab"]
    with open_store(tmp_path / "db") as store:
        for i, value in enumerate(odd):
            key = (35209900176148 + i).to_bytes(8, "big")
            store.write(lambda tables, k=key, v=value: _create(tables, [k], v))
            store.write(lambda tables, k=key, v=value: tables.details.put({(k, 2): v}))
            with store.snapshot() as tables:
                assert tables.details.get(key, 1) == value
                assert tables.details.get(key, 2) == value
            assert [e.line for e in audit.history(store, key)] == [2]
