"""The delta between two runs of a list: pure, so checked on random rows of every kind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ceir.lists.delta import ADDS, apply, diff
from ceir.lists.kinds import DEVICE_BYTES, Change, ListKind

DEVICES = [bytes(7) + bytes((i,)) for i in range(6)]


def _rows(kind: ListKind) -> st.SearchStrategy[dict[bytes, bytes]]:
    if kind is ListKind.BLACKLIST:
        keys = st.sampled_from(DEVICES)
    else:
        sims = st.sampled_from([bytes(4) + bytes(15) + bytes((n,)) for n in range(3)])
        keys = st.builds(lambda d, s: d + s, st.sampled_from(DEVICES), sims)
    values = st.binary(min_size=kind.value_bytes, max_size=kind.value_bytes)
    return st.dictionaries(keys, values, max_size=12)


@st.composite
def _case(draw: st.DrawFn) -> tuple[ListKind, dict[bytes, bytes], dict[bytes, bytes]]:
    kind = draw(st.sampled_from(list(ListKind)))
    return kind, draw(_rows(kind)), draw(_rows(kind))


@given(_case(), st.sets(st.sampled_from(DEVICES)), st.sets(st.sampled_from(DEVICES)))
def test_apply_of_diff_rebuilds_the_new_run(
    case: tuple[ListKind, dict[bytes, bytes], dict[bytes, bytes]],
    blacklisted: set[bytes],
    flagged: set[bytes],
) -> None:
    """apply(base, diff(base, run)) == run; every kind present; each row in one kind."""
    kind, base, run = case
    delta = diff(kind, base, run, blacklisted=blacklisted, flagged=flagged)
    assert list(delta) == list(kind.changes)
    assert apply(base, delta) == run
    seen = [key for rows in delta.values() for key in rows]
    assert len(seen) == len(set(seen))
    for change, rows in delta.items():
        for key, value in rows.items():
            assert value == (run[key] if change in ADDS else base[key])


@given(_case(), st.sets(st.sampled_from(DEVICES)), st.sets(st.sampled_from(DEVICES)))
def test_a_notification_leaves_by_the_way_its_device_went(
    case: tuple[ListKind, dict[bytes, bytes], dict[bytes, bytes]],
    blacklisted: set[bytes],
    flagged: set[bytes],
) -> None:
    """Removed notifications: blacklisted if the device is now blacklisted, else
    no_longer_seen while it is still flagged, else resolved."""
    kind, base, run = case
    if kind is not ListKind.NOTIFICATIONS:
        return
    delta = diff(kind, base, run, blacklisted=blacklisted, flagged=flagged)
    for key in base.keys() - run.keys():
        device = key[:DEVICE_BYTES]
        if device in blacklisted:
            assert key in delta[Change.BLACKLISTED]
        elif device in flagged:
            assert key in delta[Change.NO_LONGER_SEEN]
        else:
            assert key in delta[Change.RESOLVED]


def test_unchanged_rows_are_in_no_delta() -> None:
    """The same rows twice: every change kind is empty (the files get a header only)."""
    rows = {DEVICES[0]: b"\x00\x00\x00\x01\x00\x40"}
    assert all(not r for r in diff(ListKind.BLACKLIST, rows, dict(rows)).values())
