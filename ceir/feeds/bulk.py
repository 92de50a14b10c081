"""The bulk import path: plain CSV manufacturer and operator-dump files, as arrays.

The same two passes as the row-by-row importer (:mod:`ceir.feeds.importer`), with the
same outcome — the same accepted devices, rejects, counts and audit entries — but the
bytes are parsed once and the rows are written in ascending key order:

- **check**: the file is read a chunk at a time; rows are split and checked by array
  operations (:mod:`ceir.feeds._proof`); a row that is not proven to parse (a dirty
  IMEI, an unknown TAC, a bad date...) is parsed by the kind's own ``parse``, so its
  reject is the row-by-row one. Each parsed row becomes a fixed-width column row (key,
  where its line is, its record) spooled to the store's spool (:mod:`ceir.feeds._spool`);
  rows that do not parse are spooled apart. The parsed rows are then sorted by key, a
  key range at a time: a row repeating the key of an earlier row sits right after it
  (the duplicate check is one comparison of neighbours, no set), and the stored records
  are looked up with one sorted ``getmulti`` per range. The sorted rows are spooled.
- **write**: batches of ``batch_rows`` of the sequence "rows that did not parse, in file
  order, then the parsed rows in key order", each in one write transaction: each batch
  is one contiguous key range, so a commit dirties one run of B-tree pages and fills
  them (appended when the range lies above every stored key) instead of touching pages
  all over the table. A device with a stored record, and a row parsed row by row, is
  parsed again from its line and decided by the kind's own ``decide``; the others are
  new devices, written from the arrays. The progress record counts the sequence's
  positions, so a killed import resumes at its first uncommitted batch: the order is
  the file's alone.

A file that is not plain (:mod:`ceir.feeds._plain`) is left to the row-by-row path.
"""

from __future__ import annotations

import mmap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ceir.errors import FeedRowError, StoreError
from ceir.feeds import Kind, _spool
from ceir.feeds._plain import Chunk, NotPlainError, chunks, key_bytes, pieces, row_values, split
from ceir.feeds._proof import _TO_SEP, Proof, _details, prove, stored_form
from ceir.feeds._spool import DUP, ERROR, ROW, SLOW, Rows, Spool, key_order
from ceir.feeds.base import Candidate, Context, Outcome
from ceir.feeds.reader import Row
from ceir.feeds.rows import RejectReason
from ceir.feeds.summary import Reject
from ceir.security.principals import operator_in
from ceir.store import audit
from ceir.store.tables import Tables

if TYPE_CHECKING:
    from ceir.feeds.importer import _Check, _Import

__all__ = ["Bulk", "NotPlainError"]

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
_ADDED, _CHANGED, _UNCHANGED, _CONFLICT = 0, 1, 2, 3
_PLACE = ("off", "row", "len")
"""The fields a parsed row (``ROW``) and a failed one (``ERROR``) share."""
_CHECK_ROWS = 250_000
"""Rows per chunk of the check pass."""
_MAX_ROWS = (1 << 32) - 1
"""Rows a bulk file may have (row numbers are spooled as 32 bits)."""


