"""The importer: one for the CLI and the gRPC ``Registry`` service.

An import runs in two passes over the file:

1. **check** — every row parsed and decided against a read snapshot, without writing:
   bad rows, duplicates within the file, channel rules, how many new devices it adds.
   A file with too many malformed rows, or adding more new devices than its channel
   may, is refused whole here, before anything is written.
2. **write** — batches of ``batch_rows`` rows, each decided again against the store and
   written in **one** write transaction, sorted by key: devices, details, identity
   counts, audit entries, rejects and the import's progress record together. Lookups
   see a batch as soon as it commits.

The progress record is keyed by the file's SHA-256 (with its kind and rules), so an
import killed at any point resumes at the first uncommitted batch when run again and ends
as one uninterrupted run would; a file imported before is a no-op that says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceir.errors import FeedRefusedError, FeedRowError, StoreError
from ceir.feeds import Format, ImportState, Kind, WriteOrder
from ceir.feeds.base import Candidate, Context, Feed, Options
from ceir.feeds.kinds import feed_for
from ceir.feeds.reader import Row, open_feed
from ceir.feeds.rows import RejectReason, redact
from ceir.feeds.source import event_order, file_digest, private_copy
from ceir.feeds.summary import ImportSummary, NoProgress, Progress, Reject, write_report
from ceir.feeds.writes import Writes
from ceir.security.principals import operator_in
from ceir.store import Store, audit
from ceir.store.compact import repack_if_loose
from ceir.store.identity import Tokenizer, tokenizer_for
from ceir.store.tables import Tables

if TYPE_CHECKING:
    from ceir.feeds.bulk import Bulk

__all__ = [
    "ImportSummary",
    "Options",
    "Progress",
    "file_digest",
    "import_file",
    "private_copy",
    "rejects_of",
]

FIRST_REJECTS = 20
MAX_KEPT_REJECTS = 10_000
"""Rejects a check pass keeps in memory for the report of a refused file (all are
counted; a file refused with more lists its first 10,000)."""


@dataclass
class _Check:
    """What the check pass found."""

    rows: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    rejects: list[Reject] = field(default_factory=list)
    duplicates: set[int] = field(default_factory=set)
    """Row numbers (0-based) repeating a device already on an earlier row."""
    trimmed: int = 0
    fixed: int = 0


def _reject(line: int, exc: FeedRowError, feed: Feed) -> Reject:
    """The reject kept and shown for *exc*: short, and for a feed with personal columns
    without any raw value (see :func:`ceir.feeds.rows.redact`)."""
    reason = exc.reason.value
    personal = bool(feed.personal)
    return Reject(
        line,
        exc.field[:64],
        reason,
        redact(exc.message, personal=personal),
        redact(exc.fix, personal=personal),
    )


def _malformed(exc: FeedRowError) -> bool:
    return exc.reason.malformed


class _Import:
    """One run of one file: the state both passes share."""

    def __init__(
        self,
        store: Store,
        feed: Feed,
        path: Path,
        *,
        fmt: Format | None,
        actor: str,
        options: Options,
        progress: Progress,
        clock: Callable[[], float],
        name: str,
        bulk: bool | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.path = path
        self.reader = open_feed(path, feed, fmt, name=name)
        self.actor = actor
        self.options = options
        self.progress = progress
        self.clock = clock
        self.name = name
        self.tokenizer: Tokenizer = tokenizer_for(store)
        self._order: dict[int, Row] | None = None
        self.bulk: Bulk | None = None
        if self.reader.bulk(bulk):
            from ceir.feeds.bulk import Bulk  # numpy: only where it is worth loading

            self.bulk = Bulk(self)

    def follow(self, order: WriteOrder) -> None:
        """Resume in the order the first run wrote in, whichever path was asked for."""
        from ceir.feeds.bulk import Bulk

        self.bulk = None if order is WriteOrder.FILE else self.bulk or Bulk(self)

    # -- pass 1 ------------------------------------------------------------------------

    def _context(self, tables: Tables) -> Context:
        return Context(tables, self.options, self.tokenizer, self.clock())

    def rows(self) -> Iterator[Row]:
        """The file's rows in the order they are applied: file order, except that the
        rows of one device in a lost-stolen file (a log of events) follow their
        ``reported_at`` order, each taking the place of the next of that device's rows."""
        if self._order is None:
            self._order = (
                event_order(self.store, self.feed, self.reader, self._context)
                if (self.feed.events)
                else {}
            )
        order = self._order
        for i, row in enumerate(self.reader.rows()):
            yield order.get(i, row)

    def check(self, *, decide: bool) -> _Check:
        """The check pass; *decide* False only finds duplicates (a resumed import)."""
        bulk = None if self.bulk is None else self.bulk.check(_Check(), decide=decide)
        if bulk is not None:
            return bulk
        self.bulk = None  # not plain CSV (if it was meant for the bulk path): row by row
        found = _Check()
        seen: set[object] = set()
        feed = self.feed
        i = -1
        self.progress.phase("checking", None)
        shadow = Writes(feed)  # what earlier rows of a lost-stolen file did to a device
        with self.store.snapshot() as tables:
            ctx = Context(
                tables, self.options, self.tokenizer, self.clock(),
                operator=operator_in(self.actor), pending=shadow.devices,
                pending_details=shadow.details,
            )  # fmt: skip
            for i, (line, values) in enumerate(self.rows()):
                if i % 10_000 == 0 and i:
                    self.progress.advance(10_000)
                try:
                    if isinstance(values, FeedRowError):
                        raise values
                    cand = feed.parse(values, ctx)
                    # In a log of events only an exact repeat of a row is a duplicate.
                    same: object = (cand.key, tuple(values)) if feed.events else cand.key
                    if same in seen:
                        found.duplicates.add(i)
                        raise _duplicate(cand, feed.kind)
                    seen.add(same)
                    if decide:
                        outcome = feed.decide(cand, ctx)
                        if outcome.unchanged:
                            found.unchanged += 1
                        elif outcome.added:
                            found.added += 1
                        else:
                            found.changed += 1
                        if feed.events:
                            shadow.add(cand, outcome, line)
                except FeedRowError as exc:
                    r = _reject(line, exc, feed)
                    found.rejected[r.reason] += 1
                    found.malformed += _malformed(exc)
                    if len(found.rejects) < MAX_KEPT_REJECTS:
                        found.rejects.append(r)
            found.rows = i + 1
            found.trimmed, found.fixed = ctx.trimmed, ctx.fixed
        return found

    def refusal(self, found: _Check) -> str:
        """Why the file must be refused whole, or ``""``."""
        opts = self.options
        if found.rows and found.malformed / found.rows > opts.max_bad_ratio:
            share = 100 * found.malformed / found.rows
            return (
                f"{self.name}: {found.malformed:,} of {found.rows:,} rows ({share:.1f}%) are "
                f"malformed, above the limit of {100 * opts.max_bad_ratio:g}%; nothing was "
                "imported. Fix the rows listed in the reject report and send the file again"
            )
        limit = (
            opts.max_new_devices if opts.max_new_devices is not None else self.feed.default_max_new
        )
        if found.added > limit:
            noun = "TACs" if self.feed.kind is Kind.TAC else "devices"
            return (
                f"{self.name}: would add {found.added:,} new {noun}, above the limit of "
                f"{limit:,} for one {self.feed.kind.value} file; nothing was imported. Split "
                "the file, or raise the limit with --max-new-devices if this volume is expected"
            )
        return ""

    # -- pass 2 ------------------------------------------------------------------------

    def write(self, origin: int, info: dict[str, Any], duplicates: set[int]) -> dict[str, Any]:
        """Write every batch not yet committed; returns the final origin record."""
        if self.bulk is not None:
            return self.bulk.write(origin, info)
        done = int(info["rows_done"])
        batch_rows = self.options.batch_rows
        self.progress.phase("importing", int(info.get("rows", 0)) or None)
        self.progress.advance(done)
        rows = enumerate(self.rows())
        for _skipped in itertools.islice(rows, done):
            pass
        while True:
            batch = list(itertools.islice(rows, batch_rows))
            if not batch:
                break
            start = batch[0][0]

            def write_batch(t: Tables, b: list[tuple[int, Row]] = batch, s: int = start) -> Any:
                return self._write_batch(t, origin, s, b, duplicates)

            info = self.store.write(write_batch)
            self.progress.advance(len(batch))
        return info

    def _write_batch(
        self,
        tables: Tables,
        origin: int,
        start: int,
        batch: Sequence[tuple[int, Row]],
        duplicates: set[int],
    ) -> dict[str, Any]:
        info = audit.read_origin(tables, origin)
        if info is None or info["rows_done"] != start:
            raise StoreError(
                f"import #{origin} of {self.name} was advanced by another process; "
                "run the import again to resume it"
            )
        feed = self.feed
        writes = Writes(feed)
        ctx = Context(
            tables, self.options, self.tokenizer, float(info["started_at"]),
            operator=operator_in(self.actor), pending=writes.devices,
            pending_details=writes.details,
        )  # fmt: skip
        counts: dict[str, Any] = info["counts"]
        rejected: Counter[str] = Counter(counts["rejected"])
        rejects: list[tuple[int, dict[str, Any]]] = []
        for i, (line, values) in batch:
            try:
                if isinstance(values, FeedRowError):
                    raise values
                cand = feed.parse(values, ctx)
                if i in duplicates:
                    raise _duplicate(cand, feed.kind)
                outcome = feed.decide(cand, ctx)
            except FeedRowError as exc:
                r = _reject(line, exc, feed)
                rejected[r.reason] += 1
                counts["malformed"] += _malformed(exc)
                rejects.append((i, r.to_dict()))
                continue
            if outcome.unchanged:
                counts["unchanged"] += 1
                continue
            counts["added" if outcome.added else "changed"] += 1
            writes.add(cand, outcome, line)
        counts["rejected"] = dict(rejected)
        counts["trimmed"] += ctx.trimmed
        counts["fixed"] += ctx.fixed
        writes.flush(tables, ctx, origin, int(self.clock()))
        tables.rejects.put(origin, rejects)
        info["rows_done"] = start + len(batch)
        audit.put_origin(tables, origin, info)
        return info


