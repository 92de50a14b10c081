"""What one run exports, taken from the store: the rows of each list, by list name.

At the central register: the blacklist, and per operator (MCC-MNC) the notifications
and exceptions lists of the clone detector (:mod:`ceir.store.clones`), with SIMs as
identity tokens (``tok_`` + hex: the central never holds an IMSI). At an operator's
replica: that operator's notifications and exceptions only, with the clear IMSIs the
replica saw on its own network (:mod:`ceir.store.vault`); no blacklist (a replica has
no audit log to date the blocks).

- notifications: a device the detector flags (greylisted or blocked for ``DUPLICATE``)
  and not on the blacklist, one row per SIM the operator saw on it that is not a pair:
  the subscribers to warn before ``block_date``;
- exceptions: a device on the blacklist for ``DUPLICATE`` alone, one row per SIM paired
  with it that the operator saw or tokenised: the SIMs that still connect it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ceir.errors import ConfigError
from ceir.lists.blacklist import blacklist
from ceir.lists.kinds import ListKind, pack_state, reasons_mask, unpack_state
from ceir.record import Reason
from ceir.store import Store, clones, vault
from ceir.store import replica as position
from ceir.store.clones import CloneState

__all__ = ["CENTRAL", "Collected", "collect"]

CENTRAL = "central"
"""The site name of the central register (a replica's is its operator id)."""
_NS = 4
_DUPLICATE = reasons_mask({Reason.DUPLICATE})
_FLAGGED = (CloneState.GREYLISTED, CloneState.BLOCKED)


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
    store: Store | None = None
    """At a replica: the store whose vault shows the clear IMSIs."""

    def group_of(self, name: str) -> str:
        return self.groups[name]

    def add(self, kind: ListKind, rows: dict[bytes, bytes], operator: str = "") -> None:
        name = kind.name_for(operator)
        self.lists[name] = (kind, rows)
        self.groups[name] = operator or name

    def sim_text(self, key: bytes) -> str:
        """The ``imsi`` column of a row key (device, namespace, token): the token at the
        central; at a replica the clear IMSI its vault holds ("" if it holds none)."""
        token = key[12:]
        if self.store is None:
            return "tok_" + token.hex()
        return vault.reveal(self.store, token) or ""


def _sim_key(device: bytes, namespace: int, token: bytes) -> bytes:
    return device + namespace.to_bytes(_NS) + token


def operators_of(names: Iterable[str]) -> set[str]:
    """The operators whose lists a run wrote, from its list names."""
    prefix = ListKind.NOTIFICATIONS.value + "_"
    return {n.removeprefix(prefix) for n in names if n.startswith(prefix)}


def collect(
    store: Store, now: int, operators: Sequence[str], known: Iterable[str] = ()
) -> Collected:
    """The lists as of Unix time *now*.

    At the central: for *operators*, those in *known* (the base run's) and every operator
    that saw a flagged device. At a replica: *operators* must name its one operator.
    """
    flagged = {c.key: c for c in clones.iter_clones(store) if c.state in _FLAGGED}
    blocks = {
        key: (c.block_day, _DUPLICATE)
        for key, c in flagged.items()
        if c.state is CloneState.BLOCKED
    }
    with store.snapshot() as tables:
        rows = blacklist(tables, now, blocks)
    replica = position.state(store) is not None
    if replica:
        if len(operators) != 1:
            raise ConfigError(
                "this store is an operator's replica: it exports its own operator's lists; "
                "give --operator MCC-MNC once"
            )
        taken = Collected(operators[0], store=store)
        ops = list(operators)
    else:
        taken = Collected(CENTRAL)
        taken.add(ListKind.BLACKLIST, rows)
        seen = {
            clones.operator_text(s.operator)
            for key in flagged
            for s in clones.sightings(store, key)
            if s.operator
        }
        ops = sorted({*operators, *known, *seen})
    taken.blacklisted = frozenset(rows)
    taken.flagged = frozenset(flagged)
    for op in ops:
        notes: dict[bytes, bytes] = {}
        for n in clones.notifications(store, op):
            if n.key in rows:
                continue  # blocked already: it left the notifications for the blacklist
            clone = flagged.get(n.key)
            day = clone.block_day if clone is not None else 0
            mask = reasons_mask({Reason[r] for r in n.reasons})
            notes[_sim_key(n.key, n.namespace, n.token)] = pack_state(day, mask)
        taken.add(ListKind.NOTIFICATIONS, notes, op)
        exempt = {
            _sim_key(e.key, e.namespace, e.token): b""
            for e in clones.exceptions(store, op)
            if e.key in rows and unpack_state(rows[e.key])[1] == _DUPLICATE
        }
        taken.add(ListKind.EXCEPTIONS, exempt, op)
    return taken
