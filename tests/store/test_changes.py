"""The change log: written with every change, in the same transaction, in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.errors import StoreError
from ceir.feeds import Kind
from ceir.feeds.single import apply_one
from ceir.record import RECORD_SIZE, Reason, Record, Source
from ceir.store import Store, changes, open_store
from ceir.store.tables import Tables, TacInfo

keys = st.binary(min_size=8, max_size=8)
records = st.binary(min_size=RECORD_SIZE, max_size=RECORD_SIZE)
tac_values = st.binary(max_size=300)


@given(
    st.lists(st.tuples(keys, st.one_of(st.none(), records)), max_size=50),
    st.lists(st.tuples(keys, st.one_of(st.none(), tac_values)), max_size=20),
)
def test_packed_operations_unpack_in_order(
    devices: list[tuple[bytes, bytes | None]], tacs: list[tuple[bytes, bytes | None]]
) -> None:
    """pack_ops -> unpack_ops gives every device then every TAC change back, in order."""
    ops = [op for body in changes.pack_ops(devices, tacs) for op in changes.unpack_ops(body)]
    assert [(k, v) for _op, k, v in ops] == [*devices, *tacs]
    assert all(
        op in (changes.Op.DEVICE_PUT, changes.Op.DEVICE_DELETE) for op, *_ in ops[: len(devices)]
    )


def test_a_large_change_is_split_into_entries_under_the_limit() -> None:
    """100,000 device changes become several bodies, each at most MAX_ENTRY_BYTES."""
    devices = [(i.to_bytes(8, "big"), bytes(RECORD_SIZE)) for i in range(100_000)]
    bodies = changes.pack_ops(devices)
    assert len(bodies) > 1
    assert all(len(b) <= changes.MAX_ENTRY_BYTES for b in bodies)
    assert sum(1 for b in bodies for _ in changes.unpack_ops(b)) == 100_000


@pytest.mark.parametrize("junk", [b"\x09" + bytes(8), b"\x01" + bytes(5), b"\x03" + bytes(8)])
def test_a_malformed_body_is_a_store_error(junk: bytes) -> None:
    """Unknown operations and truncated ones are refused, not misread."""
    with pytest.raises(StoreError):
        list(changes.unpack_ops(junk))


def test_every_write_path_appends_to_the_log(store: Store) -> None:
    """Bulk loads, TAC entries and a single registration each add an entry, with the new
    record (not the audit detail) of the device they changed."""
    assert changes.head(store) == (0, 0)
    store.put_tacs([TacInfo("35209900", "Brand", "Model")])
    key = (35209900176148).to_bytes(8, "big")
    record = Record(Reason.GRANDFATHERED, Source.OPERATOR, registered_at=1_600_000_000)
    store.put_devices([(key, record)])
    apply_one(
        store,
        Kind.EXCEPTION,
        {"imei": "352099001761499", "category": "diplomat", "reference": "R-1"},
        actor="test",
        request="r-1",
    )
    seq, at = changes.head(store)
    assert seq == 3
    assert at > 0
    got = [
        (op, k, v)
        for entry in changes.entries(store, 0, 10)
        for op, k, v in changes.unpack_ops(entry.body)
    ]
    assert got[0] == (changes.Op.TAC_PUT, b"35209900", TacInfo("35209900", "Brand", "Model").pack())
    assert got[1] == (changes.Op.DEVICE_PUT, key, record.pack())
    assert got[2][0] is changes.Op.DEVICE_PUT
    assert got[2][1] == (35209900176149).to_bytes(8, "big")
    assert [e.seq for e in changes.entries(store, 1, 10)] == [2, 3]


def test_a_change_and_its_log_entry_commit_together(tmp_path: Path) -> None:
    """A write transaction that fails leaves neither the device nor its log entry."""
    key, value = (35209900176148).to_bytes(8, "big"), bytes(RECORD_SIZE)
    with open_store(tmp_path / "s") as store:

        def fail(tables: Tables) -> None:
            tables.devices.put({key: value})
            changes.record(tables, devices=[(key, value)])
            raise RuntimeError("crash inside the transaction")

        with pytest.raises(RuntimeError):
            store.write(fail)
        assert changes.head(store) == (0, 0)
        assert store.get(key) is None


@given(st.lists(st.tuples(keys, st.one_of(st.none(), records)), max_size=50))
def test_the_device_put_fast_path_decodes_what_unpack_ops_does(
    devices: list[tuple[bytes, bytes | None]],
) -> None:
    """device_puts gives the same pairs as unpack_ops for a body of puts only, and None
    for a body with anything else in it."""
    for body in changes.pack_ops(devices):
        ops = list(changes.unpack_ops(body))
        fast = changes.device_puts(body)
        if all(op is changes.Op.DEVICE_PUT for op, _k, _v in ops):
            assert fast is not None
            assert list(fast) == [(k, v) for _op, k, v in ops]
        else:
            assert fast is None


@given(
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=14),
    st.integers(min_value=0, max_value=14),
)
def test_trim_deletes_only_acknowledged_entries_past_retention(
    n: int, below: int, before: int
) -> None:
    """Entries numbered below *below* and committed before *before* go, oldest first; the
    head entry always stays, and the next change is numbered after it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "s") as store:
        for i in range(1, n + 1):  # entry i committed at i ms
            store.write(
                lambda t, i=i: changes.record(t, devices=[(i.to_bytes(8, "big"), None)], at_ms=i)
            )
        done = changes.trim(store, below=below, before_ms=before)
        kept = [e.seq for e in changes.entries(store, 0, 100)]
        gone = [i for i in range(1, n) if i < below and i < before]
        assert kept == [i for i in range(1, n + 1) if i not in gone]
        assert done.entries == len(gone)
        assert done.first == kept[0] == changes.first(store)
        assert changes.head(store)[0] == n
        assert store.write(lambda t: changes.record(t, devices=[(bytes(8), None)])) == n + 1


