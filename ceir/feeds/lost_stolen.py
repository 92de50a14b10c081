"""``lost-stolen``: owners' reports through an operator, with a police reference.

``imei,report_ref,action,reported_at`` — BLOCK sets the lost/stolen flag (BLACKLISTED /
LOST_STOLEN whatever else is known; the registration is kept underneath). UNBLOCK clears
it, restoring exactly what the device was before; a device known only from its report
is removed again. UNBLOCK of a device that is not blocked is ``not_blocked``.

Ownership is checked here, the one place every path goes through (ImportFeed rows,
``Register``, ``ClearLostStolen``, ``ceir import``): a block records the operator that
made it (``blocked_by``), and an operator may clear only its own blocks; a block with no
recorded operator (demo data, a ministry's block, one made before blocks recorded their
operator) may be cleared only by the ministry or an admin (``not_owner``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed, Outcome
from ceir.feeds.rows import RejectReason, parse_choice, parse_feed_imei, parse_instant, required
from ceir.record import Record
from ceir.store.audit import Action
from ceir.store.tables import SEP, pack_fields

_ACTIONS = ("BLOCK", "UNBLOCK")


class LostStolenFeed(Feed):
    kind = Kind.LOST_STOLEN
    fields = ("imei", "report_ref", "action", "reported_at")
    detail_fields = ("report_ref", "reported_at", "blocked_by")
    action = Action.BLOCK
    events = True
    default_max_new: ClassVar[int] = 1_000_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, report_ref, action, reported_at = values
        imei = parse_feed_imei(imei_text)
        report_ref = ctx.text(report_ref, "report_ref")
        block = parse_choice(action, "action", _ACTIONS) == "BLOCK"
        reported = ctx.past(
            parse_instant(required(reported_at, "reported_at"), "reported_at"), "reported_at"
        )
        return Candidate(
            imei.key,
            Record(lost_stolen=True, registered_at=reported),
            pack_fields(report_ref, reported_at, ctx.operator),
            imei.canonical,
            block=block,
        )

    def decide(self, cand: Candidate, ctx: Context) -> Outcome:
        current = ctx.current(cand.key)
        if cand.block:
            if current is not None and current.lost_stolen:
                return Outcome(current, current, unchanged=True)
            new = Record(lost_stolen=True) if current is None else current.with_block(blocked=True)
            return Outcome(current, new)
        if current is None or not current.lost_stolen:
            raise FeedRowError(
                "action",
                RejectReason.NOT_BLOCKED,
                f"UNBLOCK of {cand.label}, which is not reported lost or stolen",
            )
        if ctx.operator:
            owner = _owner(ctx.details(cand.key, Kind.LOST_STOLEN))
            if owner != ctx.operator:
                raise FeedRowError(
                    "action",
                    RejectReason.NOT_OWNER,
                    f"UNBLOCK of {cand.label}: "
                    + ("another operator" if owner else "no operator on record")
                    + " reported it; only that operator, the ministry or an admin may clear it",
                )
        restored = current.with_block(blocked=False)
        return Outcome(current, restored if restored.registered else None)


def _owner(details: bytes | None) -> str:
    """The operator id recorded with a block (``""``: none on record)."""
    if details is None:
        return ""
    values = details.decode().split(SEP)
    return values[2] if len(values) > 2 else ""
