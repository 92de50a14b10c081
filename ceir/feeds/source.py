"""The feed file as an import reads it: one private copy, its digest, and its rows in
the order they apply (a lost-stolen file is a log of events)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from ceir.errors import FeedFormatError, FeedRowError
from ceir.feeds.base import Context, Feed
from ceir.feeds.reader import FeedReader, Row
from ceir.store import Store
from ceir.store.env import spool_file, spool_path
from ceir.store.tables import Tables

__all__ = ["event_order", "file_digest", "private_copy"]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise FeedFormatError(f"cannot read {path}: {exc.strerror}") from exc
    return h.hexdigest()


@contextlib.contextmanager
def private_copy(store: Store, path: Path) -> Iterator[Path]:
    """A private copy of feed file *path* in *store*'s spool, as a path to open (again).

    Every pass of an import reads this one copy, so rows appended to (or changed in) the
    original between the check pass and the write pass are never written: the file that
    was checked, counted and staged is the file that is imported. The copy has no name
    in the spool and is gone when the block ends (or the process dies).
    """
    if not path.is_file():
        raise FeedFormatError(f"no feed file at {path}")
    try:
        source = path.open("rb")
    except OSError as exc:
        raise FeedFormatError(f"cannot read {path}: {exc.strerror}") from exc
    with source, spool_file(store) as copy:
        try:
            shutil.copyfileobj(source, copy, 1 << 20)
            copy.flush()
        except OSError as exc:
            raise FeedFormatError(f"cannot copy {path} into the spool: {exc.strerror}") from exc
        yield spool_path(copy)


def event_order(
    store: Store, feed: Feed, reader: FeedReader, context: Callable[[Tables], Context]
) -> dict[int, Row]:
    """Row index -> the row applied there instead, where the order differs from the
    file's: the rows of one device follow their time (``reported_at``), each taking the
    place of the next of that device's rows. *context* makes a Context over a snapshot."""
    times: dict[bytes, list[tuple[int, int]]] = {}
    with store.snapshot() as tables:
        ctx = context(tables)
        for i, (_line, values) in enumerate(reader.rows()):
            if isinstance(values, FeedRowError):
                continue
            try:
                cand = feed.parse(values, ctx)
            except FeedRowError:
                continue
            times.setdefault(cand.key, []).append((cand.record.registered_at, i))
    moves: dict[int, int] = {}  # slot -> the row index applied in it
    for events in times.values():
        if len(events) > 1:
            slots = sorted(i for _at, i in events)
            for slot, (_at, i) in zip(slots, sorted(events), strict=True):
                if slot != i:
                    moves[slot] = i
    if not moves:
        return {}
    wanted = set(moves.values())
    found = {i: row for i, row in enumerate(reader.rows()) if i in wanted}
    return {slot: found[i] for slot, i in moves.items()}
