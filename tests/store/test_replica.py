"""A replica's store: bootstrap replaces the hot table whole, entries apply only in
sequence, and per-range digests find where two copies differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceir.errors import RefusedMessageError, ReplicationError, StoreError
from ceir.record import RECORD_SIZE, Reason, Record, Source
from ceir.replication.verify import differing
from ceir.store import Store, changes, open_store, replica
from ceir.store.replica import Applied
from ceir.store.tables import TacInfo

REC = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1_700_000_000).pack()


def _key(body: int) -> bytes:
    return body.to_bytes(8, "big")


def _central(path: Path, bodies: list[int]) -> Store:
    store = open_store(path)
    store.put_tacs([TacInfo("35209900", "B", "M")])
    store.put_devices([(_key(b), Record.unpack(REC)) for b in bodies])
    return store


def _bootstrap(central: Store, copy: Store) -> replica.ReplicaState:
    with replica.hot_snapshot(central) as snap:
        devices = list(snap.device_chunks(rows=2))
        tacs = list(snap.tac_chunks())
        clones, pairs = list(snap.clone_chunks()), list(snap.pair_chunks())
        seq, at = snap.seq, snap.committed_ms
        counts = (snap.devices, snap.tacs, snap.clones, snap.pairs)
    return replica.replace(
        copy,
        seq=seq,
        committed_ms=at,
        device_rows=devices,
        tac_rows=tacs,
        clone_rows=clones,
        pair_rows=pairs,
        expect=counts,
    )


def test_bootstrap_copies_the_hot_table_and_its_sequence(tmp_path: Path) -> None:
    """After a bootstrap the copy's digests equal the central's, at the same sequence."""
    bodies = [35209900176148, 35209900176149, 86000000000001, 1]
    with _central(tmp_path / "c", bodies) as central, open_store(tmp_path / "r") as copy:
        copy.put_devices([(_key(99), Record.unpack(REC))])  # stale: replaced whole
        state = _bootstrap(central, copy)
        assert state.applied == changes.head(central)[0] == 2
        assert replica.digests(copy) == replica.digests(central)
        assert copy.get(_key(99)) is None


def test_entries_apply_only_in_sequence(tmp_path: Path) -> None:
    """The next entry applies (applied sequence moves with it); a gap is refused whole."""
    with _central(tmp_path / "c", [1]) as central, open_store(tmp_path / "r") as copy:
        state = _bootstrap(central, copy)
        body = changes.pack_ops(devices=[(_key(5), REC), (_key(1), None)])[0]
        with pytest.raises(ReplicationError, match="does not follow"):
            replica.apply(copy, [Applied(state.applied + 2, 9, 1, body)])
        assert copy.get(_key(5)) is None
        after = replica.apply(copy, [Applied(state.applied + 1, 9, 1234, body)])
        assert (after.applied, after.stream_seq, after.applied_ms) == (state.applied + 1, 9, 1234)
        assert copy.get(_key(5)) is not None
        assert copy.get(_key(1)) is None


def test_a_malformed_entry_changes_nothing(tmp_path: Path) -> None:
    """An entry that does not decode aborts its transaction: no record, no position."""
    with _central(tmp_path / "c", [1]) as central, open_store(tmp_path / "r") as copy:
        state = _bootstrap(central, copy)
        good = changes.pack_ops(devices=[(_key(5), REC)])[0]
        with pytest.raises(StoreError, match=r"truncated|malformed"):
            replica.apply(
                copy,
                [Applied(state.applied + 1, 3, 1, good), Applied(state.applied + 2, 4, 1, b"\x01")],
            )
        assert replica.state(copy) == state
        assert copy.get(_key(5)) is None


def test_a_snapshot_whose_counts_disagree_is_refused(tmp_path: Path) -> None:
    """Rows missing from a snapshot: refused, and the copy keeps what it had."""
    with _central(tmp_path / "c", [1, 2]) as central, open_store(tmp_path / "r") as copy:
        with replica.hot_snapshot(central) as snap:
            rows = b"".join(snap.device_chunks())
        with pytest.raises(RefusedMessageError):
            replica.replace(
                copy,
                seq=2,
                committed_ms=1,
                device_rows=[rows[: -RECORD_SIZE - 8]],
                tac_rows=[],
                expect=(2, 0, 0, 0),
            )
        assert replica.state(copy) is None


def test_digests_name_the_range_that_differs(tmp_path: Path) -> None:
    """One device changed on one side: exactly its range (first two TAC digits) differs."""
    with (
        _central(tmp_path / "c", [35209900176148, 86000000000001]) as central,
        open_store(tmp_path / "r") as copy,
    ):
        _bootstrap(central, copy)
        copy.put_devices([(_key(86000000000002), Record.unpack(REC))])
        _, ours = replica.digests(copy)
        _, theirs = replica.digests(central)
        assert differing(ours, theirs) == [("devices:86", 2, 1)]


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_store_written_without_fsync_survives_a_killed_process(tmp_path: Path) -> None:
    """durable=False: the marker names this boot while open, a SIGKILLed writer loses
    no commit (the page cache keeps it), and a clean close syncs and removes the marker."""
    import subprocess
    import sys

    db = tmp_path / "r"
    code = (
        "import os; from ceir.store import open_store; from ceir.record import Record, Reason\n"
        f"s = open_store({str(db)!r}, durable=False)\n"
        "s.put_devices([((7).to_bytes(8, 'big'), Record(Reason.EXEMPT))])\n"
        "os._exit(0)  # no close, no sync: as SIGKILL leaves it\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert (db / "unsynced").read_text() == _boot()
    with open_store(db, durable=False) as store:
        assert store.get(_key(7)) == Record(Reason.EXEMPT)
    assert not (db / "unsynced").exists()


def test_a_store_left_unsynced_by_an_earlier_boot_is_discarded(tmp_path: Path) -> None:
    """A marker from another boot (the system went down with commits unsynced): the
    store is discarded and opens empty, so the replica bootstraps again; a durable open
    never looks at the marker."""
    db = tmp_path / "r"
    with open_store(db) as store:
        store.put_devices([(_key(7), Record(Reason.EXEMPT))])
    (db / "unsynced").write_text("another boot")
    with open_store(db) as store:  # durable: the central's way, the marker means nothing
        assert store.device_count() == 1
    with open_store(db, durable=False) as store:
        assert store.device_count() == 0
        assert replica.state(store) is None
        assert (db / "unsynced").read_text() == _boot()