@given(
    st.lists(st.tuples(keys, st.one_of(st.none(), records)), max_size=300),
    st.booleans(),
)
def test_a_sealed_body_opens_to_the_same_operations(
    devices: list[tuple[bytes, bytes | None]], sort: bool
) -> None:
    """seal -> open_body is the identity for every body; a body of only device puts (and
    enough of them) is stored smaller, any other one as it is."""
    if sort:
        devices.sort(key=lambda kv: kv[0])
    for body in changes.pack_ops(devices):
        sealed = changes.seal(body)
        assert changes.open_body(sealed) == body
        if changes.device_puts(body) is None or len(body) < 64 * 21:
            assert sealed == body


def test_an_import_batch_is_stored_compressed_and_read_back_whole(tmp_path: Path) -> None:
    """A bulk load's entry costs a few bytes a device in the table, and the log hands back
    exactly the operations written (the relay and the followers read it through here)."""
    devices = [
        (
            (35209900000000 + 37 * i).to_bytes(8, "big"),
            Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=1_600_000_000).pack(),
        )
        for i in range(20_000)
    ]
    with open_store(tmp_path / "db") as store:
        store.write(lambda tables: changes.record(tables, devices=devices))
        (entry,) = changes.entries(store, 0, 10)
        assert list(changes.unpack_ops(entry.body)) == [
            (changes.Op.DEVICE_PUT, k, v) for k, v in devices
        ]
        assert store.table_bytes()["changes"] < 6 * len(devices)  # 21 bytes a device raw


def test_a_damaged_sealed_body_is_a_store_error() -> None:
    body = changes.pack_ops([(i.to_bytes(8, "big"), bytes(RECORD_SIZE)) for i in range(100)])[0]
    sealed = changes.seal(body)
    for junk in (sealed[:-5], sealed[:1] + b"junk"):
        with pytest.raises(StoreError):
            changes.open_body(junk)
