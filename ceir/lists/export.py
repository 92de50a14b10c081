"""``ceir lists export``: one run — take the lists, write full and delta files, record it.

1. The lists are taken from the store (:mod:`ceir.lists.collect`) as of one moment.
2. A run id is reserved in the store (the file names carry it; a ``--base`` must be a
   finished run of this store).
3. Every file is written (:mod:`ceir.lists.files`): per list the full file and, given a
   base, one delta file per change kind (a header even when empty); then the zipped
   copies — ``{prefix}_blacklist.zip`` with the blacklist's files and
   ``{prefix}_{operator}.zip`` with that operator's notifications and exceptions files.
4. The run is finished: each list's snapshot is stored with it, so a later run can name
   this one as its base without these files.

If writing fails, the files written are removed and the run id is released.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ceir.errors import CeirError
from ceir.imei import check_digit
from ceir.lists import delta
from ceir.lists.collect import Collected, collect, operators_of
from ceir.lists.files import CsvFile, Writer, check_dir
from ceir.lists.kinds import (
    DEVICE_BYTES,
    ListKind,
    date_text,
    delta_name,
    full_name,
    reasons_text,
    unpack_state,
)
from ceir.store import Store
from ceir.store import lists as runs
from ceir.store.lists import Run, Snapshot

__all__ = ["ExportOptions", "Exported", "export", "prefix_of"]


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What an export writes (each field is a ``ceir lists export`` flag)."""

    base: int = 0
    """The run to write deltas against (0: full lists only)."""
    check_digit: bool = False
    """Write 15-digit IMEIs (body + Luhn check digit) instead of the 14-digit body."""
    operators: tuple[str, ...] = ()
    """Operators (MCC-MNC) to write lists for: at the central beside those the base run
    wrote and those that saw a flagged device; at a replica exactly its own one."""
    keep_runs: int = 30
    """Runs whose snapshots the store keeps (the newest; older ones can no longer be a
    base). A daily run's blacklist of 1 M devices takes a few MB."""


@dataclass(frozen=True, slots=True)
class Exported:
    """What one export wrote."""

    run: Run
    files: tuple[Path, ...]
    rows: dict[str, int]
    """Rows of each full list, by list name."""

    def line(self) -> str:
        counts = "; ".join(f"{name} {n:,}" for name, n in self.rows.items())
        base = f" against run {self.run.base}" if self.run.base else ""
        return (
            f"list run {self.run.run}{base}: {len(self.files)} files {self.run.prefix}_* ({counts})"
        )


def prefix_of(at: int) -> str:
    """``YYYYmmdd_HHMMSS`` (UTC) of Unix time *at*: the files' name prefix."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(at))


def _imei_text(check: bool) -> Callable[[bytes], str]:
    def body(key: bytes) -> str:
        return f"{int.from_bytes(key[:DEVICE_BYTES]):014d}"

    def full(key: bytes) -> str:
        text = body(key)
        return text + str(check_digit(text))

    return full if check else body


def _lines(
    kind: ListKind,
    rows: Mapping[bytes, bytes],
    imei: Callable[[bytes], str],
    sim: Callable[[bytes], str],
) -> Iterator[str]:
    """The CSV lines of *rows*, in key order."""
    for key in sorted(rows):
        if kind is ListKind.EXCEPTIONS:
            yield f"{imei(key)},{sim(key)},\n"
            continue
        day, mask = unpack_state(rows[key])
        state = f"{date_text(day)},{reasons_text(mask)}"
        if kind is ListKind.BLACKLIST:
            yield f"{imei(key)},{state}\n"
        else:
            yield f"{imei(key)},{sim(key)},,{state}\n"


def export(
    store: Store, out: Path, options: ExportOptions = ExportOptions(), *, now: int | None = None
) -> Exported:
    """Write one run's files into *out* and record the run in *store*."""
    at = int(time.time()) if now is None else now
    check_dir(out)
    base = runs.get(store, options.base) if options.base else None
    known = operators_of(base.lists) if base is not None else set()
    taken = collect(store, at, options.operators, known)
    run = runs.reserve(store, at, prefix_of(at), base=options.base, site=taken.site)
    writer = Writer(out, private=taken.store is not None)
    try:
        _write(store, writer, run, base, taken, _imei_text(options.check_digit))
    except (CeirError, OSError):
        writer.undo()
        runs.abandon(store, run.run)
        raise
    snapshots = {
        name: Snapshot(kind.key_bytes, kind.value_bytes, rows)
        for name, (kind, rows) in taken.lists.items()
    }
    done = runs.finish(store, run, snapshots, [p.name for p in writer.written])
    runs.prune(store, max(1, options.keep_runs))
    counts = {name: len(rows) for name, (_kind, rows) in taken.lists.items()}
    return Exported(done, tuple(writer.written), counts)


def _write(
    store: Store,
    writer: Writer,
    run: Run,
    base: Run | None,
    taken: Collected,
    imei: Callable[[bytes], str],
) -> None:
    groups: dict[str, list[Path]] = {}
    for name, (kind, rows) in taken.lists.items():
        group = groups.setdefault(taken.group_of(name), [])
        lines = _lines(kind, rows, imei, taken.sim_text)
        group.append(writer.csv(CsvFile(full_name(run.prefix, name), kind.columns, lines)))
        if base is None:
            continue
        old = runs.load(store, base, name)
        changes = delta.diff(
            kind,
            {} if old is None else old.rows,
            rows,
            blacklisted=taken.blacklisted,
            flagged=taken.flagged,
        )
        for change in kind.changes:
            spec = CsvFile(
                delta_name(run.prefix, name, base.run, run.run, change),
                kind.columns,
                _lines(kind, changes[change], imei, taken.sim_text),
            )
            group.append(writer.csv(spec))
    for zip_name, members in groups.items():
        writer.zip(f"{run.prefix}_{zip_name}.zip", members)
