"""List-export runs: what each ``ceir lists export`` wrote, kept so a later run can name it
as its base and write the delta without the old files.

``lists`` sub-database (:class:`~ceir.store.tables.ListRuns`): per run a JSON record
(:class:`Run`) and, per list the run wrote, a *snapshot*: the list's rows as fixed-width
``key + value`` bytes in key order, zlib-compressed in chunks, with its SHA-256 in the
record so a damaged snapshot is refused, never silently diffed. A row's key says which
entry it is (a device; a device and a SIM), its value what the list says of it (block date,
reasons). Snapshots hold device keys and identity tokens only, never a clear IMSI.

A run is *reserved* (its id taken, state ``writing``) before its files are written, since
the file names carry the id, and *finished* (state ``done``, snapshots stored) after; a
run that failed between the two is deleted. Only finished runs can be a base.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ceir.errors import StoreError, UnknownRunError
from ceir.store.env import Store
from ceir.store.tables import Tables

__all__ = [
    "CHUNK_BYTES",
    "Run",
    "RunState",
    "Snapshot",
    "abandon",
    "finish",
    "get",
    "load",
    "prune",
    "reserve",
    "runs",
]

CHUNK_BYTES = 4 << 20
"""Raw snapshot bytes per stored chunk (compressed before it is stored)."""
_LEVEL = 1  # sorted fixed-width rows compress well already at the fastest level


class RunState(enum.Enum):
    """Where a run stands."""

    WRITING = "writing"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One list's rows, as the run wrote them: ``key + value`` of fixed widths, by key."""

    key_bytes: int
    value_bytes: int
    rows: dict[bytes, bytes] = field(default_factory=dict)

    def pack(self) -> bytes:
        width = self.key_bytes + self.value_bytes
        out = b"".join(k + self.rows[k] for k in sorted(self.rows))
        if len(out) != width * len(self.rows):
            raise ValueError(f"snapshot rows are not all {width} bytes")
        return out

    @classmethod
    def unpack(cls, key_bytes: int, value_bytes: int, raw: bytes) -> Snapshot:
        width = key_bytes + value_bytes
        if width == 0 or len(raw) % width:
            raise StoreError(f"list snapshot of {len(raw)} bytes is not rows of {width}")
        rows = {
            raw[i : i + key_bytes]: raw[i + key_bytes : i + width]
            for i in range(0, len(raw), width)
        }
        return cls(key_bytes, value_bytes, rows)


@dataclass(frozen=True, slots=True)
class Run:
    """One export run."""

    run: int
    at: int
    """Unix seconds the lists were taken at."""
    prefix: str
    """The files' name prefix, ``YYYYmmdd_HHMMSS``."""
    state: RunState = RunState.WRITING
    base: int = 0
    """The run the deltas were written against (0: none)."""
    site: str = ""
    """``central`` or the operator whose replica exported."""
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By list name (``blacklist``, ``notifications_510-10`` ...): rows, widths, digest."""
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "at": self.at,
            "prefix": self.prefix,
            "state": self.state.value,
            "base": self.base,
            "site": self.site,
            "lists": self.lists,
            "files": list(self.files),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            int(data["run"]),
            int(data["at"]),
            str(data["prefix"]),
            RunState(data["state"]),
            int(data.get("base", 0)),
            str(data.get("site", "")),
            {str(k): dict(v) for k, v in data.get("lists", {}).items()},
            tuple(data.get("files", ())),
        )


def reserve(store: Store, at: int, prefix: str, *, base: int = 0, site: str = "") -> Run:
    """Take the next run id (state ``writing``); *base*, if given, must be a finished run."""

    def take(tables: Tables) -> Run:
        if base:
            _done(tables, base)
        run = Run(tables.lists.last() + 1, at, prefix, base=base, site=site)
        tables.lists.put(run.run, run.to_json())
        return run

    return store.write(take)


def finish(store: Store, run: Run, snapshots: Mapping[str, Snapshot], files: Iterable[str]) -> Run:
    """Store the lists' snapshots and mark *run* done."""
    packed = {name: snap.pack() for name, snap in snapshots.items()}
    chunked = {
        name: [
            zlib.compress(raw[i : i + CHUNK_BYTES], _LEVEL) for i in range(0, len(raw), CHUNK_BYTES)
        ]
        for name, raw in packed.items()
    }
    lists = {
        name: {
            "rows": len(snap.rows),
            "key_bytes": snap.key_bytes,
            "value_bytes": snap.value_bytes,
            "sha256": hashlib.sha256(packed[name]).hexdigest(),
        }
        for name, snap in snapshots.items()
    }
    done = Run(run.run, run.at, run.prefix, RunState.DONE, run.base, run.site, lists, tuple(files))

    def put(tables: Tables) -> None:
        for name, chunks in chunked.items():
            tables.lists.put_chunks(run.run, name, chunks)
        tables.lists.put(run.run, done.to_json())

    store.write(put)
    return done


def abandon(store: Store, run: int) -> None:
    """Delete a run that did not finish (its files were not all written)."""
    store.write(lambda tables: tables.lists.delete(run))


def prune(store: Store, keep: int) -> list[int]:
    """Delete every run but the newest *keep* (>= 1); returns the ids deleted."""

    def drop(tables: Tables) -> list[int]:
        old = tables.lists.runs()[:-keep]
        for run in old:
            tables.lists.delete(run)
        return old

    return store.write(drop)


def _done(tables: Tables, run: int) -> Run:
    data = tables.lists.record(run)
    found = None if data is None else Run.from_json(data)
    if found is None or found.state is not RunState.DONE:
        known = [
            str(r)
            for r in tables.lists.runs()
            if (rec := tables.lists.record(r)) and rec.get("state") == RunState.DONE.value
        ]
        have = f"the runs recorded are {', '.join(known[-5:])}" if known else "no run is recorded"
        raise UnknownRunError(
            f"--base {run}: no finished list export has that run id ({have}); "
            "give one of them, or no --base for full lists only"
        )
    return found


def get(store: Store, run: int) -> Run:
    """The finished run *run*; :class:`UnknownRunError` if there is none."""
    with store.snapshot() as tables:
        return _done(tables, run)


def runs(store: Store) -> list[Run]:
    """Every recorded run, oldest first (finished or not)."""
    with store.snapshot() as tables:
        return [
            Run.from_json(data)
            for r in tables.lists.runs()
            if (data := tables.lists.record(r)) is not None
        ]


def load(store: Store, run: Run, name: str) -> Snapshot | None:
    """The snapshot of list *name* that *run* wrote (None: the run wrote no such list);
    StoreError if its bytes do not match the digest recorded with it."""
    info = run.lists.get(name)
    if info is None:
        return None
    with store.snapshot() as tables:
        try:
            raw = b"".join(zlib.decompress(c) for c in tables.lists.chunks(run.run, name))
        except zlib.error as exc:
            raise StoreError(f"the snapshot of {name} in list run {run.run} is damaged") from exc
    if hashlib.sha256(raw).hexdigest() != info["sha256"]:
        raise StoreError(
            f"the snapshot of {name} in list run {run.run} does not match its digest; "
            "the store is damaged (`ceir verify`)"
        )
    return Snapshot.unpack(int(info["key_bytes"]), int(info["value_bytes"]), raw)
