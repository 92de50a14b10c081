"""The bulk import path: plain CSV manufacturer and operator-dump files, a chunk at a time.

The same two passes as the row-by-row importer (:mod:`ceir.feeds.importer`), with the
same outcome — the same accepted devices, rejects, counts, audit entries and progress
records — but the work of a row is done by numpy on a whole chunk:

- rows are split and checked by array operations (:mod:`ceir.feeds._proof`); a row that
  is not proven to parse (a dirty IMEI, an unknown TAC, a bad date...) is parsed by the
  kind's own ``parse``, so its reject is the row-by-row one;
- stored records are fetched with one sorted ``getmulti`` per chunk; a device that has
  one is decided by the kind's own ``decide``;
- the duplicate check keeps the file's keys as one ``uint64`` array (8 bytes a row, not
  a Python set), finds the repeated values a key range at a time, and marks a row a
  duplicate when its value was seen on an earlier row;
- a batch is written with sorted ``putmulti`` calls and one array-packed audit append.

A file that is not plain (:mod:`ceir.feeds._plain`) is left to the row-by-row path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ceir.errors import FeedRowError, StoreError
from ceir.feeds import Kind
from ceir.feeds._plain import Chunk, NotPlainError, chunks, key_bytes
from ceir.feeds._proof import Proof, prove, stored_form
from ceir.feeds.base import Candidate, Context, Outcome
from ceir.feeds.rows import RejectReason
from ceir.feeds.summary import Reject
from ceir.security.principals import operator_in
from ceir.store import audit
from ceir.store.tables import Tables

if TYPE_CHECKING:
    from ceir.feeds.importer import _Check, _Import

__all__ = ["Bulk", "NotPlainError"]

U64 = npt.NDArray[np.uint64]
_ADDED, _CHANGED, _UNCHANGED, _CONFLICT = 0, 1, 2, 3
_CHECK_ROWS = 250_000
"""Rows per chunk of the check pass (its arrays take about 200 MB)."""
_BUCKET = 8_000_000
"""Keys sorted at once by the duplicate check (64 MB)."""


@dataclass
class Dups:
    """The key values that appear on more than one parsed row, and which were seen."""

    values: U64
    seen: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        self.seen = np.zeros(len(self.values), bool)

    def mark(self, keys: U64) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Which of *keys* (the next parsed rows, in order) repeat an earlier row; and
        the indexes to set in :attr:`seen` once they are committed."""
        dup = np.zeros(len(keys), bool)
        if not len(self.values) or not len(keys):
            return dup, np.empty(0, np.int64)
        at = np.minimum(np.searchsorted(self.values, keys), len(self.values) - 1)
        hit = np.flatnonzero(self.values[at] == keys)
        idx = at[hit]
        _, first = np.unique(idx, return_index=True)
        later = np.ones(len(hit), bool)
        later[first] = False
        dup[hit] = later | self.seen[idx]
        return dup, idx