def _duplicate(cand: Candidate, kind: Kind) -> FeedRowError:
    # The field is the feed's key column: a TAC key is 8 bytes too (8 ASCII digits), so
    # the key's length cannot tell them apart.
    return FeedRowError(
        "tac" if kind is Kind.TAC else "imei",
        RejectReason.DUPLICATE,
        f"{cand.label} appears on an earlier row of this file",
    )


def rejects_of(store: Store, origin: int) -> Iterator[Reject]:
    """The stored rejects of an import, in row order."""
    with store.snapshot() as tables:
        for r in tables.rejects.of_origin(origin):
            yield Reject(**r)


def _summary(
    imp: _Import, digest: str, state: ImportState, info: dict[str, Any], elapsed: float
) -> ImportSummary:
    counts = info["counts"]
    return ImportSummary(
        kind=imp.feed.kind.value,
        file=imp.name,
        digest=digest,
        format=imp.reader.format,
        state=state,
        origin=int(info.get("id", 0)),
        rows=int(counts["rows"]),
        added=int(counts["added"]),
        changed=int(counts["changed"]),
        unchanged=int(counts["unchanged"]),
        rejected=dict(counts["rejected"]),
        malformed=int(counts["malformed"]),
        trimmed=int(counts["trimmed"]),
        fixed=int(counts["fixed"]),
        warnings=list(imp.reader.warnings),
        elapsed=elapsed,
    )


