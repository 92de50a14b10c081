"""``exception``: the ministry's exception list (diplomats, state guests, VIPs).

``imei,category,reference,valid_until`` (valid_until may be empty: no end) ->
WHITELISTED / EXEMPT / MINISTRY.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed
from ceir.feeds.rows import parse_feed_imei, parse_instant
from ceir.record import Reason, Record, Source
from ceir.store.audit import Action
from ceir.store.tables import pack_fields


class ExceptionFeed(Feed):
    kind = Kind.EXCEPTION
    fields = ("imei", "category", "reference", "valid_until")
    optional_columns = frozenset({"valid_until"})
    detail_fields = ("category", "reference", "valid_until")
    action = Action.EXCEPTION
    default_max_new: ClassVar[int] = 1_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, category, reference, valid_until = values
        imei = parse_feed_imei(imei_text)
        category = ctx.text(category, "category")
        reference = ctx.text(reference, "reference")
        valid_until = valid_until.strip()
        end = parse_instant(valid_until, "valid_until", end_of_day=True) if valid_until else 0
        return Candidate(
            imei.key,
            Record(Reason.EXEMPT, Source.MINISTRY, registered_at=int(ctx.now), expires_at=end),
            pack_fields(category, reference, valid_until),
            imei.canonical,
        )
