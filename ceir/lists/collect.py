"""What one run exports, taken from the store: the rows of each list, by list name.

At the central register: the blacklist. (An operator's replica exports no blacklist: it
does not hold the audit log that dates the blocks.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ceir.lists.blacklist import blacklist
from ceir.lists.kinds import ListKind
from ceir.store import Store

__all__ = ["CENTRAL", "Collected", "collect"]

CENTRAL = "central"
"""The site name of the central register (a replica's is its operator id)."""


@dataclass
class Collected:
    """The lists of one run, and what their deltas need to know of it."""

    site: str
    lists: dict[str, tuple[ListKind, dict[bytes, bytes]]] = field(default_factory=dict)
    """By list name, in the order the files are written."""
    groups: dict[str, str] = field(default_factory=dict)
    """List name -> the zip it goes into (``blacklist`` or an operator id)."""
    blacklisted: frozenset[bytes] = frozenset()
    """Device keys on this run's blacklist."""
    flagged: frozenset[bytes] = frozenset()
    """Device keys the clone detector still flags (greylisted or blocked)."""

    def group_of(self, name: str) -> str:
        return self.groups[name]

    def sim_text(self, key: bytes) -> str:
        """The ``imsi`` column of a row key (device, namespace, token)."""
        return "tok_" + key[12:].hex()


def collect(store: Store, now: int) -> Collected:
    """The lists as of Unix time *now*, read from one snapshot of *store*."""
    with store.snapshot() as tables:
        rows = blacklist(tables, now)
    taken = Collected(CENTRAL, blacklisted=frozenset(rows))
    name = ListKind.BLACKLIST.name_for()
    taken.lists[name] = (ListKind.BLACKLIST, rows)
    taken.groups[name] = name
    return taken
