"""ceir.store: round trips, key order, schema versions, read-only opens and map growth."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.errors import StoreError, StoreSchemaError
from ceir.imei import body_from_key, body_key
from ceir.record import Reason, Record, Source
from ceir.store import SCHEMA_VERSION, Store, TacInfo, open_store

bodies = st.text(alphabet=string.digits, min_size=14, max_size=14)
u32 = st.integers(0, 2**32 - 1)
records = st.builds(
    Record,
    reason=st.sampled_from(Reason),
    source=st.sampled_from(Source),
    lost_stolen=st.booleans(),
    registered_at=u32,
    expires_at=u32,
)


@settings(max_examples=40)
@given(st.dictionaries(bodies, records, max_size=60), st.lists(bodies, max_size=10))
def test_put_get_round_trip(devices: dict[str, Record], absent: list[str]) -> None:
    """What put_devices stores, get and get_many return; other keys read as None."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "s") as store:
        assert store.put_devices((body_key(b), r) for b, r in devices.items()) == len(devices)
        assert store.device_count() == len(devices)
        for body, record in devices.items():
            assert store.get(body_key(body)) == record
        missing = [b for b in absent if b not in devices]
        keys = [body_key(b) for b in [*missing, *devices, *missing]]
        packed = store.get_many(keys)
        expected = (
            [None] * len(missing) + [r.pack() for r in devices.values()] + [None] * len(missing)
        )
        assert packed == expected


@settings(max_examples=20)
@given(st.sets(bodies, max_size=80))
def test_iteration_is_in_numeric_order(body_set: set[str]) -> None:
    """iter_devices yields keys in the numeric order of the bodies (TAC ranges contiguous)."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "s") as store:
        store.put_devices((body_key(b), Record(Reason.REGISTERED)) for b in body_set)
        assert [body_from_key(k) for k, _ in store.iter_devices()] == sorted(body_set, key=int)


def test_put_overwrites(store: Store) -> None:
    """Writing a key again replaces its record."""
    key = body_key("35209900176148")
    store.put_devices([(key, Record(Reason.REGISTERED, Source.CUSTOMS))])
    store.put_devices([(key, Record(Reason.REGISTERED, Source.CUSTOMS, lost_stolen=True))])
    assert store.get(key) == Record(Reason.REGISTERED, Source.CUSTOMS, lost_stolen=True)
    assert store.device_count() == 1


def test_tac_round_trip(store: Store) -> None:
    """TAC entries, non-ASCII names included, come back as stored; unknown TACs are None."""
    entries = [
        TacInfo("35209900", "Nusantara", "N1", "Smartphone"),
        TacInfo("86012345", "Garuda Électronique", "Tab 10 ✓", ""),
    ]
    assert store.put_tacs(entries) == 2
    assert [store.tac(e.tac) for e in entries] == entries
    assert store.tac("00000000") is None
    assert store.tac_count() == 2


def test_new_store_has_the_schema_version(store: Store) -> None:
    """A created store records this ceir's schema version in meta."""
    txn = store.env.begin(db=store.meta)
    try:
        assert txn.get(b"schema") == str(SCHEMA_VERSION).encode()
    finally:
        txn.abort()


def test_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """Opening a store of an unknown layout fails with a message naming both versions."""
    path = tmp_path / "s"
    with open_store(path) as store:
        store._write_txn(lambda txn: txn.put(b"schema", b"99", db=store.meta))
    for readonly in (False, True):
        with pytest.raises(StoreSchemaError) as caught:
            open_store(path, readonly=readonly)
        assert str(caught.value) == (
            f"store {path} has schema version '99'; this ceir reads version {SCHEMA_VERSION}. "
            "Use a matching ceir release or a new store path."
        )


def test_readonly_open_of_missing_store_fails(tmp_path: Path) -> None:
    """A read-only open of a directory without a store says there is none, and creates nothing."""
    path = tmp_path / "nothing"
    with pytest.raises(StoreError, match=f"^no ceir store at {path}$"):
        open_store(path, readonly=True)
    assert not path.exists()


