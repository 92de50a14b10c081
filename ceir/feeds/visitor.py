"""``visitor``: operators' temporary registrations of visitors' devices on a local SIM.

``imei,passport_number,registered_at,valid_until`` -> WHITELISTED / TEMPORARY / OPERATOR
until ``valid_until`` (a date means through that day). A validity above the limit
(90 days by default) is ``too_long``. After expiry the device reads BLACKLISTED /
EXPIRED, decided at read time. The passport number is tokenised on read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed
from ceir.feeds.rows import (
    DAY,
    RejectReason,
    parse_feed_imei,
    parse_identity,
    parse_instant,
    required,
)
from ceir.record import Reason, Record, Source
from ceir.store.audit import Action
from ceir.store.identity import IdKind
from ceir.store.tables import pack_fields


class VisitorFeed(Feed):
    kind = Kind.VISITOR
    fields = ("imei", "passport_number", "registered_at", "valid_until")
    personal = frozenset({"passport_number"})
    detail_fields = ("passport_token", "registered_at", "valid_until")
    action = Action.VISITOR
    default_max_new: ClassVar[int] = 100_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, passport, registered, valid_until = values
        imei = parse_feed_imei(imei_text)
        number = parse_identity(IdKind.PASSPORT, passport, "passport_number")
        token = ctx.tokenizer.text(IdKind.PASSPORT, number)
        start = parse_instant(required(registered, "registered_at"), "registered_at")
        ctx.past(start, "registered_at")
        until = parse_instant(required(valid_until, "valid_until"), "valid_until")
        end = parse_instant(valid_until, "valid_until", end_of_day=True)
        if until <= start:
            raise FeedRowError(
                "valid_until",
                RejectReason.BAD_DATE,
                f"valid_until {valid_until} is not after registered_at {registered}",
            )
        limit = ctx.options.visitor_max_days
        if until - start > limit * DAY:
            raise FeedRowError(
                "valid_until",
                RejectReason.TOO_LONG,
                f"{imei.canonical}: valid_until {valid_until} is {(until - start) // DAY} days "
                f"after registered_at {registered}; a visitor registration lasts at most "
                f"{limit} days",
            )
        return Candidate(
            imei.key,
            Record(Reason.TEMPORARY, Source.OPERATOR, registered_at=start, expires_at=end),
            pack_fields(token, registered, valid_until),
            imei.canonical,
        )
