"""``ceir verify --compare``: a replica's hot table against the central's, range by range,
at the same sequence."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ceir.errors import ReplicationError
from ceir.store import Store, replica

__all__ = ["Comparison", "RangeDigest", "compare", "differing"]

RangeDigest = tuple[str, int, bytes]
"""(range name, rows, SHA-256)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """What comparing two copies at one sequence found."""

    sequence: int
    ranges: int
    rows: int
    differ: list[tuple[str, int, int]]
    """(range, rows here, rows there) of every range whose digest differs."""


def differing(here: list[RangeDigest], there: list[RangeDigest]) -> list[tuple[str, int, int]]:
    """The ranges whose digests differ (or that only one side has)."""
    theirs = {name: (count, digest) for name, count, digest in there}
    ours = {name: (count, digest) for name, count, digest in here}
    out = []
    for name in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(name, (0, b"")), theirs.get(name, (0, b""))
        if a != b:
            out.append((name, a[0], b[0]))
    return out


def compare(
    store: Store,
    remote: Callable[[], tuple[int, list[RangeDigest]]],
    *,
    wait: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Comparison:
    """Compare *store* with *remote* at the same sequence, waiting up to *wait* seconds for
    both to stand at one (a replica catching up, a central taking writes)."""
    deadline = clock() + wait
    while True:
        theirs_seq, theirs = remote()
        ours_seq, ours = replica.digests(store)
        if ours_seq == theirs_seq:
            rows = sum(count for _name, count, _digest in ours)
            return Comparison(ours_seq, len(ours), rows, differing(ours, theirs))
        if clock() >= deadline:
            raise ReplicationError(
                f"this store is at change {ours_seq:,} and the other at {theirs_seq:,}; they "
                f"did not meet within {wait:g} s (a replica still catching up, or writes "
                "going on): try again, or give a longer --wait"
            )
        sleep(0.2)
