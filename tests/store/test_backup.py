"""`ceir backup`, `ceir restore`, `ceir verify`: consistent copies while writing, honest checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_STORE, main
from ceir.errors import StoreError
from ceir.record import Reason, Record, Source
from ceir.store import demo, open_store
from ceir.store.backup import backup, restore, verify
from ceir.store.tables import Tables
from tests.store._held import held_open

BATCH = 200
BASE = 5 * 10**12  # TAC 05000000: apart from the demo devices


def make_store(path: Path, batches: int = 1, *, with_demo: bool = True) -> None:
    with open_store(path) as store:
        if with_demo:  # audited: verify then checks the demo devices against the log
            demo.load(store)
        for b in range(batches):
            write_batch(store, b)


def write_batch(store: object, b: int) -> None:
    record = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1)
    keys = ((BASE + b * BATCH + i).to_bytes(8, "big") for i in range(BATCH))
    store.put_devices((k, record) for k in keys)  # type: ignore[attr-defined]


WRITER = """
import sys
from ceir.store import open_store
from tests.store.test_backup import write_batch
with open_store(sys.argv[1]) as store:
    b = 1
    while True:
        write_batch(store, b)
        b += 1
        if b == 5:
            print("writing", flush=True)
"""


def test_backup_while_another_process_writes_is_one_consistent_state(tmp_path: Path) -> None:
    """Batches committed during the copy are in it whole or not at all; the copy verifies."""
    db = tmp_path / "db"
    make_store(db)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        copies = [backup(db, tmp_path / f"b{i}") for i in range(5)]
    finally:
        writer.kill()
        writer.communicate()
    counts = set()
    for copied in copies:
        assert copied.report.ok
        with open_store(copied.dest, readonly=True) as store:
            ours = [
                k
                for k, _ in store.iter_devices()
                if BASE <= int.from_bytes(k, "big") < BASE + 10**9
            ]
        assert len(ours) % BATCH == 0
        assert [int.from_bytes(k, "big") - BASE for k in ours] == list(range(len(ours)))
        counts.add(len(ours))
    assert len(counts) > 1, "the writer made no progress during the backups"


def test_backup_is_compacted_and_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    """Deleted data's pages are dropped; an existing backup is never overwritten."""
    db = tmp_path / "db"
    make_store(db, batches=20, with_demo=False)  # unaudited writes, then all dropped
    with open_store(db) as store:
        store._write_txn(lambda txn: txn.drop(store.devices, delete=False))
    copied = backup(db, tmp_path / "b")
    assert copied.bytes < (db / "data.mdb").stat().st_size
    with pytest.raises(StoreError, match="not empty"):
        backup(db, tmp_path / "b")


def test_verify_reports_a_truncated_file_instead_of_crashing(tmp_path: Path) -> None:
    """A torn data.mdb is named as truncated (reading it would kill the process)."""
    db = tmp_path / "db"
    make_store(db, batches=10)
    with (db / "data.mdb").open("r+b") as f:
        f.truncate(3 * 4096)
    report = verify(db)
    assert not report.ok
    assert "truncated" in report.problems[0]


def test_verify_reports_undecodable_records_and_foreign_stores(tmp_path: Path) -> None:
    """A wrong-size record, a bad key and another schema version are each reported."""
    db = tmp_path / "db"
    make_store(db)
    with open_store(db) as store:

        def damage(txn: object) -> None:
            txn.put(b"\x00" * 7, b"x" * 12, db=store.devices)  # type: ignore[attr-defined]
            txn.put((1).to_bytes(8, "big"), b"short", db=store.devices)  # type: ignore[attr-defined]

        store._write_txn(damage)
    problems = verify(db).problems
    assert any("is not an 8-byte IMEI body" in p for p in problems)
    assert any("5-byte record" in p for p in problems)
    env = lmdb.open(str(db), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    assert "schema version '99'" in verify(db).problems[0]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"\x01" * 9000)
    assert "not an LMDB file" in verify(tmp_path / "junk").problems[0]


def test_verify_command_exit_codes(tmp_path: Path) -> None:
    """`ceir verify` prints table counts and exits 0 on a sound store, 5 on a damaged one."""
    db = tmp_path / "db"
    make_store(db)
    ok = CliRunner().invoke(main, ["verify", "--db", str(db)])
    assert ok.exit_code == 0
    assert "devices                207" in ok.output.splitlines()
    assert ok.output.splitlines()[-1] == f"{db}: ok"
    with (db / "data.mdb").open("r+b") as f:
        f.truncate(4096 * 3)
    bad = CliRunner().invoke(main, ["verify", "--db", str(db)])
    assert bad.exit_code == EXIT_STORE
    assert "truncated" in bad.output


def test_restore_refuses_a_store_in_use_and_keeps_the_old_one_aside(tmp_path: Path) -> None:
    """Restore needs the store closed everywhere and --force; the replaced store is kept."""
    db = tmp_path / "db"
    make_store(db, batches=3)
    copied = backup(db, tmp_path / "b")
    with open_store(db) as store:
        store._write_txn(lambda txn: txn.drop(store.devices, delete=False))
    with held_open(db, timeout=10), pytest.raises(StoreError, match="open in another process"):
        restore(copied.dest, db, force=True)
    with pytest.raises(StoreError, match="--force"):
        restore(copied.dest, db)
    result = CliRunner().invoke(main, ["restore", str(copied.dest), "--db", str(db), "--force"])
    assert result.exit_code == 0, result.output
    assert result.output == f"restored {copied.dest} to {db}: {3 * BATCH + 7:,} devices\n"
    with open_store(db, readonly=True) as store:
        assert store.device_count() == 3 * BATCH + 7
    assert len(list(tmp_path.glob("db.replaced-*"))) == 1


def test_verify_finds_a_gap_in_the_audit_log(tmp_path: Path) -> None:
    """An audit log with a missing entry is reported (it must be append-only)."""
    from ceir.store import audit

    db = tmp_path / "db"
    make_store(db)
    with open_store(db) as store:
        record = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1)
        keys = [(BASE + i).to_bytes(8, "big") for i in range(3)]
        changes = [audit.Change(k, audit.Action.MANUFACTURER, None, record.pack()) for k in keys]

        def write(tables: Tables) -> int:
            tables.devices.put(dict.fromkeys(keys, record.pack()))
            return audit.append(tables, changes, 1, 1)

        first = store.write(write)
    assert verify(db).ok
    with open_store(db) as store:
        assert store.write(lambda tables: tables.audit.delete(keys[1], first + 1))
    problems = verify(db).problems
    assert any("has 2 of its 3 entries: some are missing" in p for p in problems), problems
