"""``manufacturer``: makers and importers register the IMEIs of a type approval (TPP).

``imei,brand,model,tpp_number,maker_id,produced_at`` -> WHITELISTED / REGISTERED /
MANUFACTURER. The IMEI's TAC must be in the TAC table (else ``unknown_tac``, unless
``--allow-unknown-tac``): planned quantities of made-up IMEIs are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import MAX_CLOCK_SKEW, Candidate, Context, Feed
from ceir.feeds.rows import RejectReason, feed_body, parse_feed_imei, parse_instant, required
from ceir.imei import Imei
from ceir.record import Reason, Record, Source
from ceir.store.audit import Action
from ceir.store.tables import SEP

# Records are immutable and a file holds few production dates: one Record per date.
_records: dict[str, tuple[Record, bytes]] = {}


class ManufacturerFeed(Feed):
    kind = Kind.MANUFACTURER
    fields = ("imei", "brand", "model", "tpp_number", "maker_id", "produced_at")
    detail_fields = ("brand", "model", "tpp_number", "maker_id", "produced_at")
    shared_details = True  # a model's brand, model, TPP and maker: once per model
    action = Action.MANUFACTURER
    default_max_new: ClassVar[int] = 1_000_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        imei_text, brand, model, tpp, maker, produced = values
        body = feed_body(imei_text)
        if not ctx.options.allow_unknown_tac and not ctx.has_tac(body[:8]):
            raise _unknown_tac(imei_text, Imei(body).canonical, body[:8], ctx)
        brand = ctx.text(brand, "brand")
        model = ctx.text(model, "model")
        tpp = ctx.text(tpp, "tpp_number")
        maker = ctx.text(maker, "maker_id")
        cached = _records.get(produced)
        if cached is not None and cached[0].registered_at > ctx.now + MAX_CLOCK_SKEW:
            cached = None  # cached by an import with an earlier clock: check it again
        if cached is None:
            produced_at = ctx.past(
                parse_instant(required(produced, "produced_at"), "produced_at"), "produced_at"
            )
            record = Record(Reason.REGISTERED, Source.MANUFACTURER, registered_at=produced_at)
            cached = (record, record.pack())
            if len(_records) < 100_000:
                _records[produced] = cached
        return Candidate(
            int(body).to_bytes(8, "big"),
            cached[0],
            SEP.join((brand, model, tpp, maker, produced)).encode(),
            imei_text if len(imei_text) == 15 else Imei(body).canonical,
            packed=cached[1],
        )


def _unknown_tac(text: str, canonical: str, tac: str, ctx: Context) -> FeedRowError:
    """The unknown-TAC reject; a 14-digit IMEI that is a 15-digit one without its leading
    zero (a spreadsheet's doing) whose TAC is known gets that as the fix."""
    fix = ""
    padded = f"0{text}"
    if len(text) == 14 and ctx.has_tac(padded[:8]):
        try:
            fix = parse_feed_imei(padded).canonical
        except FeedRowError:
            fix = ""
    hint = " — a leading zero lost in a spreadsheet?" if fix else ""
    return FeedRowError(
        "imei",
        RejectReason.UNKNOWN_TAC,
        f"TAC {tac} of {canonical} is not in the TAC table{hint}; import the TAC database "
        "first, or use --allow-unknown-tac",
        fix,
    )