def import_file(
    store: Store,
    kind: Kind,
    path: Path,
    *,
    actor: str,
    fmt: Format | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    report: Path | None = None,
    clock: Callable[[], float] = time.time,
    name: str | None = None,
    stage_above: int | None = None,
    private: bool = False,
    bulk: bool | None = None,
    admit: Callable[[int], bool] | None = None,
    repack: bool = True,
) -> ImportSummary:
    """Import feed file *path* of *kind* into *store* on behalf of *actor*.

    The file is first copied into the store's spool (:func:`private_copy`) and only the
    copy is read, unless *private* says *path* already is such a copy.

    *actor* names who asks, as the audit log shall record it (``local:user@host`` for
    the CLI, the authenticated principal's label for the server).

    Returns the summary. Raises :class:`FeedRefusedError` (nothing written) when a
    threshold refuses the file, :class:`FeedFormatError` when it cannot be read. The
    reject report is written to *report* when there are rejects. *name* is the file
    name recorded in the audit log (default: *path*'s name). A file that would add more
    than *stage_above* new devices is not written: its summary has the state
    ``needs-approval`` (the two-person rule, :mod:`ceir.feeds.staging`). *bulk* False
    reads even a big plain CSV file row by row, True takes even a small one through
    :mod:`ceir.feeds.bulk` (the same outcome, faster); None: by size
    (:data:`ceir.feeds.reader.BULK_BYTES`). *admit* is asked, with the number of devices'
    answers the file changes, before anything is written: False stages it too (the rolling
    24-hour limits of :mod:`ceir.feeds.volume`). *repack* False leaves loose pages to
    ``ceir compact`` (served imports: single writes would wait behind its one transaction).
    """
    if not private:
        with private_copy(store, path) as copy:
            return import_file(
                store, kind, copy, actor=actor, fmt=fmt, options=options, progress=progress,
                report=report, clock=clock, name=name or path.name, stage_above=stage_above,
                private=True, bulk=bulk, admit=admit, repack=repack,
            )  # fmt: skip
    started = time.monotonic()
    imp = _Import(
        store,
        feed_for(kind),
        path,
        fmt=fmt,
        actor=actor,
        options=options or Options(),
        progress=progress or NoProgress(),
        clock=clock,
        name=name or path.name,
        bulk=bulk,
    )
    try:
        return _run(imp, started, report, stage_above, admit, repack)
    finally:
        if imp.bulk is not None:
            imp.bulk.close()  # its spools
        imp.progress.close()


