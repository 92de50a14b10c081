"""``tac``: the TAC database — TAC -> brand, model, device type.

Read from the Osmocom TAC DB (``tac,name,name,...`` after a one-line banner), from
GSMA-style pipe-separated files (``tac|brand|model|device_type|...``) or from CSV/JSONL
with ``tac,brand,model,device_type``; the reader turns each into those four values.
A TAC is 8 digits. The dirt of real files is reported, never silently dropped or fixed:
a 7-digit TAC (a leading zero lost in a spreadsheet) is rejected with the fix, or padded
and counted under ``--fix-leading-zero``; surrounding spaces in a TAC are rejected with
the fix; spaces around names are trimmed and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ceir.errors import FeedRowError
from ceir.feeds import Kind
from ceir.feeds.base import Candidate, Context, Feed, Outcome
from ceir.feeds.rows import RejectReason
from ceir.record import Record
from ceir.store import TacInfo
from ceir.store.audit import Action

_NO_RECORD = Record()


def check_tac(text: str, ctx: Context) -> str:
    """An 8-digit TAC, or FeedRowError with the fix."""
    if len(text) == 8 and text.isascii() and text.isdigit():
        return text
    if not text:
        raise FeedRowError("tac", RejectReason.MISSING_FIELD, "tac is empty")
    stripped = text.strip()
    if len(text) == 7 and text.isascii() and text.isdigit():
        if ctx.options.fix_leading_zero:
            ctx.fixed += 1
            return f"0{text}"
        raise FeedRowError(
            "tac",
            RejectReason.LOST_LEADING_ZERO,
            f"TAC {text!r} has 7 digits — a leading zero lost in a spreadsheet? "
            "use --fix-leading-zero",
            f"0{text}",
        )
    if stripped != text and len(stripped) == 8 and stripped.isascii() and stripped.isdigit():
        raise FeedRowError(
            "tac", RejectReason.BAD_TAC, f"TAC {text!r} has surrounding spaces", stripped
        )
    raise FeedRowError("tac", RejectReason.BAD_TAC, f"TAC {text!r} is not 8 digits")


class TacFeed(Feed):
    kind = Kind.TAC
    fields = ("tac", "brand", "model", "device_type")
    optional_columns = frozenset({"device_type"})
    action = Action.MANUFACTURER  # not used: TAC entries are not device changes
    default_max_new: ClassVar[int] = 10_000_000

    def parse(self, values: Sequence[str], ctx: Context) -> Candidate:
        tac_text, brand, model, device_type = values
        tac = check_tac(tac_text, ctx)
        info = TacInfo(
            tac,
            ctx.text(brand, "brand"),
            ctx.text(model, "model"),
            ctx.text(device_type, "device_type", optional=True),
        )
        return Candidate(tac.encode(), _NO_RECORD, info.pack(), tac)

    def decide(self, cand: Candidate, ctx: Context) -> Outcome:
        current = ctx.tables.tacs.packed(cand.key)
        if current is None:
            return Outcome(None, _NO_RECORD, added=True)
        if current == cand.details:
            return Outcome(_NO_RECORD, _NO_RECORD, unchanged=True)
        return Outcome(_NO_RECORD, _NO_RECORD)
