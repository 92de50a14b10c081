"""Eligibility rules are store policy, set by the ministry or an admin, read by every import.

Who may be grandfathered (the ``cutoff``), how long a visitor registration lasts (the
90-day limit), how many devices one identity brings per arrival and how often (the
customs quota and cooldown), and how long after the cutoff operator dumps may still
grandfather without approval: these decide which devices may join the register, so they
are not flags of whoever imports. They live in the store's ``config`` table, are changed
only through :func:`set_rules` (the ``SetEligibility`` RPC, ministry or admin, audited:
the origin records the old and new rules and who changed them), and every import and
single write reads them.

An importer's flag may only **tighten** a rule (an earlier cutoff, a shorter visit, a
smaller quota, a longer cooldown); a looser one is refused (:class:`ForbiddenError`,
exit 9) rather than silently clamped, so nobody believes a rule applied that did not.
An approved stage runs with the rules it was staged under, each tightened to the store's
rules of the moment of approval.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ceir.config import DEFAULT_LATE_GRANDFATHERING_DAYS, field_default
from ceir.errors import ForbiddenError, InvalidRequestError
from ceir.feeds.base import DEFAULT_CUTOFF, MAX_CLOCK_SKEW, Options
from ceir.store import Store, audit
from ceir.store.tables import Tables

__all__ = [
    "RULES",
    "Eligibility",
    "clamp",
    "instant",
    "options",
    "read",
    "rules_in",
    "set_rules",
]

_KEY = b"eligibility"
DAY = 86_400

RULES: dict[str, bool] = {
    "cutoff": True,
    "visitor_max_days": True,
    "customs_quota": True,
    "customs_cooldown_days": False,
}
"""The rules an import carries in its options -> whether a lower value is the tighter."""
_MINIMUM = {"visitor_max_days": 1, "customs_quota": 1, "customs_cooldown_days": 0}


@dataclass(frozen=True, kw_only=True, slots=True)
class Eligibility:
    """The store's eligibility rules (defaults: :class:`~ceir.feeds.base.Options`')."""

    cutoff: int = DEFAULT_CUTOFF
    visitor_max_days: int = field_default(Options, "visitor_max_days")
    customs_quota: int = field_default(Options, "customs_quota")
    customs_cooldown_days: int = field_default(Options, "customs_cooldown_days")
    late_grandfathering_days: int = DEFAULT_LATE_GRANDFATHERING_DAYS
    set_by: str = ""
    """Who set them last (empty: nobody, the defaults)."""
    set_at: int = 0

    def late(self, cutoff: int, now: float) -> bool:
        """Whether grandfathering at *now* (with *cutoff*) needs approval: the cutoff has
        passed by more than ``late_grandfathering_days``."""
        return now > cutoff + self.late_grandfathering_days * DAY

    def texts(self) -> list[tuple[str, str]]:
        """(flag name, value) of each rule, as ``ceir eligibility`` shows them."""
        names = ("visitor_max_days", "customs_quota", "customs_cooldown_days")
        return [
            ("cutoff", instant(self.cutoff)),
            *((name.replace("_", "-"), str(getattr(self, name))) for name in names),
            ("late-grandfathering-days", str(self.late_grandfathering_days)),
        ]


def instant(seconds: int) -> str:
    """A cutoff as it is shown and given: ``2020-09-15T15:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def rules_in(tables: Tables) -> Eligibility:
    """The rules as *tables* (a snapshot or a write transaction) see them."""
    raw = tables.config.get(_KEY)
    if raw is None:
        return Eligibility()
    known = {f.name for f in dataclasses.fields(Eligibility)}
    return Eligibility(**{k: v for k, v in json.loads(raw).items() if k in known})


def read(store: Store) -> Eligibility:
    """The store's eligibility rules (the defaults until a ministry or admin sets them)."""
    with store.snapshot() as tables:
        return rules_in(tables)


def set_rules(
    store: Store,
    actor: str,
    changes: Mapping[str, int],
    *,
    clock: Callable[[], float] = time.time,
) -> Eligibility:
    """Change the rules named in *changes* (the others stay); returns the new rules.

    Refused (InvalidRequestError) for an unknown name, a value below its minimum, or a
    cutoff in the future. The change is an origin in the audit log, before and after."""
    now = int(clock())
    for name, value in changes.items():
        if name not in RULES and name != "late_grandfathering_days":
            raise InvalidRequestError(f"{name} is not an eligibility rule")
        least = _MINIMUM.get(name, 0)
        if value < least:
            raise InvalidRequestError(f"{name.replace('_', '-')} must be at least {least}")
    if changes.get("cutoff", 0) > now + MAX_CLOCK_SKEW:
        raise InvalidRequestError("the cutoff is in the future: it is the day grandfathering ended")

    def write(tables: Tables) -> Eligibility:
        old = rules_in(tables)
        new = dataclasses.replace(old, **dict(changes), set_by=actor, set_at=now)
        tables.config.put(_KEY, json.dumps(dataclasses.asdict(new), sort_keys=True).encode())
        audit.new_origin(
            tables,
            {
                "kind": "eligibility",
                "actor": actor,
                "state": "done",
                "started_at": now,
                "finished_at": now,
                "before": _rules(old),
                "after": _rules(new),
            },
        )
        return new

    return store.write(write)


def _rules(rules: Eligibility) -> dict[str, Any]:
    out = dataclasses.asdict(rules)
    out.pop("set_by")
    out.pop("set_at")
    return out


def _tighter(name: str, a: int, b: int) -> int:
    return min(a, b) if RULES[name] else max(a, b)


def options(rules: Eligibility, base: Options | None = None, **asked: int | None) -> Options:
    """*base* (default: the default options) with the store's *rules*, each rule *asked*
    for (a ``ceir import`` flag; None: not given) used instead when it is as tight or
    tighter; a looser one raises ForbiddenError."""
    values: dict[str, int] = {}
    for name, lower in RULES.items():
        mine = getattr(rules, name)
        wanted = asked.get(name)
        if wanted is not None and _tighter(name, wanted, mine) != wanted:
            flag = name.replace("_", "-")
            shown = instant if name == "cutoff" else str
            raise ForbiddenError(
                f"--{flag} {shown(wanted)} is looser than the store's rule ({shown(mine)}"
                f"{', set by ' + rules.set_by if rules.set_by else ''}): an import may only "
                f"{'lower' if lower else 'raise'} it; a ministry or admin changes the rule "
                "with `ceir eligibility`"
            )
        values[name] = mine if wanted is None else wanted
    return _with(base or Options(), values)


def _with(opts: Options, values: dict[str, int]) -> Options:
    return dataclasses.replace(
        opts,
        cutoff=values["cutoff"],
        visitor_max_days=values["visitor_max_days"],
        customs_quota=values["customs_quota"],
        customs_cooldown_days=values["customs_cooldown_days"],
    )


def clamp(rules: Eligibility, opts: Options) -> Options:
    """*opts* with each rule tightened to the store's *rules* where they are tighter."""
    return _with(
        opts, {name: _tighter(name, getattr(opts, name), getattr(rules, name)) for name in RULES}
    )
