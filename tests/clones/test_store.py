"""The clone tables travel to replicas in the change log; retention purges sightings."""

from __future__ import annotations

from pathlib import Path

from ceir.clones.conditions import DEFAULT_CONDITIONS
from ceir.clones.recorder import Recorder
from ceir.clones.retention import purge_sightings
from ceir.imei import body_key
from ceir.record import Reason, Record, Source
from ceir.store import Store, changes, clones, open_store, replica
from ceir.store.clonetables import operator_code, operator_text
from ceir.store.identity import tokenizer_for
from ceir.store.replica import Applied
from ceir.store.vault import reveal, site_key_path, site_vault

KEY = body_key("35209900176148")
T0 = 1_800_000_000


def test_operator_codes_round_trip() -> None:
    """MCC-MNC <-> 4-byte code, 2- and 3-digit MNCs apart; junk is 0."""
    for op in ("510-10", "510-01", "310-260", "310-026"):
        assert operator_text(operator_code(op)) == op
    assert operator_code("510-10") != operator_code("510-010")
    assert operator_code("") == operator_code("51010") == 0


def test_a_replica_applies_states_and_pairs_from_the_log(store: Store, tmp_path: Path) -> None:
    """Every change-log entry the detector wrote, applied on an empty store, gives the same
    devices, clone states and pairs (and no sightings: they stay at their site)."""
    store.put_devices([(KEY, Record(Reason.REGISTERED, Source.MANUFACTURER))])
    recorder = Recorder(
        store, tokenizer_for(store), conditions=DEFAULT_CONDITIONS, clock=lambda: T0
    )
    for n in range(10):
        recorder.observe(KEY, f"51010000000{n:04d}", "")
    recorder.flush()
    with open_store(tmp_path / "replica") as copy:
        batch = [
            Applied(e.seq, e.seq, e.committed_ms, e.body) for e in changes.entries(store, 0, 1000)
        ]
        replica.replace(
            copy, seq=0, committed_ms=0, device_rows=[], tac_rows=[], expect=(0, 0, 0, 0)
        )
        replica.apply(copy, batch)
        assert copy.get(KEY) == store.get(KEY)
        assert list(clones.iter_clones(copy)) == list(clones.iter_clones(store))
        assert list(clones.iter_pairs(copy)) == list(clones.iter_pairs(store))
        assert clones.sightings(copy, KEY) == []
    assert len(clones.sightings(store, KEY)) == 10


def _bootstrap(central: Store, copy: Store) -> None:
    with replica.hot_snapshot(central) as snap:
        replica.replace(
            copy,
            seq=snap.seq,
            committed_ms=snap.committed_ms,
            device_rows=list(snap.device_chunks()),
            tac_rows=list(snap.tac_chunks()),
            clone_rows=list(snap.clone_chunks(rows=1)),
            pair_rows=list(snap.pair_chunks(rows=1)),
            expect=(snap.devices, snap.tacs, snap.clones, snap.pairs),
        )


def test_a_snapshot_carries_states_and_pairs_and_keeps_the_replicas_own(
    store: Store, tmp_path: Path
) -> None:
    """A replica bootstrapped from a snapshot holds the central's clone states and pairs
    (stale ones replaced), digests equal; its own sightings and vault stay."""
    other = body_key("35209900176149")
    store.put_devices([(k, Record(Reason.REGISTERED, Source.MANUFACTURER)) for k in (KEY, other)])
    recorder = Recorder(
        store, tokenizer_for(store), conditions=DEFAULT_CONDITIONS, clock=lambda: T0
    )
    for n in range(10):
        recorder.observe(KEY, f"51010000000{n:04d}", "")
        recorder.observe(other, f"51011000000{n:04d}", "")
    recorder.flush()
    assert len(list(clones.iter_clones(store))) == 2
    with open_store(tmp_path / "replica") as copy:
        mine = Recorder(
            copy,
            tokenizer_for(copy),
            conditions=None,
            namespace=operator_code("510-10"),
            vault=site_vault(copy),
        )
        mine.observe(KEY, "510109999999999", "")
        mine.flush()
        _bootstrap(store, copy)  # twice: the second replaces what the first wrote
        _bootstrap(store, copy)
        assert copy.get(KEY) == store.get(KEY)
        assert list(clones.iter_clones(copy)) == list(clones.iter_clones(store))
        assert list(clones.iter_pairs(copy)) == list(clones.iter_pairs(store))
        assert [s.namespace for s in clones.sightings(copy, KEY)] == [operator_code("510-10")]
        assert reveal(copy, clones.sightings(copy, KEY)[0].token) == "510109999999999"
        assert replica.digests(copy) == replica.digests(store)


def test_purge_drops_old_sightings_and_their_sealed_imsis(store: Store) -> None:
    """Sightings last seen before the retention go, and a replica's sealed IMSIs with them;
    the vault's key file is private and beside the store."""
    clock = [float(T0)]
    recorder = Recorder(
        store,
        tokenizer_for(store),
        conditions=None,
        namespace=operator_code("510-10"),
        vault=site_vault(store),
        clock=lambda: clock[0],
    )
    recorder.observe(KEY, "510100000000001", "")
    recorder.flush()
    clock[0] = T0 + 100 * 86400
    recorder.observe(KEY, "510100000000002", "")
    recorder.flush()
    tokens = [s.token for s in clones.sightings(store, KEY)]
    assert [reveal(store, t) for t in tokens] == ["510100000000001", "510100000000002"]
    assert site_key_path(store).stat().st_mode & 0o777 == 0o600
    raw = (store.path / "data.mdb").read_bytes()
    assert b"510100000000001" not in raw
    purged = purge_sightings(store, now=T0 + 181 * 86400, days=180)
    assert (purged.sightings, purged.devices, purged.sealed) == (1, 0, 1)
    assert reveal(store, tokens[0]) is None
    assert reveal(store, tokens[1]) == "510100000000002"