class Bulk:
    """The bulk passes of one import (:class:`ceir.feeds.importer._Import`)."""

    def __init__(self, imp: _Import) -> None:
        self.imp = imp
        self.header = ",".join(imp.feed.fields)
        self.width = len(imp.feed.fields)
        self.records: list[bytes] = []
        """The distinct packed records of the file's parsed rows (``ROW.rec`` indexes)."""
        self._record_ids: dict[bytes, int] = {}
        self.errors: Spool | None = None
        self.order: Spool | None = None
        self.refusals: list[tuple[int, int, int]] = []
        """Where the representative row of each date that rejects its rows alike is (offset,
        length, row): ``ERROR.err`` - 1 indexes it."""
        self._refusal_ids: dict[bytes, int] = {}
        self._map: mmap.mmap | None = None

    def _context(self, tables: Tables, now: float) -> Context:
        imp = self.imp
        return Context(tables, imp.options, imp.tokenizer, now, operator=operator_in(imp.actor))

    def _chunks(self) -> Iterator[Chunk]:
        return chunks(self.imp.path, self.header, _CHECK_ROWS)

    def _tacs(self, tables: Tables) -> U64 | None:
        if self.imp.options.allow_unknown_tac or self.imp.feed.kind is not Kind.MANUFACTURER:
            return None
        return np.array(sorted(int(k) for k in tables.tacs.all_keys() if k.isdigit()), np.uint64)

    def _record_id(self, packed: bytes) -> int:
        found = self._record_ids.get(packed)
        if found is None:
            found = self._record_ids[packed] = len(self.records)
            self.records.append(packed)
        return found

    # -- the file's lines, read again ----------------------------------------------------

    def _bytes(self) -> mmap.mmap:
        if self._map is None:
            with Path(self.imp.path).open("rb") as f:  # the map keeps its own descriptor
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def _values(self, off: int, length: int, row: int) -> Row:
        """Row *row* (at *off*, *length* bytes) as the row-by-row reader yields it."""
        mm = self._bytes()
        eol = 2 if mm[off + length : off + length + 1] == b"\r" else 1
        return row_values(mm[off : off + length], row + 2, eol, self.width)

    def _candidate(self, row: Any, ctx: Context, *, count: bool = True) -> Candidate:
        """The candidate of a spooled parsed row, from the kind's own parser (*count*
        False: its trims and fixes were counted already)."""
        _line, values = self._values(int(row["off"]), int(row["len"]), int(row["row"]))
        if isinstance(values, FeedRowError):  # pragma: no cover - it parsed before
            raise StoreError(f"row {int(row['row']) + 2} of {self.imp.name} changed")
        trimmed, fixed = ctx.trimmed, ctx.fixed
        try:
            return self.imp.feed.parse(values, ctx)
        finally:
            if not count:
                ctx.trimmed, ctx.fixed = trimmed, fixed

    def _error(self, row: Any, ctx: Context, shared: dict[int, FeedRowError]) -> FeedRowError:
        """The parse error of a spooled row that did not parse; for one rejected by its
        date alone, its date's representative's (parsed once per *shared*)."""
        err = int(row["err"])
        if err:
            found = shared.get(err)
            if found is None:
                off, length, at = self.refusals[err - 1]
                found = shared[err] = self._parse_error(off, length, at, ctx)
            return found
        return self._parse_error(int(row["off"]), int(row["len"]), int(row["row"]), ctx)

    def _parse_error(self, off: int, length: int, row: int, ctx: Context) -> FeedRowError:
        _line, values = self._values(off, length, row)
        if isinstance(values, FeedRowError):
            return values
        try:
            self.imp.feed.parse(values, ctx)
        except FeedRowError as exc:
            return exc
        raise StoreError(  # pragma: no cover - it did not parse before
            f"row {row + 2} of {self.imp.name} changed"
        )

    def _fast_details(self, live: Rows, ctx: Context) -> list[bytes]:
        """The ``details`` values of proven rows, from their lines."""
        if not len(live):
            return []
        mm = self._bytes()
        offs, lens = live["off"].tolist(), live["len"].tolist()
        if self.imp.feed.kind is Kind.MANUFACTURER:
            # A proven line is the 15-digit IMEI, a comma, then the details' fields.
            joined = b"\n".join([mm[o + 16 : o + n] for o, n in zip(offs, lens, strict=True)])
            return joined.translate(_TO_SEP).split(b"\n")
        lines = [mm[o : o + n] for o, n in zip(offs, lens, strict=True)]
        buf = b"\n".join(lines) + b"\n"
        ends = np.cumsum(np.array(lens, np.int64) + 1) - 1
        begins = ends - np.array(lens, np.int64)
        chunk = Chunk(0, buf, begins, ends, ends.copy())
        fields = split(chunk, self.width)
        if len(fields.rows) != len(lines):  # pragma: no cover - proven rows split alike
            raise StoreError(f"{self.imp.name} changed between the passes")
        return _details(self.imp.feed.kind, chunk, fields, np.arange(len(lines)), ctx)

    def _stored(self, tables: Tables, keys: U64) -> npt.NDArray[np.bool_]:
        """Which of *keys* (ascending) have a stored record (one sorted ``getmulti``)."""
        if not len(keys) or not tables.devices.any_within(*key_bytes(keys[[0, -1]])):
            return np.zeros(len(keys), bool)
        found = tables.devices.present(key_bytes(keys))
        have = np.array([int.from_bytes(k, "big") for k in found], np.uint64)
        return np.isin(keys, have)

    def close(self) -> None:
        """Let go of the spools and the file's map."""
        for spool in (self.errors, self.order):
            if spool is not None:
                spool.close()
        self.errors = self.order = None
        self._map = None

    # -- pass 1 ------------------------------------------------------------------------

    def check(self, found: _Check, *, decide: bool) -> _Check | None:
        """*found* filled as the row-by-row check pass would (its ``duplicates`` stays
        empty: the spooled order marks them), or None when the file is not plain CSV
        (nothing was written: read it row by row)."""
        self.close()
        try:
            self._check(found, decide=decide)
        except NotPlainError:
            self.close()
            return None
        return found

    def _check(self, found: _Check, *, decide: bool) -> None:
        from ceir.feeds import importer

        imp = self.imp
        parsed = Spool(imp.store, ROW)
        self.errors = Spool(imp.store, ERROR)
        try:
            with imp.store.snapshot() as tables:
                ctx = self._context(tables, imp.clock())
                tacs = self._tacs(tables)
                imp.progress.phase("checking", None)
                for chunk in self._chunks():
                    self._spool_chunk(chunk, ctx, tacs, parsed, found)
                    found.rows += len(chunk)
                    if found.rows > _MAX_ROWS:
                        raise NotPlainError  # pragma: no cover - 4 billion rows: row by row
                    imp.progress.advance(len(chunk))
                found.trimmed, found.fixed = ctx.trimmed, ctx.fixed
                self.order = Spool(imp.store, ROW)
                dups = self._sort(tables, ctx, parsed.view(), found, decide=decide)
            n_dup = len(dups)
            if n_dup:
                found.rejected[RejectReason.DUPLICATE.value] += n_dup
                found.malformed += n_dup
            if n_dup and imp.refusal(found):
                found.rejects.extend(self._duplicate_rejects(dups))
            found.rejects.sort(key=lambda r: r.line)
            del found.rejects[importer.MAX_KEPT_REJECTS :]  # as the row-by-row pass keeps them
        finally:
            parsed.close()

    def _spool_chunk(
        self, chunk: Chunk, ctx: Context, tacs: U64 | None, parsed: Spool, found: _Check
    ) -> None:
        """Parse *chunk*: its parsed rows to *parsed*, the others to :attr:`errors`."""
        from ceir.feeds import importer

        feed = self.imp.feed
        proof = prove(chunk, feed, ctx, tacs)
        n = len(chunk)
        out = np.zeros(n, ROW)
        ok = np.zeros(n, bool)
        out["key"][proof.rows] = proof.keys
        ids = np.array([self._record_id(r) for r in proof.records], np.uint32)
        if len(ids):
            out["rec"][proof.rows] = ids[proof.rec]
        ok[proof.rows] = True
        err = np.zeros(n, np.uint32)
        kept = self._refuse(chunk, proof, found, err)
        room = max(importer.MAX_KEPT_REJECTS - len(found.rejects), 0)
        slow: list[Reject] = []  # the first rejects of the rows parsed one by one
        done = ok.copy()
        done[proof.refused] = True
        bad: list[int] = []
        for r in np.flatnonzero(~done).tolist():
            _line, values = chunk.values(r, self.width)
            try:
                if isinstance(values, FeedRowError):
                    raise values
                cand = feed.parse(values, ctx)
            except FeedRowError as exc:
                bad.append(r)
                rej = importer._reject(chunk.line_number(r), exc, feed)
                found.rejected[rej.reason] += 1
                found.malformed += importer._malformed(exc)
                if len(slow) < room:
                    slow.append(rej)
                continue
            ok[r] = True
            out["key"][r] = int.from_bytes(cand.key, "big")
            out["rec"][r] = self._record_id(bytes(cand.packed or cand.record.pack()))
            out["flags"][r] = SLOW
        out["row"] = np.arange(chunk.start, chunk.start + n)
        out["off"] = chunk.offset + chunk.begins
        out["len"] = chunk.ends - chunk.begins
        parsed.append(out[ok])
        kept += slow
        kept.sort(key=lambda r: r.line)  # the first rejects by line, as row by row
        found.rejects.extend(kept[:room])
        failed = np.union1d(np.array(bad, np.int64), proof.refused)
        if len(failed) and self.errors is not None:
            errors = np.zeros(len(failed), ERROR)
            for name in _PLACE:
                errors[name] = out[name][failed]
            errors["err"] = err[failed]
            self.errors.append(errors)

    def _refuse(self, chunk: Chunk, proof: Proof, found: _Check, err: U32) -> list[Reject]:
        """Count the rows of *chunk* rejected by their date alone, each as its date's
        representative was, and mark them in *err*; the rejects to keep (in row order, at
        most as many as are kept)."""
        from ceir.feeds import importer

        kept: list[Reject] = []
        if not len(proof.refused):
            return kept
        ids = np.zeros(len(proof.refusals), np.uint32)
        for k, (rep, date, exc) in enumerate(proof.refusals):
            found_id = self._refusal_ids.get(date)
            if found_id is None:
                found_id = self._refusal_ids[date] = len(self.refusals)
                at = int(chunk.begins[rep])
                self.refusals.append(
                    (chunk.offset + at, int(chunk.ends[rep]) - at, chunk.start + rep)
                )
            ids[k] = found_id + 1
            rows = proof.refused[proof.refusal == k]
            rej = importer._reject(0, exc, self.imp.feed)
            found.rejected[rej.reason] += len(rows)
            found.malformed += importer._malformed(exc) * len(rows)
            room = importer.MAX_KEPT_REJECTS - len(found.rejects)
            kept.extend(
                Reject(chunk.line_number(r), rej.field, rej.reason, rej.message, rej.fix)
                for r in rows[:room].tolist()
            )
        err[proof.refused] = ids[proof.refusal]
        return kept

    def _sort(
        self, tables: Tables, ctx: Context, parsed: Rows, found: _Check, *, decide: bool
    ) -> Rows:
        """Spool the parsed rows in key order (:attr:`order`), duplicates marked; count
        what the others would do (*decide*). Returns the duplicates (``ERROR`` rows)."""
        from ceir.feeds import importer

        if self.order is None:  # pragma: no cover - set by the caller
            raise StoreError("no spool for the sorted rows")
        codes = np.zeros(4, np.int64)
        dups: list[Rows] = []
        conflicts: list[Reject] = []
        spool = lambda: Spool(self.imp.store, ROW)  # noqa: E731 - one range's spool
        for part in key_order(parsed, _spool.BUCKET, spool):
            keys = part["key"]
            dup = np.zeros(len(part), bool)
            dup[1:] = keys[1:] == keys[:-1]
            part["flags"][dup] |= DUP
            if dup.any():
                picked = np.zeros(int(dup.sum()), ERROR)
                for name in _PLACE:
                    picked[name] = part[name][dup]
                dups.append(picked)
            if decide:
                self._decide(tables, ctx, part[~dup], codes, conflicts, found)
                if len(conflicts) > 2 * importer.MAX_KEPT_REJECTS:  # keep the first lines
                    conflicts.sort(key=lambda r: r.line)
                    del conflicts[importer.MAX_KEPT_REJECTS :]
            self.order.append(part)
        if decide:
            found.added, found.changed, found.unchanged = (int(c) for c in codes[:3])
            found.rejects.extend(conflicts)
        return np.concatenate(dups) if dups else np.zeros(0, ERROR)

    def _decide(
        self,
        tables: Tables,
        ctx: Context,
        live: Rows,
        codes: npt.NDArray[np.int64],
        conflicts: list[Reject],
        found: _Check,
    ) -> None:
        """What each of the *live* rows (sorted, no duplicates) would do: new unless it
        has a stored record or was parsed row by row, then the kind's own ``decide``."""
        from ceir.feeds import importer

        feed = self.imp.feed
        need = self._stored(tables, live["key"]) | ((live["flags"] & SLOW) != 0)
        codes[_ADDED] += len(live) - int(np.count_nonzero(need))
        for i in np.flatnonzero(need).tolist():
            row = live[i]
            cand = self._candidate(row, ctx, count=False)
            try:
                codes[_code(feed.decide(cand, ctx))] += 1
            except FeedRowError as exc:
                rej = importer._reject(int(row["row"]) + 2, exc, feed)
                found.rejected[rej.reason] += 1
                found.malformed += importer._malformed(exc)
                conflicts.append(rej)

    def _duplicate_rejects(self, dups: Rows) -> list[Reject]:
        """The duplicate rejects of the first lines (a refused file's report)."""
        from ceir.feeds import importer

        imp, out = self.imp, []
        first = dups[np.argsort(dups["row"], kind="stable")[: importer.MAX_KEPT_REJECTS]]
        with imp.store.snapshot() as tables:
            ctx = self._context(tables, imp.clock())
            for row in first:
                cand = self._candidate(row, ctx, count=False)
                exc = importer._duplicate(cand, imp.feed.kind)
                out.append(importer._reject(int(row["row"]) + 2, exc, imp.feed))
        return out

    # -- pass 2 ------------------------------------------------------------------------

    def write(self, origin: int, info: dict[str, Any]) -> dict[str, Any]:
        """Write every batch not yet committed; returns the final origin record."""
        try:
            return self._write(origin, info)
        finally:
            self.close()

    def _write(self, origin: int, info: dict[str, Any]) -> dict[str, Any]:
        imp = self.imp
        if self.errors is None or self.order is None:  # pragma: no cover - check() ran
            raise StoreError(f"import #{origin} was not checked")
        errors, order = self.errors.view(), self.order.view()
        total, step = len(errors) + len(order), imp.options.batch_rows
        done = int(info["rows_done"])
        imp.progress.phase("importing", int(info.get("rows", 0)) or None)
        imp.progress.advance(done)
        records = np.frombuffer(b"".join(self.records), "S12") if self.records else None
        for start in range(done, total, step):
            stop = min(start + step, total)

            def write_batch(t: Tables, a: int = start, b: int = stop) -> dict[str, Any]:
                return self._write_batch(t, origin, a, b, errors, order, records)

            info = imp.store.write(write_batch)
            imp.progress.advance(stop - start)
        return info

    def _write_batch(
        self,
        tables: Tables,
        origin: int,
        start: int,
        stop: int,
        errors: Rows,
        order: Rows,
        records: npt.NDArray[np.bytes_] | None,
    ) -> dict[str, Any]:
        from ceir.feeds import importer

        imp = self.imp
        info = audit.read_origin(tables, origin)
        if info is None or info["rows_done"] != start:
            raise StoreError(
                f"import #{origin} of {imp.name} was advanced by another process; "
                "run the import again to resume it"
            )
        ctx = self._context(tables, float(info["started_at"]))
        counts: dict[str, Any] = info["counts"]
        rejected: Counter[str] = Counter(counts["rejected"])
        failed: dict[int, FeedRowError] = {}
        shared: dict[int, FeedRowError] = {}
        for row in errors[start:stop]:
            failed[int(row["row"])] = self._error(row, ctx, shared)
        part = order[max(start - len(errors), 0) : max(stop - len(errors), 0)]
        if len(part):
            changes, details = self._changes(tables, ctx, part, records, counts, failed)
            self._put(tables, changes)
            once, code = imp.feed.shared_details, imp.feed.kind.code
            audit.append_columns(
                tables, changes, int(imp.clock()), origin, details, code, once, encoded=not once
            )
        rejects = []
        made: dict[FeedRowError, Reject] = {}  # a shared error is redacted once
        for r in sorted(failed):
            exc = failed[r]
            rej = made.get(exc)
            if rej is None:
                rej = made[exc] = importer._reject(0, exc, imp.feed)
            rejected[rej.reason] += 1
            counts["malformed"] += importer._malformed(exc)
            rejects.append(
                (r, Reject(r + 2, rej.field, rej.reason, rej.message, rej.fix).to_dict())
            )
        counts["rejected"] = dict(rejected)
        counts["trimmed"] += ctx.trimmed
        counts["fixed"] += ctx.fixed
        tables.rejects.put(origin, rejects)
        info["rows_done"] = stop
        audit.put_origin(tables, origin, info)
        return info

    def _changes(
        self,
        tables: Tables,
        ctx: Context,
        part: Rows,
        records: npt.NDArray[np.bytes_] | None,
        counts: dict[str, Any],
        failed: dict[int, FeedRowError],
    ) -> tuple[audit.Columns, list[bytes]]:
        """The changes of the sorted rows *part*, in key order, and their details; the
        rejects go to *failed* by row."""
        from ceir.feeds import importer

        feed = self.imp.feed
        dup = (part["flags"] & DUP) != 0
        for row in part[dup]:
            cand = self._candidate(row, ctx)
            failed[int(row["row"])] = importer._duplicate(cand, feed.kind)
        live = part[~dup]
        n = len(live)
        need = self._stored(tables, live["key"]) | ((live["flags"] & SLOW) != 0)
        fast = ~need
        new = np.zeros(n, "S12")
        if records is not None:
            new[fast] = records[live["rec"][fast]]
        old = np.zeros(n, "S12")
        presence = np.full(n, 2, np.uint8)
        keep = fast.copy()
        slow = np.flatnonzero(need).tolist()
        if not slow:  # new devices only (a first load): every row from the arrays
            details = self._fast_details(live, ctx)
        else:
            details = [b""] * n
            for i, value in zip(
                np.flatnonzero(fast).tolist(), self._fast_details(live[fast], ctx), strict=True
            ):
                details[i] = value
        for i in slow:
            row = live[i]
            cand = self._candidate(row, ctx)
            try:
                outcome = feed.decide(cand, ctx)
            except FeedRowError as exc:
                failed[int(row["row"])] = exc
                continue
            if outcome.unchanged:
                counts["unchanged"] += 1
                continue
            counts["added" if outcome.added else "changed"] += 1
            new[i] = _packed_new(cand, outcome)
            if outcome.old is not None:
                old[i], presence[i] = outcome.old.pack(), 3
            details[i], keep[i] = stored_form(feed, cand.details), True
        counts["added"] += int(np.count_nonzero(fast))
        sel = np.flatnonzero(keep)
        cols = audit.Columns(
            keys=live["key"][sel],
            actions=np.full(len(sel), int(feed.action), np.uint8),
            old=old[sel],
            new=new[sel],
            presence=presence[sel],
            lines=(live["row"][sel] + 2).astype(np.uint32),
        )
        return cols, details if len(sel) == n else [details[i] for i in sel.tolist()]

    def _put(self, tables: Tables, changes: audit.Columns) -> None:
        """The devices of *changes* (in ascending key order); their details go with
        the audit entries (:func:`ceir.store.audit.append_columns`)."""
        if not len(changes.keys):
            return
        kb = key_bytes(changes.keys)
        tables.devices.put_ascending(list(zip(kb, pieces(changes.new, 12), strict=True)))


def _packed_new(cand: Candidate, outcome: Outcome) -> bytes:
    if outcome.new is None:  # pragma: no cover - these kinds only register
        raise StoreError("a bulk feed deleted a device")
    packed = cand.packed if outcome.new is cand.record and cand.packed else None
    return bytes(packed or outcome.new.pack())


def _code(outcome: Outcome) -> int:
    return _UNCHANGED if outcome.unchanged else _ADDED if outcome.added else _CHANGED
