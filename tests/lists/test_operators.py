"""Per-operator notifications and exceptions, from the clone detector's real writes."""

from __future__ import annotations

import dataclasses
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.clones import actions, detector
from ceir.clones.conditions import DEFAULT_CONDITIONS, DEFAULT_GRACE_DAYS
from ceir.clones.detector import Seen
from ceir.lists.export import ExportOptions, export
from ceir.record import Reason, Record, Source
from ceir.security.principals import Role
from ceir.store import Store, open_store, replica
from ceir.store.clones import operator_code
from ceir.store.tables import Tables
from ceir.store.vault import site_vault
from tests.lists.conftest import DAY, key_of, one, read_csv, write

T0 = 1_780_000_000
A, B = "510-10", "510-11"
REG = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=T0 - 400 * DAY)


def tok(n: int) -> bytes:
    return n.to_bytes(16)


def see(store: Store, at: int, *sightings: tuple[int, int, str, int]) -> None:
    """Sightings (device body, SIM number, operator, minutes after *at*) in the
    operator's own token namespace, through the detector with the default conditions."""
    batch = [
        Seen(key_of(d), tok(s), operator_code(op), operator_code(op), at // 60 + m)
        for d, s, op, m in sightings
    ]
    store.write(lambda t: detector.merge(t, batch, DEFAULT_CONDITIONS, at + 3600))


def sweep(store: Store, at: int) -> None:
    store.write(lambda t: detector.sweep(t, at))


def rows(path: Path) -> list[dict[str, str]]:
    return read_csv(path)[1]


def ymd_day(day: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(day * DAY))


def _scenario(store: Store) -> None:
    write(store, T0, dict.fromkeys((1, 2, 3, 4), REG))
    # 1: two SIMs of A, then one of B within the hour -> greylisted; SIM 11 is its pair.
    see(store, T0, (1, 11, A, 0), (1, 12, A, 1), (1, 13, B, 5))
    # 2: the same, and its grace ends -> blocked; SIM 21 (A) is its pair.
    see(store, T0 - (DEFAULT_GRACE_DAYS + 1) * DAY, (2, 21, A, 0), (2, 22, B, 5))
    sweep(store, T0)
    # 3: one SIM only: nothing.
    see(store, T0, (3, 31, A, 0))


def test_operator_lists_round_trip(store: Store, tmp_path: Path) -> None:
    """The central writes per operator: notifications of flagged, not blocked devices
    (SIMs that are no pair, as tokens), exceptions of devices blocked for DUPLICATE (their
    pairs); the blacklist has the blocked clone with the day its grace ended."""
    _scenario(store)
    done = export(store, tmp_path / "out", now=T0 + DAY)
    out = tmp_path / "out"
    flagged_day = T0 // DAY
    block = ymd_day(flagged_day + DEFAULT_GRACE_DAYS)
    assert {
        r["imei"]: (r["block_date"], r["reasons"]) for r in rows(one(out, "*_blacklist.csv"))
    } == {
        f"{2:014d}": (
            ymd_day((T0 - (DEFAULT_GRACE_DAYS + 1) * DAY + 3600) // DAY + DEFAULT_GRACE_DAYS),
            "DUPLICATE",
        )
    }
    header, notes_a = read_csv(one(out, f"*_notifications_{A}.csv"))
    assert header == ["imei", "imsi", "msisdn", "block_date", "reasons"]
    assert notes_a == [
        {
            "imei": f"{1:014d}",
            "imsi": "tok_" + tok(12).hex(),
            "msisdn": "",
            "block_date": block,
            "reasons": "DUPLICATE",
        }
    ]
    assert [(r["imei"], r["imsi"]) for r in rows(one(out, f"*_notifications_{B}.csv"))] == [
        (f"{1:014d}", "tok_" + tok(13).hex())
    ]
    header, exempt_a = read_csv(one(out, f"*_exceptions_{A}.csv"))
    assert header == ["imei", "imsi", "msisdn"]
    assert exempt_a == [{"imei": f"{2:014d}", "imsi": "tok_" + tok(21).hex(), "msisdn": ""}]
    assert rows(one(out, f"*_exceptions_{B}.csv")) == []
    prefix = done.run.prefix
    with zipfile.ZipFile(out / f"{prefix}_{A}.zip") as archive:
        assert sorted(archive.namelist()) == [
            f"{prefix}_exceptions_{A}.csv",
            f"{prefix}_notifications_{A}.csv",
        ]
        for name in archive.namelist():
            assert archive.read(name) == (out / name).read_bytes()


def _full(out: Path, prefix: str, name: str) -> set[tuple[str, ...]]:
    return {tuple(r.values()) for r in rows(out / f"{prefix}_{name}.csv")}


def test_operator_deltas_rebuild_the_new_lists(store: Store, tmp_path: Path) -> None:
    """Between two runs device 1's grace ends (its notifications leave as blacklisted,
    its pair joins the exceptions), device 4 is flagged (new), device 5 is flagged then
    cleared (resolved): for every list full(base) + delta == full(run)."""
    _scenario(store)
    write(store, T0, {5: REG})
    see(store, T0, (5, 51, A, 0), (5, 52, B, 3))
    first = export(store, tmp_path / "one", now=T0 + DAY)
    write(store, T0 + 2 * DAY, {4: REG})
    see(store, T0 + 2 * DAY, (4, 41, A, 0), (4, 42, A, 1), (4, 43, B, 2))
    actions.clear(store, key_of(5), actor="test:ministry", role=Role.MINISTRY, now=T0 + 2 * DAY)
    later = T0 + (DEFAULT_GRACE_DAYS + 1) * DAY
    sweep(store, later)  # 1 is blocked now; 4 was flagged after it, so not yet
    done = export(store, tmp_path / "two", ExportOptions(base=first.run.run), now=later)
    one_dir, two = tmp_path / "one", tmp_path / "two"
    base_prefix, prefix = first.run.prefix, done.run.prefix
    kinds = {
        "blacklist": (("blocked", "changed"), ("unblocked",)),
        f"notifications_{A}": (("new", "changed"), ("resolved", "blacklisted", "no_longer_seen")),
        f"notifications_{B}": (("new", "changed"), ("resolved", "blacklisted", "no_longer_seen")),
        f"exceptions_{A}": (("added",), ("removed",)),
        f"exceptions_{B}": (("added",), ("removed",)),
    }
    for name, (adds, removes) in kinds.items():
        base = _full(one_dir, base_prefix, name)
        new = _full(two, prefix, name)
        delta = {c: _full(two, prefix, f"{name}_delta_1_2_{c}") for c in (*adds, *removes)}
        key = (lambda row: row[:2]) if "_" in name else (lambda row: row[:1])
        gone = {key(r) for c in removes for r in delta[c]}
        rebuilt = {
            r
            for r in base
            if key(r) not in gone and key(r) not in {key(x) for c in adds for x in delta[c]}
        }
        rebuilt |= {r for c in adds for r in delta[c]}
        assert rebuilt == new, name
    blacklisted = _full(two, prefix, f"notifications_{A}_delta_1_2_blacklisted")
    assert {r[:2] for r in blacklisted} == {(f"{1:014d}", "tok_" + tok(12).hex())}
    assert {r[:2] for r in _full(two, prefix, f"notifications_{A}_delta_1_2_new")} == {
        (f"{4:014d}", "tok_" + tok(42).hex())
    }
    # 5's only A SIM is its pair (no notification); its B SIM's notification is resolved.
    assert _full(two, prefix, f"notifications_{A}_delta_1_2_resolved") == set()
    assert {r[:2] for r in _full(two, prefix, f"notifications_{B}_delta_1_2_resolved")} == {
        (f"{5:014d}", "tok_" + tok(52).hex())
    }
    assert (f"{1:014d}", "tok_" + tok(11).hex(), "") in _full(
        two, prefix, f"exceptions_{A}_delta_1_2_added"
    )


def test_a_replica_writes_its_own_lists_with_clear_imsis(tmp_path: Path) -> None:
    """At an operator's replica: only that operator's lists, no blacklist, the IMSIs its
    vault holds in clear, files readable by their owner only."""
    with open_store(tmp_path / "r") as store:
        row = key_of(1) + REG.pack()
        replica.replace(
            store,
            seq=1,
            committed_ms=T0 * 1000,
            device_rows=[row],
            tac_rows=[],
            expect=(1, 0, 0, 0),
        )
        code = operator_code(A)
        sealer = site_vault(store)

        def seal(tables: Tables) -> None:
            for n, imsi in ((11, "510100000000011"), (12, "510100000000012")):
                tables.vault.put(tok(n), sealer.seal(tok(n), imsi))

        store.write(seal)
        batch = [Seen(key_of(1), tok(n), code, code, T0 // 60 + n) for n in (11, 12)]
        store.write(lambda t: detector.merge(t, batch, None, T0))
        actions.greylist(store, key_of(1), actor="test:ministry", role=Role.MINISTRY, now=T0)
        done = export(store, tmp_path / "out", ExportOptions(operators=(A,)), now=T0 + 60)
        out = tmp_path / "out"
        names = sorted(p.name for p in out.iterdir())
        prefix = done.run.prefix
        wanted = (f"notifications_{A}.csv", f"exceptions_{A}.csv", f"{A}.zip")
        assert names == sorted(f"{prefix}_{n}" for n in wanted)
        notes = rows(out / f"{prefix}_notifications_{A}.csv")
        assert sorted(r["imsi"] for r in notes) == ["510100000000011", "510100000000012"]
        for path in out.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


_EVENT = st.one_of(
    st.tuples(st.just("see"), st.integers(1, 6), st.integers(0, 5), st.sampled_from([A, B])),
    st.tuples(st.just("clear"), st.integers(1, 6), st.just(0), st.just("")),
    st.tuples(st.just("lost"), st.integers(1, 6), st.just(0), st.just("")),
)


def _apply(store: Store, at: int, events: list[tuple[str, int, int, str]]) -> None:
    for n, (what, device, sim, op) in enumerate(events):
        if what == "see":
            see(store, at + n * 60, (device, device * 10 + sim, op, 0))
        elif what == "clear":
            actions.clear(store, key_of(device), actor="t:m", role=Role.MINISTRY, now=at + n)
        else:
            write(store, at + n, {device: dataclasses.replace(REG, lost_stolen=True)})


def _keyed(out: Path, prefix: str, name: str, width: int) -> dict[tuple[str, ...], tuple[str, ...]]:
    return {
        tuple(r.values())[:width]: tuple(r.values()) for r in rows(out / f"{prefix}_{name}.csv")
    }


@settings(max_examples=25)
@given(
    first=st.lists(_EVENT, max_size=12),
    second=st.lists(_EVENT, max_size=12),
    days=st.sampled_from([0, 1, DEFAULT_GRACE_DAYS + 1]),
)
def test_random_clone_changes_full_base_plus_delta_is_full_run(
    first: list[tuple[str, int, int, str]], second: list[tuple[str, int, int, str]], days: int
) -> None:
    """Random sightings, clears, thefts and time (past the grace, too) between two runs:
    every operator list of the run is its base list with the delta files applied."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "db") as store:
        write(store, T0, dict.fromkeys(range(1, 7), REG))
        _apply(store, T0, first)
        base = export(store, Path(tmp) / "one", ExportOptions(operators=(A, B)), now=T0 + 3600)
        later = T0 + days * DAY + 7200
        _apply(store, later - 3600, second)
        sweep(store, later)
        run = export(store, Path(tmp) / "two", ExportOptions(base=1), now=later)
        for op in (A, B):
            for kind, width, adds, removes in (
                (
                    "notifications",
                    2,
                    ("new", "changed"),
                    ("resolved", "blacklisted", "no_longer_seen"),
                ),
                ("exceptions", 2, ("added",), ()),
            ):
                name = f"{kind}_{op}"
                old = _keyed(Path(tmp) / "one", base.run.prefix, name, width)
                new = _keyed(Path(tmp) / "two", run.run.prefix, name, width)
                rebuilt = dict(old)
                two = Path(tmp) / "two"
                for change in removes:
                    for k in _keyed(two, run.run.prefix, f"{name}_delta_1_2_{change}", width):
                        del rebuilt[k]
                for change in adds:
                    rebuilt.update(_keyed(two, run.run.prefix, f"{name}_delta_1_2_{change}", width))
                assert rebuilt == new, name
