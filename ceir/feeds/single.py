"""One registration or lost/stolen report, as the gRPC ``Registry`` receives them.

A request is one feed row, checked by the same code as a file row and written in one
transaction with its audit entry; its origin records the request instead of a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ceir.errors import (
    DailyLimitError,
    FeedRowError,
    ForbiddenError,
    InvalidRequestError,
    RuleError,
)
from ceir.feeds import Kind, eligibility, volume
from ceir.feeds.base import Context, Options
from ceir.feeds.kinds import feed_for
from ceir.feeds.rows import RejectReason, redact
from ceir.feeds.writes import Writes
from ceir.imei import Imei
from ceir.record import Record
from ceir.security.principals import operator_in
from ceir.store import Store, audit
from ceir.store.identity import tokenizer_for
from ceir.store.tables import Tables

__all__ = ["OneChange", "apply_one"]


@dataclass(frozen=True, slots=True)
class OneChange:
    """What one request did."""

    imei: Imei
    before: Record | None
    after: Record | None
    added: bool
    unchanged: bool
    audit_seq: int
    """0 when unchanged (nothing was written)."""


def apply_one(
    store: Store,
    kind: Kind,
    fields: Mapping[str, str],
    *,
    actor: str,
    request: str,
    options: Options | None = None,
    clock: Callable[[], float] = time.time,
    limits: volume.Limits | None = None,
    person: str = "",
) -> OneChange:
    """Apply one feed row of *kind* on behalf of *actor*; *request* names it in the log.

    A write that changes the device is counted in the rolling 24-hour window of its
    principal (*person*, else *actor*) and channel; past *limits* it is refused
    (None: counted, never refused).

    Raises FeedRowError for a malformed field, RuleError for a channel rule or a
    conflict, InvalidRequestError for unknown field names or the TAC kind,
    DailyLimitError past the rolling 24-hour limit.
    """
    if kind is Kind.TAC:
        raise InvalidRequestError("TAC entries are imported as a file (ImportFeed), not registered")
    feed = feed_for(kind)
    unknown = sorted(set(fields) - set(feed.fields))
    if unknown:
        raise InvalidRequestError(
            f"unknown field(s) {', '.join(unknown)}; a {kind.value} registration has "
            f"{', '.join(feed.fields)}"
        )
    values = [fields.get(name, "") for name in feed.fields]
    tokenizer = tokenizer_for(store)
    now = clock()

    def write(tables: Tables) -> OneChange:
        rules = eligibility.rules_in(tables)  # the store's: *options* may only tighten them
        opts = eligibility.options(rules) if options is None else eligibility.clamp(rules, options)
        ctx = Context(tables, opts, tokenizer, now, operator=operator_in(actor))
        try:
            cand = feed.parse(values, ctx)
            outcome = feed.decide(cand, ctx)
        except FeedRowError as exc:
            personal = bool(feed.personal)
            message = redact(exc.message, personal=personal)
            if exc.reason is RejectReason.NOT_OWNER:
                raise ForbiddenError(message) from exc
            if not exc.reason.malformed:
                raise RuleError(message, exc.reason.value) from exc
            raise FeedRowError(
                exc.field, exc.reason, message, redact(exc.fix, personal=personal)
            ) from exc
        imei = Imei.from_key(cand.key)
        if outcome.unchanged:
            return OneChange(imei, outcome.old, outcome.old, False, True, 0)
        staged = limits is not None and limits.principal(kind) is not None
        if staged and kind is Kind.OPERATOR_DUMP and rules.late(opts.cutoff, now):
            raise RuleError(
                f"grandfathering more than {rules.late_grandfathering_days} days after the "
                f"cutoff ({eligibility.instant(opts.cutoff)}) needs a second principal's "
                "approval: send it as an operator-dump file (ImportFeed), which is staged",
                "late_grandfathering",
            )
        who = volume.principal_key(actor, person)
        if limits is None:
            volume.record(tables, kind, who, 1, now)
        elif why := volume.admit(tables, kind, who, 1, limits, now):
            raise DailyLimitError(
                f"{why}: single writes are refused until older hours leave the window; "
                "send the rest as a file (ImportFeed), which a second principal approves"
            )
        origin = audit.new_origin(
            tables,
            {
                "kind": kind.value,
                "request": request,
                "actor": actor,
                "started_at": int(now),
                "state": "done",
            },
        )
        writes = Writes(feed)
        writes.add(cand, outcome, 0)
        seq = writes.flush(tables, ctx, origin, int(now))
        return OneChange(imei, outcome.old, outcome.new, outcome.added, False, seq)

    return store.write(write)
