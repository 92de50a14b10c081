"""List-export runs in the store: reserved, finished, abandoned; snapshots kept whole."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.errors import StoreError, UnknownRunError
from ceir.store import Store
from ceir.store import lists as runs
from ceir.store.lists import CHUNK_BYTES, RunState, Snapshot
from ceir.store.tables import Tables


@given(st.dictionaries(st.binary(min_size=3, max_size=3), st.binary(min_size=2, max_size=2)))
def test_snapshot_pack_unpack_round_trip(rows: dict[bytes, bytes]) -> None:
    """Fixed-width rows survive packing, in key order."""
    raw = Snapshot(3, 2, rows).pack()
    assert raw == b"".join(k + rows[k] for k in sorted(rows))
    assert Snapshot.unpack(3, 2, raw).rows == rows


def test_finished_run_keeps_its_snapshots_across_chunks(store: Store) -> None:
    """A snapshot bigger than one chunk comes back whole; the run is a base afterwards."""
    rows = {i.to_bytes(8): (i % 251).to_bytes(6) for i in range(CHUNK_BYTES // 14 + 1000)}
    run = runs.reserve(store, 100, "19700101_000140")
    with pytest.raises(UnknownRunError):
        runs.get(store, run.run)  # not finished: no base yet
    done = runs.finish(store, run, {"blacklist": Snapshot(8, 6, rows)}, ["a.csv"])
    assert done.state is RunState.DONE
    got = runs.get(store, run.run)
    assert got == done
    loaded = runs.load(store, got, "blacklist")
    assert loaded is not None
    assert loaded.rows == rows
    assert runs.load(store, got, "exceptions_510-10") is None


def test_a_damaged_snapshot_is_refused(store: Store) -> None:
    """Bytes that do not match the recorded digest: StoreError, never a silent diff."""
    run = runs.reserve(store, 100, "p")
    done = runs.finish(store, run, {"blacklist": Snapshot(8, 6, {bytes(8): bytes(6)})}, [])

    def damage(tables: Tables) -> None:
        tables.lists.put_chunks(run.run, "blacklist", [zlib.compress(b"\x01" * 14)])

    store.write(damage)
    with pytest.raises(StoreError, match="does not match its digest"):
        runs.load(store, done, "blacklist")


def test_abandoned_run_is_gone_and_its_id_reused(store: Store) -> None:
    """A run that failed is deleted with its chunks; the next reserve takes its id."""
    first = runs.reserve(store, 1, "p")
    runs.abandon(store, first.run)
    assert runs.runs(store) == []
    assert runs.reserve(store, 2, "q").run == first.run
