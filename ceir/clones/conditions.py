"""Clone conditions, configured like DIRBS's: name, parameters, grace period, action, reason.

- ``duplicate_threshold``: at least ``threshold`` distinct IMSIs seen with the device within
  the last ``period_days`` (DIRBS's duplicate IMEI: 10 in 120 days);
- ``simultaneity``: the device attached through two operators within ``minutes``.

Each is evaluated on one device's sightings as they arrive (:func:`met`), never in a
nightly job. The action ``greylist`` answers GREYLISTED / DUPLICATE at once and BLACKLISTED
/ DUPLICATE after ``grace_days`` (for every SIM but the device's pairs); ``report`` only
records the device as suspected. A file given by ``--clone-conditions`` replaces the
defaults (TOML, one ``[[condition]]`` table each, the fields named as here).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceir.errors import ConfigError
from ceir.record import Reason
from ceir.store.clonetables import ConditionKind, Sighting

__all__ = [
    "DEFAULT_CONDITIONS",
    "DEFAULT_GRACE_DAYS",
    "DEFAULT_PERIOD_DAYS",
    "DEFAULT_SIMULTANEITY_MINUTES",
    "DEFAULT_THRESHOLD",
    "CloneAction",
    "Condition",
    "load_conditions",
    "met",
]

DEFAULT_THRESHOLD = 10
DEFAULT_PERIOD_DAYS = 120
DEFAULT_SIMULTANEITY_MINUTES = 60
DEFAULT_GRACE_DAYS = 60


class CloneAction(enum.Enum):
    """What a met condition does to the device."""

    GREYLIST = "greylist"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Condition:
    """One configured condition."""

    kind: ConditionKind
    threshold: int = DEFAULT_THRESHOLD
    """duplicate_threshold: distinct IMSIs (at least 2)."""
    period_days: int = DEFAULT_PERIOD_DAYS
    """duplicate_threshold: the window the IMSIs are counted in."""
    minutes: int = DEFAULT_SIMULTANEITY_MINUTES
    """simultaneity: the window two operators' attaches must fall in."""
    grace_days: int = DEFAULT_GRACE_DAYS
    action: CloneAction = CloneAction.GREYLIST
    reason: Reason = Reason.DUPLICATE

    @property
    def name(self) -> str:
        return self.kind.label

    def met(self, sightings: Sequence[Sighting], dropped: int, now_min: int) -> bool:
        """Whether the condition holds for one device's *sightings* at *now_min*."""
        if self.kind is ConditionKind.DUPLICATE_THRESHOLD:
            since = now_min - self.period_days * 1440
            recent = sum(1 for s in sightings if s.last_min >= since)
            return recent + dropped >= self.threshold
        since = max((s.last_min for s in sightings), default=0) - self.minutes
        operators = {s.operator for s in sightings if s.last_min >= since and s.operator}
        return len(operators) >= 2


DEFAULT_CONDITIONS: tuple[Condition, ...] = (
    Condition(ConditionKind.DUPLICATE_THRESHOLD),
    Condition(ConditionKind.SIMULTANEITY),
)


def met(
    conditions: Sequence[Condition], sightings: Sequence[Sighting], dropped: int, now_min: int
) -> list[Condition]:
    """The conditions that hold for one device."""
    return [c for c in conditions if c.met(sightings, dropped, now_min)]


_DEFAULT = Condition(ConditionKind.DUPLICATE_THRESHOLD)
_FIELDS = {"name", "threshold", "period_days", "minutes", "grace_days", "action", "reason"}


def _condition(n: int, table: dict[str, Any], where: Path) -> Condition:
    at = f"{where}: condition {n}"
    unknown = set(table) - _FIELDS
    if unknown:
        raise ConfigError(
            f"{at}: unknown field {sorted(unknown)[0]!r} (known: {', '.join(sorted(_FIELDS))})"
        )
    try:
        kind = ConditionKind[str(table.get("name", "")).upper()]
    except KeyError:
        names = ", ".join(k.label for k in ConditionKind)
        raise ConfigError(f"{at}: name {table.get('name')!r} is not one of {names}") from None
    try:
        action = CloneAction(table.get("action", CloneAction.GREYLIST.value))
    except ValueError:
        raise ConfigError(
            f"{at}: action {table.get('action')!r} is not greylist or report"
        ) from None
    if table.get("reason", Reason.DUPLICATE.name) != Reason.DUPLICATE.name:
        raise ConfigError(f"{at}: reason must be DUPLICATE (the clone detector's reason)")
    numbers = {}
    for field, least in (("threshold", 2), ("period_days", 1), ("minutes", 1), ("grace_days", 0)):
        value = table.get(field, getattr(_DEFAULT, field))
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{at}: {field} must be a whole number >= {least}, not {value!r}")
        numbers[field] = value
    return Condition(
        kind,
        threshold=numbers["threshold"],
        period_days=numbers["period_days"],
        minutes=numbers["minutes"],
        grace_days=numbers["grace_days"],
        action=action,
    )


def load_conditions(path: Path) -> tuple[Condition, ...]:
    """The conditions a TOML file configures; ConfigError (one line) if it is malformed."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the clone conditions {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    tables = data.get("condition")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[condition]] tables")
    return tuple(_condition(n, t, path) for n, t in enumerate(tables, 1))
