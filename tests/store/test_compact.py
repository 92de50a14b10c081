"""The hot table repacked in key order, and `ceir compact`: smaller, the same contents."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_STORE, main
from ceir.errors import StoreError
from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.record import Reason, Record, Source
from ceir.store import compact as compact_module
from ceir.store import open_store
from ceir.store.backup import verify
from ceir.store.compact import (
    compact,
    devices_slack,
    repack_devices,
    repack_table,
    table_entries,
    table_slack,
)
from tests.store._held import held_open

DEVICES = 30_000


def scattered(path: Path, devices: int = DEVICES, batches: int = 10) -> None:
    """A store whose devices came in sorted batches of random keys, as imports write."""
    rng = random.Random(7)
    keys = rng.sample(range(10**13, 10**14), devices)
    size = devices // batches
    with open_store(path) as store:
        for b in range(batches):
            store.put_devices(
                (k.to_bytes(8, "big"), Record(Reason.REGISTERED, Source.MANUFACTURER, k % 999))
                for k in keys[b * size : (b + 1) * size]
            )


def test_repack_fills_every_page_and_changes_nothing_stored(tmp_path: Path) -> None:
    """Repacking brings devices to ~30 B/device (from ~45) with every table as before."""
    db = tmp_path / "db"
    scattered(db)
    with open_store(db) as store:
        before = store.dump()
        loose = store.table_bytes()["devices"] / DEVICES
        assert devices_slack(store) > 1.3
        assert repack_devices(store) == DEVICES
        assert devices_slack(store) <= 1.01
        packed = store.table_bytes()["devices"] / DEVICES
        assert store.dump() == before
        assert table_entries(store)["devices"] == DEVICES
    assert loose > 40
    assert packed < 32
    assert verify(db).ok


def test_details_written_in_batches_are_repacked_to_full_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second import whose keys fall between the first one's leaves ``details`` pages
    loose; repacking fills them and changes nothing stored; an import that adds many
    devices does it itself."""
    monkeypatch.setattr(compact_module, "REPACK_MIN_ADDED", 10**9)  # not by the imports
    tacs, first, second = tmp_path / "tac.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    generate(Kind.TAC, POOL, tacs)
    generate(Kind.MANUFACTURER, 20_000, first, seed=1)
    after = (Kind.MANUFACTURER.code - 1) * 50_000_000 + 20_000  # gen's serials, disjoint
    generate(Kind.MANUFACTURER, 20_000, second, seed=2, start=after)
    options = Options(max_new_devices=20_000)

    def load(db: Path) -> None:
        with open_store(db) as store:
            import_file(store, Kind.TAC, tacs, actor="test")
            import_file(store, Kind.MANUFACTURER, first, actor="test", options=options)
            import_file(store, Kind.MANUFACTURER, second, actor="test", options=options)

    load(tmp_path / "db")
    with open_store(tmp_path / "db") as store:
        before, loose = store.dump(), store.table_bytes()["details"]
        assert table_slack(store, "details") > 1.3
        assert repack_table(store, "details") == 40_000
        assert table_slack(store, "details") <= 1.02
        assert store.dump() == before
        packed = store.table_bytes()["details"]
    assert packed < loose / 1.3
    assert packed / 40_000 < 40  # 9-byte key, 18-byte value with its entry, node and pointer
    monkeypatch.setattr(compact_module, "REPACK_MIN_ADDED", 5_000)
    load(tmp_path / "db2")
    with open_store(tmp_path / "db2") as store:
        assert table_slack(store, "details") <= 1.02
    assert verify(tmp_path / "db2").ok


