"""A device's full story for authorised callers: its record, what each channel said of
it, and every change with who, when and from where. Tokens, never personal numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ceir.feeds import Kind
from ceir.feeds.kinds import FEEDS
from ceir.imei import Imei
from ceir.policy import Decision, Policy
from ceir.record import Record
from ceir.store import Store, audit

__all__ = ["DeviceHistory", "HistoryEntry", "device_history"]

_KINDS = {kind.code: kind for kind in Kind}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change with its origin resolved."""

    entry: audit.AuditEntry
    origin: dict[str, Any]

    @property
    def where(self) -> str:
        o = self.origin
        if o.get("file"):
            return f"{printable(str(o['file']))} line {self.entry.line}"
        return printable(str(o.get("request", "request")))

    @property
    def actor(self) -> str:
        return printable(str(self.origin.get("actor", "?")))


@dataclass
class DeviceHistory:
    imei: Imei
    record: Record | None
    decision: Decision
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    """Feed kind -> field -> value, as the channels registered it."""
    entries: list[HistoryEntry] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The text ``ceir audit`` prints."""
        d = self.decision
        out = [f"IMEI     {self.imei.canonical}"]
        out.append(f"Now      {d.status.name} / {d.reason.name} / source {d.source.name}")
        if d.expires_at:
            out.append(f"Expires  {_when(d.expires_at)}")
        for i, (kind, values) in enumerate(self.details.items()):
            shown = ", ".join(f"{k}={printable(v)}" for k, v in values.items() if v)
            out.append(f"{'Details' if i == 0 else '':<8} {kind}: {shown}")
        if not self.entries:
            out.append("History  no changes recorded")
            return out
        out.append("History")
        for h in self.entries:
            e = h.entry
            out.append(
                f"  #{e.seq} {_when(e.at)} {e.action.name.lower()} "
                f"{_state(e.old)} -> {_state(e.new)} by {h.actor} "
                f"(import #{e.origin}, {h.where})"
            )
        return out


def printable(text: str, limit: int = 200) -> str:
    """*text* safe to print on one line: control characters escaped (``\\n``, ``\\x1b``),
    at most *limit* characters. A file name or request id cannot forge a line."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _when(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _state(record: Record | None) -> str:
    if record is None:
        return "none"
    text = f"{record.reason.name}/{record.source.name}"
    if record.lost_stolen:
        text += "+LOST_STOLEN"
    return text


def details_of(store: Store, key: bytes) -> dict[str, dict[str, str]]:
    """What each channel registered for the device under *key*."""
    out: dict[str, dict[str, str]] = {}
    with store.snapshot() as tables:
        for code, values in tables.details.of_device(key):
            kind = _KINDS.get(code)
            if kind is not None:
                out[kind.value] = dict(zip(FEEDS[kind].detail_fields, values, strict=False))
    return out


def device_history(store: Store, imei: Imei, policy: Policy | None = None) -> DeviceHistory:
    """Everything the register knows of *imei*."""
    record = store.get(imei.key)
    decision = (policy or Policy()).decide(record, time.time())
    origins: dict[int, dict[str, Any]] = {}
    entries = []
    for entry in audit.history(store, imei.key):
        if entry.origin not in origins:
            origins[entry.origin] = audit.get_origin(store, entry.origin) or {}
        entries.append(HistoryEntry(entry, origins[entry.origin]))
    return DeviceHistory(imei, record, decision, details_of(store, imei.key), entries)