def test_readonly_open_of_foreign_lmdb_fails(tmp_path: Path) -> None:
    """An LMDB environment that is not a ceir store is refused with a StoreError."""
    env = lmdb.open(str(tmp_path / "other"))
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(StoreError, match="other"):
        open_store(tmp_path / "other", readonly=True)


def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    """A read-only store serves reads and refuses writes with a StoreError."""
    key = body_key("35209900176148")
    with open_store(tmp_path / "s") as store:
        store.put_devices([(key, Record(Reason.REGISTERED, Source.MANUFACTURER))])
    with open_store(tmp_path / "s", readonly=True) as ro:
        assert ro.get(key) == Record(Reason.REGISTERED, Source.MANUFACTURER)
        with pytest.raises(StoreError, match="read-only"):
            ro.put_devices([(key, Record())])


def test_map_grows_instead_of_failing(store: Store) -> None:
    """Writes beyond a tiny map grow it; no MapFullError escapes and nothing is lost."""
    store.env.set_mapsize(64 * 1024)
    small = store.env.info()["map_size"]
    n = 40_000
    items = [
        (body_key(f"{i * 7919:014d}"), Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=i))
        for i in range(n)
    ]
    assert store.put_devices(items) == n
    assert store.env.info()["map_size"] > small
    assert store.device_count() == n
    assert store.get(items[-1][0]) == items[-1][1]
    store.put_tacs(TacInfo(f"{i:08d}", "Brand" * 10, "Model" * 10) for i in range(5_000))
    assert store.tac_count() == 5_000


def test_used_bytes_grows_with_the_devices_stored(store: Store) -> None:
    """used_bytes counts the tables' pages: more devices, more pages; a multiple of the page."""
    before = store.used_bytes()
    store.put_devices((i.to_bytes(8, "big"), Record(Reason.REGISTERED)) for i in range(20_000))
    after = store.used_bytes()
    assert after > before + 20_000 * 12
    assert after % 4096 == 0


def test_every_read_of_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    """lmdb.Error never leaks: reads of a closed environment raise StoreError, as writes do."""
    from ceir.store import audit

    store = open_store(tmp_path / "db")
    store.put_devices([(b"\x00" * 8, Record(Reason.REGISTERED))])
    store.close()
    reads = [
        lambda: store.get(b"\x00" * 8),
        lambda: store.get_many([b"\x00" * 8]),
        store.device_count,
        store.tac_count,
        lambda: store.tac("35209900"),
        lambda: list(store.iter_devices()),
        store.used_bytes,
        store.dump,
        lambda: audit.history(store, b"\x00" * 8),
        lambda: audit.get_origin(store, 1),
        lambda: store.put_devices([(b"\x00" * 8, Record(Reason.REGISTERED))]),
    ]
    for read in reads:
        with pytest.raises(StoreError, match="store"):
            read()


def test_a_failure_inside_a_snapshot_is_a_store_error(store: Store) -> None:
    """An LMDB failure raised while a view reads (here: an empty key) is translated."""
    with pytest.raises(StoreError, match="cannot read store"), store.snapshot() as tables:
        tables.config.get(b"")
    with pytest.raises(StoreError, match="cannot read store"), store.read() as reads:
        reads.get(b"")