def test_an_import_that_adds_many_devices_leaves_the_hot_table_packed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a bulk import the devices table is packed; a small one leaves it as it is."""
    monkeypatch.setattr(compact_module, "REPACK_MIN_ADDED", 5_000)
    tacs, feed, small = tmp_path / "tac.csv", tmp_path / "m.csv", tmp_path / "s.csv"
    generate(Kind.TAC, POOL, tacs)
    generate(Kind.MANUFACTURER, 20_000, feed, seed=1)
    after = (Kind.MANUFACTURER.code - 1) * 50_000_000 + 20_000  # gen's serials, disjoint
    generate(Kind.MANUFACTURER, 1_000, small, seed=2, start=after)
    options = Options(max_new_devices=20_000)
    with open_store(tmp_path / "db") as store:
        import_file(store, Kind.TAC, tacs, actor="test")
        import_file(store, Kind.MANUFACTURER, feed, actor="test", options=options)
        assert store.device_count() == 20_000
        assert devices_slack(store) <= 1.01
        store.put_devices(  # a loose table, then a small import: not repacked
            ((10**13 + 97 * i).to_bytes(8, "big"), Record(Reason.REGISTERED, Source.MANUFACTURER))
            for i in range(20_000)
        )
        slack = devices_slack(store)
        assert slack > compact_module.REPACK_SLACK
        summary = import_file(store, Kind.MANUFACTURER, small, actor="test")
        assert summary.added > 0
        assert devices_slack(store) >= slack  # loose still: 1,000 of 41,000 is no bulk load


def test_compact_shrinks_the_file_and_keeps_every_entry(tmp_path: Path) -> None:
    """`compact` drops the free pages and packs devices; the store still verifies."""
    db = tmp_path / "db"
    scattered(db)
    with open_store(db) as store:  # free pages: the devices rewritten twice
        repack_devices(store)
        repack_devices(store)
        before = store.dump()
    size = (db / "data.mdb").stat().st_size
    done = compact(db)
    assert done.file_before == size
    assert done.file_after == (db / "data.mdb").stat().st_size
    assert done.file_after < size * 0.8
    assert done.hot_after / DEVICES < 32
    assert done.devices == DEVICES
    with open_store(db, readonly=True) as store:
        assert store.dump() == before
    assert verify(db).ok
    assert not list(tmp_path.glob(".db.*"))  # no scratch copy left


def test_compact_refuses_a_store_another_process_has_open(tmp_path: Path) -> None:
    """With `ceir serve` (any process) holding the store, compact refuses; nothing changes."""
    db = tmp_path / "db"
    scattered(db, devices=5_000)
    size = (db / "data.mdb").stat().st_size
    with held_open(db), pytest.raises(StoreError, match="open in another process"):
        compact(db)
    assert (db / "data.mdb").stat().st_size == size
    assert verify(db).ok
    assert not list(tmp_path.glob(".db.*"))


def test_compact_command_prints_the_figures_and_exits_5_without_a_store(tmp_path: Path) -> None:
    """`ceir compact --db` says what it did; a missing store is one line and exit 5."""
    db = tmp_path / "db"
    scattered(db, devices=5_000)
    result = CliRunner().invoke(main, ["compact", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"compacted {db}: file ")
    assert "5,000 devices" in result.output
    missing = CliRunner().invoke(main, ["compact", "--db", str(tmp_path / "none")])
    assert missing.exit_code == EXIT_STORE
    assert missing.output == f"ceir: no ceir store at {tmp_path / 'none'}\n"


def test_an_import_told_not_to_repack_leaves_loose_pages_to_compact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``repack=False`` (what a served import passes: the repack is one long write
    transaction single writes would queue behind) leaves the second import's loose
    ``details`` pages as they are; the same loads with the default repack them."""
    monkeypatch.setattr(compact_module, "REPACK_MIN_ADDED", 5_000)
    tacs, first, second = tmp_path / "tac.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    generate(Kind.TAC, POOL, tacs)
    generate(Kind.MANUFACTURER, 20_000, first, seed=1)
    after = (Kind.MANUFACTURER.code - 1) * 50_000_000 + 20_000
    generate(Kind.MANUFACTURER, 20_000, second, seed=2, start=after)
    options = Options(max_new_devices=20_000)
    slack = {}
    for repack in (False, True):
        with open_store(tmp_path / f"db-{repack}") as store:
            import_file(store, Kind.TAC, tacs, actor="test")
            for feed in (first, second):
                import_file(
                    store, Kind.MANUFACTURER, feed, actor="test", options=options, repack=repack
                )
            slack[repack] = table_slack(store, "details")
    assert slack[False] > 1.3
    assert slack[True] <= 1.02