def _index_key(digest: str, kind: str, options: dict[str, Any]) -> bytes:
    """What makes two imports the same: the file's bytes, its kind and the options that
    decide outcomes (the batch size does not). The same file again with another option
    (``--fix-leading-zero``, another cutoff...) is a new import, not a no-op."""
    rules = {k: v for k, v in options.items() if k != "batch_rows"}
    text = json.dumps([digest, kind, rules], sort_keys=True)
    return hashlib.sha256(text.encode()).digest()


def _find(store: Store, key: bytes) -> dict[str, Any] | None:
    with store.snapshot() as tables:
        origin = tables.digests.get(key)
        return None if origin is None else audit.read_origin(tables, origin)


def _run(
    imp: _Import,
    started: float,
    report: Path | None,
    stage_above: int | None,
    admit: Callable[[int], bool] | None,
    repack: bool,
) -> ImportSummary:
    store = imp.store
    digest = file_digest(imp.path)
    info = _find(store, _index_key(digest, imp.feed.kind.value, dataclasses.asdict(imp.options)))
    if info is not None and info["state"] == ImportState.DONE:
        summary = _summary(
            imp, digest, ImportState.ALREADY_IMPORTED, info, time.monotonic() - started
        )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info["finished_at"]))
        summary.message = (
            f"{imp.name} (sha256 {digest[:12]}) was already imported as import "
            f"#{info['id']} ({info['kind']}, {when} UTC): nothing to do"
        )
        if report is not None and summary.rejected_total:
            # Written again: a run killed after its last batch never wrote it.
            write_report(report, imp.name, rejects_of(store, summary.origin))
            summary.report = str(report)
        return summary
    if info is None:
        found = imp.check(decide=True)
        base = {
            "kind": imp.feed.kind.value,
            "file": imp.name,
            "digest": digest,
            "format": imp.reader.format.value,
            "actor": imp.actor,
            "started_at": int(imp.clock()),
            "rows": found.rows,
            "rows_done": 0,
            "order": (WriteOrder.FILE if imp.bulk is None else WriteOrder.KEY).value,
            "warnings": imp.reader.warnings,
            "options": dataclasses.asdict(imp.options),
            "counts": {
                "rows": found.rows,
                "added": 0,
                "changed": 0,
                "unchanged": 0,
                "rejected": {},
                "malformed": 0,
                "trimmed": 0,
                "fixed": 0,
            },
        }
        why = imp.refusal(found)
        if why:
            return _refuse(imp, found, base, why, started, report)
        # Every row that changes a device's answer counts: a block or an unblock changes a
        # phone's fate as much as a new registration does.
        changes = found.added + found.changed
        over = stage_above is not None and changes > stage_above
        if over or (admit is not None and not admit(changes)):
            return _needs_approval(imp, found, base, stage_above if over else None, started)
        info = store.write(lambda tables: _begin(tables, digest, base))
        duplicates = found.duplicates
    else:
        # Resuming: the gate was passed under the options of the first run; keep them,
        # or the file's rows would be judged by two sets of rules.
        imp.options = Options(**info.get("options", {}))
        imp.follow(WriteOrder(info.get("order", WriteOrder.FILE)))
        duplicates = imp.check(decide=False).duplicates
    info = imp.write(int(info["id"]), info, duplicates)
    return _finish(imp, digest, int(info["id"]), started, report, repack)


