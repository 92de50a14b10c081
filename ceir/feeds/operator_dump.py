"""``operator-dump``: grandfathering from operators' network dumps.

``imei,imsi,msisdn,first_seen`` -> WHITELISTED / GRANDFATHERED / OPERATOR when the device
was first seen on a network at or before the cutoff (default 2020-09-15T22:00+07:00),
else ``not_eligible``. IMSI and MSISDN are tokenised on read. Devices already registered
are left unchanged: dumps list every active device, again and again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed
from ceir.feeds.rows import RejectReason, iso_day, parse_feed_imei, parse_instant, required
from ceir.record import Reason, Record, Source
from ceir.store.audit import Action
from ceir.store.identity import IdKind
from ceir.store.tables import pack_fields


class OperatorDumpFeed(Feed):
    kind = Kind.OPERATOR_DUMP
    fields = ("imei", "imsi", "msisdn", "first_seen")
    personal = frozenset({"imsi", "msisdn"})
    detail_fields = ("imsi_token", "msisdn_token", "first_seen")
    action = Action.GRANDFATHER
    recurring = True
    default_max_new: ClassVar[int] = 10_000_000
    # parse() checks the IMEI, IMSI and MSISDN first (what the bulk proof checks by
    # arrays), then the date alone; its date rejects name the date, the cutoff, today and
    # the IMEI, whose digits the redaction of a personal feed's messages hides.
    rejects_by_date: ClassVar[bool] = True

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, imsi, msisdn, first_seen = values
        imei = parse_feed_imei(imei_text)
        imsi = required(imsi.strip(), "imsi")
        msisdn = required(msisdn.strip(), "msisdn")
        if not imsi.isdigit():
            raise FeedRowError("imsi", RejectReason.BAD_VALUE, "imsi is not all digits")
        seen = ctx.past(
            parse_instant(required(first_seen, "first_seen"), "first_seen"), "first_seen"
        )
        if seen > ctx.options.cutoff:
            raise FeedRowError(
                "first_seen",
                RejectReason.NOT_ELIGIBLE,
                f"{imei.canonical} was first seen {first_seen}, after the cutoff "
                f"({iso_day(ctx.options.cutoff)}): not eligible for grandfathering",
            )
        return Candidate(
            imei.key,
            Record(Reason.GRANDFATHERED, Source.OPERATOR, registered_at=seen),
            pack_fields(
                ctx.tokenizer.text(IdKind.IMSI, imsi),
                ctx.tokenizer.text(IdKind.MSISDN, msisdn),
                first_seen,
            ),
            imei.canonical,
        )