@pytest.mark.parametrize("version", [b"1", b"2"])
def test_an_older_store_is_refused_untouched_saying_what_to_do(
    tmp_path: Path, version: bytes
) -> None:
    """A store of schema version 1 (audit by sequence number, audit_idx) or 2 (creations'
    entries in audit, change log uncompressed) is refused with a one-line error naming
    what to do, and the refused open adds no table to it."""
    path = tmp_path / "old"
    path.mkdir()
    env = lmdb.open(str(path), max_dbs=32, subdir=True)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"schema", version, db=meta)
        env.open_db(b"audit", txn=txn)
        env.open_db(b"audit_idx", txn=txn, dupsort=True)
    env.close()
    for readonly in (False, True):
        with pytest.raises(StoreSchemaError) as caught:
            open_store(path, readonly=readonly)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(
            f"store {path} has schema version '{version.decode()}'; this ceir reads version 3."
        )
        assert "import its feed files again into a new store (--db)" in message
    env = lmdb.open(str(path), max_dbs=32, subdir=True, readonly=True)
    with env.begin() as txn:
        names = sorted(bytes(k) for k, _v in txn.cursor())
    env.close()
    assert names == [b"audit", b"audit_idx", b"meta"]


def test_shared_details_read_back_whole_and_are_stored_once(tmp_path: Path) -> None:
    """Details written with shared fields read back exactly as written (a date or any
    other last field, one field, a value beginning with a marker byte); each distinct
    set of leading fields is stored once."""
    values = {
        (b"\x00" * 7 + b"\x01", 1): b"Samsung\x1fA10\x1fTPP-1\x1fM1\x1f2023-11-28",
        (b"\x00" * 7 + b"\x02", 1): b"Samsung\x1fA10\x1fTPP-1\x1fM1\x1f2023-02-30",
        (b"\x00" * 7 + b"\x03", 1): b"Samsung\x1fA10\x1fTPP-1\x1fM1\x1f28/11/2023",
        (b"\x00" * 7 + b"\x04", 1): b"Nokia\x1f3310\x1fTPP-2\x1fM2\x1f1970-01-01",
        (b"\x00" * 7 + b"\x05", 1): b"single",
        (b"\x00" * 7 + b"\x06", 1): b"\x01odd",
        (b"\x00" * 7 + b"\x07", 2): b"\x02odd\x1f2023-11-28",
    }
    with open_store(tmp_path / "db") as store:
        store.write(lambda tables: tables.details.put(values, shared=True))
        store.write(lambda tables: tables.details.put({(b"\x00" * 7 + b"\x08", 1): values[
            (b"\x00" * 7 + b"\x01", 1)]}, shared=True))  # fmt: skip
        with store.snapshot() as tables:
            for (device, code), value in values.items():
                assert tables.details.get(device, code) == value
            assert (
                tables.details.get(b"\x00" * 7 + b"\x08", 1) == values[(b"\x00" * 7 + b"\x01", 1)]
            )
        shapes = [k for k, _v in store.dump()["shapes"] if k[:1] == b"#"]
        assert len(shapes) == 3  # Samsung..., Nokia..., "\x02odd"
        stored = dict(store.dump()["details"])
        assert len(stored[b"\x00" * 7 + b"\x01\x01"]) == 7  # marker, shape id, 2-byte day


@settings(max_examples=40, deadline=None)
@given(
    stored=st.sets(st.integers(0, 500), max_size=60),
    batches=st.lists(st.sets(st.integers(0, 500), max_size=60), max_size=4),
)
def test_ascending_puts_append_above_the_last_key_and_lose_nothing(
    stored: set[int], batches: list[set[int]]
) -> None:
    """``put_ascending`` appends (``MDB_APPEND``) only what lies above the last stored
    key and puts the rest in order: every pair lands, old or new, whatever the overlap
    (an append of a key below the last one would be dropped silently by LMDB)."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "db") as store:
        want = {
            body_key(f"{k:014d}"): Record(Reason.REGISTERED, Source.MANUFACTURER, k).pack()
            for k in stored
        }
        store.write(lambda t: t.devices.put_ascending(sorted(want.items())))
        for i, batch in enumerate(batches, 1):
            new = {
                body_key(f"{k:014d}"): Record(Reason.REGISTERED, Source.OPERATOR, i).pack()
                for k in batch
            }
            store.write(lambda t, new=new: t.devices.put_ascending(sorted(new.items())))
            want.update(new)
        with store.snapshot() as tables:
            assert dict(tables.devices.packed_items()) == want