def _begin(tables: Tables, digest: str, base: dict[str, Any]) -> dict[str, Any]:
    key = _index_key(digest, base["kind"], base["options"])
    existing = tables.digests.get(key)
    if existing is not None:  # another process began this file meanwhile: join it
        info = audit.read_origin(tables, existing)
        if info is not None:
            return info
    origin = audit.new_origin(tables, {**base, "state": ImportState.WRITING})
    tables.digests.put(key, origin)
    return {**base, "state": ImportState.WRITING, "id": origin}


def _finish(
    imp: _Import, digest: str, origin: int, started: float, report: Path | None, repack: bool
) -> ImportSummary:
    store = imp.store

    def finish(tables: Tables) -> dict[str, Any]:
        info = audit.read_origin(tables, origin)
        if info is None:  # pragma: no cover - written by _begin
            raise StoreError(f"import #{origin} vanished from the store")
        if info["state"] != ImportState.DONE:
            info["state"] = ImportState.DONE
            info["finished_at"] = int(imp.clock())
            audit.put_origin(tables, origin, info)
        return info

    info = store.write(finish)
    if repack:  # a bulk load leaves pages about 2/3 full: pack them (issue 12)
        repack_if_loose(store, int(info["counts"]["added"]))
    summary = _summary(imp, digest, ImportState.DONE, info, time.monotonic() - started)
    if summary.rejected_total:
        summary.first_rejects = list(itertools.islice(rejects_of(store, origin), FIRST_REJECTS))
        if report is not None:
            write_report(report, imp.name, rejects_of(store, origin))
            summary.report = str(report)
    return summary


def _needs_approval(
    imp: _Import, found: _Check, base: dict[str, Any], limit: int | None, started: float
) -> ImportSummary:
    """The summary of a file held for a second principal's approval; nothing is written."""
    base["counts"].update(
        added=found.added,
        changed=found.changed,
        unchanged=found.unchanged,
        rejected=dict(found.rejected),
        malformed=found.malformed,
    )
    summary = _summary(
        imp, base["digest"], ImportState.NEEDS_APPROVAL, base, time.monotonic() - started
    )
    above = "" if limit is None else f", above the two-person threshold of {limit:,}"
    summary.message = (
        f"{imp.name}: would change {found.added + found.changed:,} devices' answers "
        f"({found.added:,} new, {found.changed:,} changed){above}: held for approval by a "
        "second principal (ministry or admin)"
    )
    return summary


def _refuse(
    imp: _Import,
    found: _Check,
    base: dict[str, Any],
    why: str,
    started: float,
    report: Path | None,
) -> ImportSummary:
    counts = base["counts"]
    counts.update(
        added=found.added,
        changed=found.changed,
        unchanged=found.unchanged,
        rejected=dict(found.rejected),
        malformed=found.malformed,
        trimmed=found.trimmed,
        fixed=found.fixed,
    )
    # The register is untouched; the refused attempt itself is logged as an origin.
    origin = imp.store.write(
        lambda tables: audit.new_origin(
            tables, {**base, "state": ImportState.REFUSED, "refusal": why, "rows_done": 0}
        )
    )
    summary = _summary(
        imp, base["digest"], ImportState.REFUSED, {**base, "id": origin}, time.monotonic() - started
    )
    summary.message = why
    summary.first_rejects = found.rejects[:FIRST_REJECTS]
    if report is not None and found.rejects:
        write_report(report, imp.name, found.rejects)
        summary.report = str(report)
    raise FeedRefusedError(why, summary)
