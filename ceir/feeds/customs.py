"""``customs``: devices brought in by passengers or shipments, registered after tax.

``imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid`` -> WHITELISTED /
REGISTERED / CUSTOMS when tax was paid. The identity number is tokenised on read. At
most *quota* devices per identity per arrival, and an identity's arrivals must lie at
least *cooldown* days apart (both configurable; 2 and 180 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed, Outcome, decide_registration
from ceir.feeds.rows import (
    RejectReason,
    day_number,
    iso_day,
    parse_bool,
    parse_choice,
    parse_feed_imei,
    parse_identity,
    parse_instant,
    required,
)
from ceir.record import Reason, Record, Source
from ceir.store.audit import Action
from ceir.store.identity import IdKind
from ceir.store.tables import pack_fields

_ID_TYPES = ("NIK", "PASSPORT")
_CHANNELS = ("PASSENGER", "SHIPMENT")
DAY = 86_400


class CustomsFeed(Feed):
    kind = Kind.CUSTOMS
    fields = (
        "imei",
        "declaration_no",
        "id_type",
        "id_number",
        "arrival_date",
        "channel",
        "tax_paid",
    )
    personal = frozenset({"id_number"})
    detail_fields = ("declaration_no", "id_type", "id_token", "arrival_date", "channel")
    action = Action.CUSTOMS
    default_max_new: ClassVar[int] = 10_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, declaration, id_type, id_number, arrival, channel, tax_paid = values
        imei = parse_feed_imei(imei_text)
        declaration = ctx.text(declaration, "declaration_no")
        id_type = parse_choice(id_type, "id_type", _ID_TYPES)
        kind = IdKind(id_type)
        token = ctx.tokenizer.token(kind, parse_identity(kind, id_number, "id_number"))
        arrived = ctx.past(
            parse_instant(required(arrival, "arrival_date"), "arrival_date"), "arrival_date"
        )
        channel = parse_choice(channel, "channel", _CHANNELS)
        if not parse_bool(tax_paid, "tax_paid"):
            raise FeedRowError(
                "tax_paid",
                RejectReason.NOT_ELIGIBLE,
                f"{imei.canonical}: tax not paid; customs registers a device once its tax is paid",
            )
        return Candidate(
            imei.key,
            Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=arrived),
            pack_fields(declaration, id_type, "tok_" + token.hex(), arrival, channel),
            imei.canonical,
            identity=(token, day_number(arrived)),
        )

    def decide(self, cand: Candidate, ctx: Context) -> Outcome:
        outcome = decide_registration(self, cand, ctx)
        if outcome.unchanged or cand.identity is None:
            return outcome
        token, arrival = cand.identity
        days = ctx.identity_days(token)
        quota = ctx.options.customs_quota
        if arrival in days:
            if days[arrival] >= quota:
                raise FeedRowError(
                    "id_number",
                    RejectReason.QUOTA,
                    f"{cand.label}: this identity already registered {days[arrival]} "
                    f"device(s) on its arrival of {iso_day(arrival * DAY)}; "
                    f"at most {quota} per arrival",
                )
        else:
            cooldown = ctx.options.customs_cooldown_days
            near = [d for d in days if abs(d - arrival) < cooldown]
            if near:
                last = max(near)
                raise FeedRowError(
                    "arrival_date",
                    RejectReason.COOLDOWN,
                    f"{cand.label}: this identity registered devices on its arrival of "
                    f"{iso_day(last * DAY)}; another arrival is served only "
                    f"{cooldown} days later (from {iso_day((last + cooldown) * DAY)})",
                )
        ctx.count_identity(token, arrival)
        return outcome
