"""Deltas between two runs of one list: pure, on rows as ``key -> value`` bytes.

A row only in the new run is added (``blocked`` / ``new`` / ``added``), a row only in the
base is removed (``unblocked`` / ``removed``; for notifications ``blacklisted`` when its
device is on the new blacklist, ``no_longer_seen`` when the device is still flagged but
this SIM no longer goes with it, else ``resolved``), and a row in both whose value
differs is ``changed`` (it shows the new value). So ``apply(base, diff(base, run)) == run``
for every base and run: what the operators do with the files.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from ceir.lists.kinds import DEVICE_BYTES, Change, ListKind

__all__ = ["ADDS", "apply", "diff"]

ADDS = frozenset({Change.BLOCKED, Change.NEW, Change.ADDED, Change.CHANGED})
"""The change kinds whose rows are in the new run (the rest left it)."""
_ADDED = {
    ListKind.BLACKLIST: Change.BLOCKED,
    ListKind.NOTIFICATIONS: Change.NEW,
    ListKind.EXCEPTIONS: Change.ADDED,
}


def diff(
    kind: ListKind,
    base: Mapping[bytes, bytes],
    run: Mapping[bytes, bytes],
    *,
    blacklisted: Container[bytes] = frozenset(),
    flagged: Container[bytes] = frozenset(),
) -> dict[Change, dict[bytes, bytes]]:
    """The rows of each of *kind*'s change kinds (every kind present, maybe empty).

    *blacklisted* and *flagged* are device keys on the new run's blacklist and still
    flagged (greylisted or blocked) in it: they tell a notification's way out.
    """
    out: dict[Change, dict[bytes, bytes]] = {change: {} for change in kind.changes}
    added = out[_ADDED[kind]]
    for key in run.keys() - base.keys():
        added[key] = run[key]
    if kind is not ListKind.EXCEPTIONS:
        changed = out[Change.CHANGED]
        for key in run.keys() & base.keys():
            if run[key] != base[key]:
                changed[key] = run[key]
    for key in base.keys() - run.keys():
        out[_removal(kind, key[:DEVICE_BYTES], blacklisted, flagged)][key] = base[key]
    return out


def _removal(
    kind: ListKind, device: bytes, blacklisted: Container[bytes], flagged: Container[bytes]
) -> Change:
    if kind is ListKind.BLACKLIST:
        return Change.UNBLOCKED
    if kind is ListKind.EXCEPTIONS:
        return Change.REMOVED
    if device in blacklisted:
        return Change.BLACKLISTED
    if device in flagged:
        return Change.NO_LONGER_SEEN
    return Change.RESOLVED


def apply(
    base: Mapping[bytes, bytes], delta: Mapping[Change, Mapping[bytes, bytes]]
) -> dict[bytes, bytes]:
    """The list *delta* makes of *base*: what an operator holding *base* computes."""
    out = dict(base)
    for change, rows in delta.items():
        if change in ADDS:
            out.update(rows)
        else:
            for key in rows:
                out.pop(key, None)
    return out