def repeated(keys: U64) -> U64:
    """The values occurring more than once in *keys*, sorted: one key range at a time,
    so that at most :data:`_BUCKET` keys are sorted at once."""
    if len(keys) < 2:
        return np.empty(0, np.uint64)
    parts = max(1, len(keys) // _BUCKET)
    sample = np.sort(keys[:: max(1, len(keys) // 100_000)])
    edges = np.unique(sample[np.linspace(0, len(sample) - 1, parts + 1).astype(np.int64)[1:-1]])
    found = []
    low = None
    for high in [*edges.tolist(), None]:
        sel = np.ones(len(keys), bool) if low is None else keys >= np.uint64(low)
        if high is not None:
            sel &= keys < np.uint64(high)
        part = np.sort(keys[sel])
        found.append(np.unique(part[1:][part[1:] == part[:-1]]))
        low = high
    return np.concatenate(found).astype(np.uint64)


class Bulk:
    """The bulk passes of one import (:class:`ceir.feeds.importer._Import`)."""

    def __init__(self, imp: _Import) -> None:
        self.imp = imp
        self.header = ",".join(imp.feed.fields)
        self.dups = Dups(np.empty(0, np.uint64))

    def _context(self, tables: Tables, now: float) -> Context:
        imp = self.imp
        return Context(tables, imp.options, imp.tokenizer, now, operator=operator_in(imp.actor))

    def _chunks(self, rows: int, cut: int = 0) -> Iterator[Chunk]:
        return chunks(self.imp.path, self.header, rows, cut)

    def _tacs(self, tables: Tables) -> U64 | None:
        if self.imp.options.allow_unknown_tac or self.imp.feed.kind is not Kind.MANUFACTURER:
            return None
        return np.array(sorted(int(k) for k in tables.tacs.all_keys() if k.isdigit()), np.uint64)

    def _parse(
        self, chunk: Chunk, ctx: Context, tacs: U64 | None
    ) -> tuple[Proof, dict[int, Candidate], dict[int, FeedRowError]]:
        """The proven rows, and the others parsed one by one (candidates or errors)."""
        proof = prove(chunk, self.imp.feed, ctx, tacs)
        slow = np.ones(len(chunk), bool)
        slow[proof.rows] = False
        cands: dict[int, Candidate] = {}
        errors: dict[int, FeedRowError] = {}
        width = len(self.imp.feed.fields)
        for r in np.flatnonzero(slow).tolist():
            cand = self._slow(chunk, r, width, ctx, errors)
            if cand is not None:
                cands[r] = cand
        return proof, cands, errors

    def _slow(
        self, chunk: Chunk, r: int, width: int, ctx: Context, errors: dict[int, FeedRowError]
    ) -> Candidate | None:
        _line, values = chunk.values(r, width)
        try:
            if isinstance(values, FeedRowError):
                raise values
            return self.imp.feed.parse(values, ctx)
        except FeedRowError as exc:
            errors[r] = exc
            return None

    @staticmethod
    def _ordered_keys(
        n: int, proof: Proof, cands: dict[int, Candidate]
    ) -> tuple[npt.NDArray[np.int64], U64]:
        """The chunk rows that parsed, in order, and their keys."""
        keys = np.zeros(n, np.uint64)
        parsed = np.zeros(n, bool)
        keys[proof.rows], parsed[proof.rows] = proof.keys, True
        for r, cand in cands.items():
            keys[r], parsed[r] = int.from_bytes(cand.key, "big"), True
        rows = np.flatnonzero(parsed)
        return rows, keys[rows]

    def _stored(self, tables: Tables, keys: U64) -> npt.NDArray[np.bool_]:
        """Which of *keys* have a stored record (one sorted ``getmulti``)."""
        if not len(keys):
            return np.zeros(0, bool)
        found = tables.devices.present(key_bytes(np.sort(keys)))
        have = np.array([int.from_bytes(k, "big") for k in found], np.uint64)
        return np.isin(keys, have)

    # -- pass 1 ------------------------------------------------------------------------

    def check(self, found: _Check, *, decide: bool) -> _Check | None:
        """*found* filled as the row-by-row check pass would (its ``duplicates`` stays
        empty: the bulk write pass uses :attr:`dups`), or None when the file is not plain
        CSV (nothing was written: read it row by row)."""
        try:
            self._check(found, decide=decide)
        except NotPlainError:
            return None
        return found

    def _check(self, found: _Check, *, decide: bool) -> None:
        from ceir.feeds import importer

        imp = self.imp
        parts: list[U64] = []
        outcome_parts: list[npt.NDArray[np.uint8]] = []
        conflicts: dict[int, Reject] = {}
        position = 0
        with imp.store.snapshot() as tables:
            ctx = self._context(tables, imp.clock())
            tacs = self._tacs(tables)
            imp.progress.phase("checking", None)
            for chunk in self._chunks(_CHECK_ROWS):
                proof, cands, errors = self._parse(chunk, ctx, tacs)
                rows, keys = self._ordered_keys(len(chunk), proof, cands)
                for r, exc in errors.items():
                    rej = importer._reject(chunk.line_number(r), exc, imp.feed)
                    found.rejected[rej.reason] += 1
                    found.malformed += importer._malformed(exc)
                    if len(found.rejects) < importer.MAX_KEPT_REJECTS:
                        found.rejects.append(rej)
                if decide:
                    outcome_parts.append(
                        self._decide(tables, ctx, chunk, rows, keys, cands, conflicts, position)
                    )
                parts.append(keys)
                position += len(keys)
                found.rows += len(chunk)
                imp.progress.advance(len(chunk))
            found.trimmed, found.fixed = ctx.trimmed, ctx.fixed
        keys = _concat(parts)
        self.dups = Dups(repeated(keys))
        marker = Dups(self.dups.values)
        dup_parts: list[npt.NDArray[np.int64]] = []
        for at in range(0, len(keys), _BUCKET):  # in slices: bounded temporaries
            dup, idx = marker.mark(keys[at : at + _BUCKET])
            marker.seen[idx] = True
            dup_parts.append(np.flatnonzero(dup) + at)
        dup_at = np.concatenate(dup_parts) if dup_parts else np.empty(0, np.int64)
        del keys
        found.rejected[RejectReason.DUPLICATE.value] += len(dup_at)
        found.malformed += len(dup_at)
        if not found.rejected[RejectReason.DUPLICATE.value]:
            del found.rejected[RejectReason.DUPLICATE.value]
        if decide:
            codes = np.concatenate(outcome_parts) if outcome_parts else np.zeros(0, np.uint8)
            counted = np.bincount(np.delete(codes, dup_at), minlength=4)
            found.added, found.changed, found.unchanged = (int(c) for c in counted[:3])
            for pos in dup_at.tolist():
                conflicts.pop(pos, None)
            for rej in conflicts.values():
                found.rejected[rej.reason] += 1
                found.rejects.append(rej)
        if len(dup_at) and imp.refusal(found):
            found.rejects.extend(self._duplicate_rejects())
        found.rejects.sort(key=lambda r: r.line)
        del found.rejects[importer.MAX_KEPT_REJECTS :]  # as the row-by-row pass keeps them

    def _decide(
        self,
        tables: Tables,
        ctx: Context,
        chunk: Chunk,
        rows: npt.NDArray[np.int64],
        keys: U64,
        cands: dict[int, Candidate],
        conflicts: dict[int, Reject],
        position: int,
    ) -> npt.NDArray[np.uint8]:
        """What each parsed row would do: new unless it has a stored record or was parsed
        row by row, then the kind's own ``decide``. Conflicts go to *conflicts* by their
        position in the file's parsed rows."""
        from ceir.feeds import importer

        feed = self.imp.feed
        codes = np.full(len(rows), _ADDED, np.uint8)
        stored = self._stored(tables, keys)
        is_cand = np.isin(rows, np.fromiter(cands, np.int64, len(cands)))
        for i in np.flatnonzero(stored | is_cand).tolist():
            r = int(rows[i])
            cand = cands.get(r) or self._must_parse(chunk, r, ctx)
            try:
                codes[i] = _code(feed.decide(cand, ctx))
            except FeedRowError as exc:
                codes[i] = _CONFLICT
                conflicts[position + i] = importer._reject(chunk.line_number(r), exc, feed)
        return codes

    def _must_parse(self, chunk: Chunk, r: int, ctx: Context) -> Candidate:
        """A proven row's candidate, from the kind's own parser."""
        _line, values = chunk.values(r, len(self.imp.feed.fields))
        if isinstance(values, FeedRowError):  # pragma: no cover - proven rows are well-formed
            raise StoreError("a proven row is malformed")
        return self.imp.feed.parse(values, ctx)

    def _duplicate_rejects(self) -> list[Reject]:
        """The duplicate rejects with their lines (a refused file's report): read again."""
        from ceir.feeds import importer

        imp, out = self.imp, []
        dups = Dups(self.dups.values)
        with imp.store.snapshot() as tables:
            ctx = self._context(tables, imp.clock())
            tacs = self._tacs(tables)
            for chunk in self._chunks(_CHECK_ROWS):
                proof, cands, _errors = self._parse(chunk, ctx, tacs)
                rows, keys = self._ordered_keys(len(chunk), proof, cands)
                dup, idx = dups.mark(keys)
                dups.seen[idx] = True
                for r in rows[dup].tolist():
                    cand = cands.get(r) or self._must_parse(chunk, r, ctx)
                    exc = importer._duplicate(cand, imp.feed.kind)
                    out.append(importer._reject(chunk.line_number(r), exc, imp.feed))
                    if len(out) >= importer.MAX_KEPT_REJECTS:
                        return out
        return out

    # -- pass 2 ------------------------------------------------------------------------

    def write(self, origin: int, info: dict[str, Any]) -> dict[str, Any]:
        """Write every batch not yet committed; returns the final origin record."""
        try:
            return self._write(origin, info)
        except NotPlainError:  # pragma: no cover - the check pass read the same bytes
            raise StoreError(
                f"{self.imp.name} changed between the passes of import #{origin}; "
                "run the import again"
            ) from None

    def _write(self, origin: int, info: dict[str, Any]) -> dict[str, Any]:
        imp = self.imp
        done = int(info["rows_done"])
        imp.progress.phase("importing", int(info.get("rows", 0)) or None)
        imp.progress.advance(done)
        for chunk in self._chunks(imp.options.batch_rows, done):
            if chunk.start < done:
                with imp.store.snapshot() as tables:  # committed before: only note its keys
                    ctx = self._context(tables, imp.clock())
                    proof, cands, _ = self._parse(chunk, ctx, self._tacs(tables))
                    _, idx = self.dups.mark(self._ordered_keys(len(chunk), proof, cands)[1])
                self.dups.seen[idx] = True
                continue

            def write_batch(t: Tables, c: Chunk = chunk) -> tuple[dict[str, Any], Any]:
                return self._write_batch(t, origin, c)

            info, idx = imp.store.write(write_batch)
            self.dups.seen[idx] = True
            imp.progress.advance(len(chunk))
        return info

    def _write_batch(
        self, tables: Tables, origin: int, chunk: Chunk
    ) -> tuple[dict[str, Any], npt.NDArray[np.int64]]:
        from ceir.feeds import importer

        imp = self.imp
        feed = imp.feed
        info = audit.read_origin(tables, origin)
        if info is None or info["rows_done"] != chunk.start:
            raise StoreError(
                f"import #{origin} of {imp.name} was advanced by another process; "
                "run the import again to resume it"
            )
        ctx = self._context(tables, float(info["started_at"]))
        counts: dict[str, Any] = info["counts"]
        rejected: Counter[str] = Counter(counts["rejected"])
        proof, cands, errors = self._parse(chunk, ctx, self._tacs(tables))
        rows, keys = self._ordered_keys(len(chunk), proof, cands)
        dup, seen_idx = self.dups.mark(keys)
        for r in rows[dup].tolist():
            cand = cands.get(r) or self._must_parse(chunk, r, ctx)
            errors[r] = importer._duplicate(cand, imp.feed.kind)
        proven_pos = np.searchsorted(proof.rows, rows)
        is_proven = np.zeros(len(rows), bool)
        inside = proven_pos < len(proof.rows)
        is_proven[inside] = proof.rows[proven_pos[inside]] == rows[inside]
        live = ~dup
        stored = np.zeros(len(rows), bool)
        stored[live] = self._stored(tables, keys[live])
        fast = live & is_proven & ~stored
        # Row-by-row decisions: parsed slowly, or with a stored record.
        decided: dict[int, Outcome] = {}
        for i in np.flatnonzero(live & ~fast).tolist():
            r = int(rows[i])
            cand = cands.get(r) or self._must_parse(chunk, r, ctx)
            cands[r] = cand
            try:
                decided[r] = feed.decide(cand, ctx)
            except FeedRowError as exc:
                errors[r] = exc
        rejects = self._rejects(chunk, errors, rejected, counts)
        changes, details = self._changes(chunk, proof, rows[fast], proven_pos[fast], cands, decided)
        counts["added"] += int(np.count_nonzero(fast))
        for outcome in decided.values():
            counts[_COUNT_NAMES[_code(outcome)]] += 1
        counts["rejected"] = dict(rejected)
        counts["trimmed"] += ctx.trimmed
        counts["fixed"] += ctx.fixed
        self._put(tables, changes, details)
        audit.append_columns(tables, changes, int(imp.clock()), origin)
        tables.rejects.put(origin, rejects)
        info["rows_done"] = chunk.start + len(chunk)
        audit.put_origin(tables, origin, info)
        return info, seen_idx

    def _rejects(
        self,
        chunk: Chunk,
        errors: dict[int, FeedRowError],
        rejected: Counter[str],
        counts: dict[str, Any],
    ) -> list[tuple[int, dict[str, Any]]]:
        """The stored rejects of a batch by row (counted in *rejected* and *counts*)."""
        from ceir.feeds import importer

        out = []
        for r in sorted(errors):
            exc = errors[r]
            rej = importer._reject(chunk.line_number(r), exc, self.imp.feed)
            rejected[rej.reason] += 1
            counts["malformed"] += importer._malformed(exc)
            out.append((chunk.start + r, rej.to_dict()))
        return out

    def _put(self, tables: Tables, changes: audit.Columns, details: list[bytes]) -> None:
        """The devices and details of *changes*, sorted by key."""
        if not len(changes.keys):
            return
        order = np.argsort(changes.keys)
        keys = changes.keys[order]
        kb = key_bytes(keys)
        raw = changes.new[order].tobytes()  # not tolist(): numpy strips trailing NUL bytes
        tables.devices.put_sorted(list(zip(kb, _slices(raw, 12), strict=True)))
        coded = np.empty(len(keys), [("key", ">u8"), ("code", "u1")])
        coded["key"], coded["code"] = keys, self.imp.feed.kind.code
        ordered = [details[i] for i in order.tolist()]
        pairs = list(zip(_slices(coded.tobytes(), 9), ordered, strict=True))
        shared = self.imp.feed.shared_details
        tables.details.put_sorted(pairs, shared, encoded=not shared)

    def _changes(
        self,
        chunk: Chunk,
        proof: Proof,
        fast_rows: npt.NDArray[np.int64],
        fast_pos: npt.NDArray[np.int64],
        cands: dict[int, Candidate],
        decided: dict[int, Outcome],
    ) -> tuple[audit.Columns, list[bytes]]:
        """The batch's changes in row order: new devices of proven rows, and the
        row-by-row decisions that change something."""
        action = int(self.imp.feed.action)
        slow = sorted(r for r, o in decided.items() if not o.unchanged)
        n_fast, n = len(fast_rows), len(fast_rows) + len(slow)
        rows = np.concatenate((fast_rows, np.array(slow, np.int64)))
        slow_keys = np.array([int.from_bytes(cands[r].key) for r in slow], np.uint64)
        keys = np.concatenate((proof.keys[fast_pos], slow_keys))
        new = np.zeros(n, "S12")
        old = np.zeros(n, "S12")
        presence = np.full(n, 2, np.uint8)
        new[:n_fast] = proof.packed[fast_pos]
        details = proof.details(fast_pos)
        for i, r in enumerate(slow, n_fast):
            cand, outcome = cands[r], decided[r]
            if outcome.new is None:  # pragma: no cover - these kinds only register
                raise StoreError("a bulk feed deleted a device")
            packed = cand.packed if outcome.new is cand.record and cand.packed else None
            new[i] = packed or outcome.new.pack()
            if outcome.old is not None:
                old[i], presence[i] = outcome.old.pack(), 3
            details.append(stored_form(self.imp.feed, cand.details))
        order = np.argsort(rows, kind="stable")
        cols = audit.Columns(
            keys=keys[order],
            actions=np.full(n, action, np.uint8),
            old=old[order],
            new=new[order],
            presence=presence[order],
            lines=(rows[order] + chunk.start + 2).astype(np.uint32),
        )
        return cols, [details[i] for i in order.tolist()]


_COUNT_NAMES = {_ADDED: "added", _CHANGED: "changed", _UNCHANGED: "unchanged"}


def _code(outcome: Outcome) -> int:
    return _UNCHANGED if outcome.unchanged else _ADDED if outcome.added else _CHANGED


def _slices(raw: bytes, size: int) -> list[bytes]:
    """*raw* cut into pieces of *size* bytes."""
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _concat(parts: list[U64]) -> U64:
    """One array of *parts*, freeing each part as it is copied (peak: the result + one)."""
    out = np.empty(sum(len(p) for p in parts), np.uint64)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out
