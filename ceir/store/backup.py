"""Backup, restore and verification of a store.

- :func:`backup` copies a store while it is being served and written: LMDB's copy runs
  inside one read transaction, so the copy is one consistent commit, and ``compact``
  drops free pages. It is written to a temporary directory, verified, then renamed.
- :func:`restore` puts a verified backup in place of a store that nobody has open.
- :func:`verify` walks every page of every table through cursors and decodes every
  value, so a torn or foreign file shows up as a list of problems, not a crash later.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from ceir.errors import CeirError, StoreError
from ceir.imei import MAX_BODY
from ceir.record import RECORD_SIZE, Record
from ceir.store import SCHEMA_VERSION, TacInfo, audit, open_store
from ceir.store.audittables import AuditLog
from ceir.store.env import check_file

_DATA = "data.mdb"
_LOCK = "lock.mdb"


@dataclass
class Report:
    """What :func:`verify` found."""

    path: Path
    tables: dict[str, int] = field(default_factory=dict)
    """Entries per table."""
    problems: list[str] = field(default_factory=list)
    expect_head: str | None = None
    audit_head: str = ""
    """The audit chain's head hash (hex): keep it elsewhere, check it with --expect-head."""
    chained: int = 0
    """Audit entries linked into the chain (older ones carry no link)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < 100:
            self.problems.append(problem)
        elif len(self.problems) == 100:
            self.problems.append("... more problems not listed")


Checker = Callable[[bytes, bytes, Report], None]


def _check_device(key: bytes, value: bytes, report: Report) -> None:
    if len(key) != 8 or int.from_bytes(key, "big") > MAX_BODY:
        report.add(f"devices: key {key.hex()} is not an 8-byte IMEI body")
        return
    if len(value) != RECORD_SIZE:
        report.add(f"devices: {key.hex()} has a {len(value)}-byte record, not {RECORD_SIZE}")
        return
    try:
        Record.unpack(value)
    except ValueError as exc:
        report.add(f"devices: {key.hex()} has an undecodable record: {exc}")


def _check_tac(key: bytes, value: bytes, report: Report) -> None:
    if len(key) != 8 or not key.isdigit():
        report.add(f"tacs: key {key!r} is not an 8-digit TAC")
        return
    try:
        TacInfo.unpack(key.decode(), value)
    except (ValueError, UnicodeDecodeError) as exc:
        report.add(f"tacs: {key.decode()} has an undecodable entry: {exc}")


# Tables whose values verify knows how to decode; others are walked, not decoded.
CHECKERS: dict[str, Checker] = {"devices": _check_device, "tacs": _check_tac}


def verify(path: Path, *, expect_head: str | None = None) -> Report:
    """Check the store at *path*: schema version, every table walked, every value decoded,
    the audit chain followed. *expect_head*: a head hash recorded earlier, which the
    chain must still pass through (an edited and re-chained log does not)."""
    report = Report(path, expect_head=expect_head)
    problem = check_file(path) if (path / _DATA).exists() else None
    if problem is not None:
        report.add(problem)
        return report
    try:
        store = open_store(path, readonly=True)
    except CeirError as exc:
        report.add(str(exc))
        return report
    try:
        env = store.env
        with env.begin(buffers=False) as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
            for name in names:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.Error:
                    report.add(f"main table: entry {name!r} is not a table")
                    continue
                check = CHECKERS.get(name.decode(errors="replace"))
                count = 0
                for key, value in txn.cursor(db):
                    count += 1
                    if check is not None:
                        check(key, value, report)
                report.tables[name.decode(errors="replace")] = count
            for extra in EXTRA_CHECKS:
                extra(store, txn, report)
    except lmdb.Error as exc:
        report.add(f"cannot read the store: {exc}")
    finally:
        store.close()
    for table in ("devices", "tacs", "meta"):
        if table not in report.tables:
            report.add(f"table {table!r} is missing")
    return report


def _check_chain(store: Any, txn: Any, report: Report) -> None:
    """Every batch's entries are all there and hash to its digest (each entry's new
    record being the next one's old, or the device's record for its last); every batch
    links to the one before it (and to that batch's origin). Sets the head."""
    log, links, imports = (store.dbs.get(n) for n in ("audit", "audit_links", "imports"))
    report.audit_head = audit.GENESIS.hex()
    batches = [
        (_n(k), audit.Batch.unpack(v)) for k, v in ([] if links is None else txn.cursor(links))
    ]
    firsts = [first for first, _b in batches]
    hashers = [hashlib.sha256() for _b in batches]
    counts = [0] * len(batches)
    devices = store.devices
    logged = AuditLog(txn, log, links, store.dbs.get("details"))
    for key, stored in logged.by_device():
        for i, (seq, value) in enumerate(stored):
            at = bisect.bisect_right(firsts, seq) - 1
            if at < 0 or seq >= firsts[at] + batches[at][1].size:
                report.add(f"audit: entry {seq} of device {key.hex()} belongs to no batch")
                continue
            if i + 1 < len(stored):
                new = audit.old_of(stored[i + 1][1])
            else:
                current = txn.get(key, db=devices)
                new = None if current is None else bytes(current)
            hashers[at].update(audit.hashed(key, seq, value, new))
            counts[at] += 1
    prints: dict[int, bytes] = {}
    prev = audit.GENESIS
    for (first, batch), hasher, count in zip(batches, hashers, counts, strict=True):
        where = f"batch {first}-{first + batch.size - 1} (import #{batch.origin})"
        if batch.prev != prev:
            report.add(
                f"audit: {where} does not follow the batch before it: the chain is broken "
                "(a batch or its origin before it was altered, inserted or removed)"
            )
        if count != batch.size:
            report.add(f"audit: {where} has {count} of its {batch.size} entries: some are missing")
        elif hasher.digest() != batch.digest:
            report.add(
                f"audit: the entries of {where} do not match its digest: an entry, or a "
                "device record its last entry left, was changed outside the register"
            )
        report.chained += count
        if batch.origin not in prints:
            prints[batch.origin] = audit.fingerprint(_origin(txn, imports, batch.origin))
        prev = audit.link(first, batch.pack(), prints[batch.origin])
        if prev.hex() == report.expect_head:
            report.expect_head = None  # passed through: the log only grew since
    report.audit_head = prev.hex()
    if report.expect_head is not None and report.expect_head != audit.GENESIS.hex():
        report.add(
            f"audit: the chain does not pass through the expected head "
            f"{report.expect_head[:16]}...: the log was rewritten or the wrong store"
        )


def _n(key: bytes) -> int:
    return int.from_bytes(key, "big")


def _origin(txn: Any, imports: Any, origin: int) -> dict[str, Any] | None:
    raw = None if imports is None else txn.get(origin.to_bytes(4, "big"), db=imports)
    try:
        return None if raw is None else dict(json.loads(raw))
    except ValueError:
        return None


# Checks beyond the tables' own values: fn(store, txn, report).
EXTRA_CHECKS: list[Callable[[Any, Any, Report], None]] = [_check_chain]


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the store at *path* exclusively, or raise StoreError if a process has it open.

    LMDB takes a shared lock on the first byte of ``lock.mdb`` in every process that
    opens the environment; nobody holds it iff the exclusive lock can be taken.
    """
    lock = path / _LOCK
    if not lock.exists():
        yield
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except OSError as exc:
            raise StoreError(
                f"store {path} is open in another process (is `ceir serve` running?); stop it first"
            ) from exc
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Copied:
    """What :func:`backup` wrote."""

    dest: Path
    bytes: int
    seconds: float
    report: Report


def backup(src: Path, dest: Path) -> Copied:
    """Write a compacted, consistent, verified copy of the store *src* to directory *dest*."""
    started = time.monotonic()
    if dest.exists() and any(dest.iterdir()):
        raise StoreError(f"backup destination {dest} exists and is not empty; choose a new one")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o700)
        report = _copy_into(src, tmp)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
        fsync_path(dest.parent)
    except OSError as exc:
        raise StoreError(f"cannot write the backup {dest}: {exc.strerror}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Copied(dest, (dest / _DATA).stat().st_size, time.monotonic() - started, report)


def _copy_into(src: Path, tmp: Path) -> Report:
    with open_store(src, readonly=True) as store:
        try:
            store.env.copy(str(tmp), compact=True)
        except lmdb.Error as exc:
            raise StoreError(f"cannot copy {src} to {tmp}: {exc}") from exc
    os.chmod(tmp / _DATA, 0o600)  # a copy of tokens of personal numbers: the owner's only
    fsync_path(tmp / _DATA)
    report = verify(tmp)
    if not report.ok:
        raise StoreError(f"the copy of {src} does not verify: {report.problems[0]}")
    (tmp / _LOCK).unlink(missing_ok=True)
    return report


def restore(src: Path, db: Path, *, force: bool = False) -> Report:
    """Replace the store *db* with the backup *src* (verified first); *db* must be closed.

    An existing store is kept beside it as ``<db>.replaced-<time>`` unless it is empty.
    """
    if src.exists() and not src.is_dir():
        raise StoreError(f"backup {src} is a file, not a backup directory (ceir backup makes one)")
    report = verify(src)
    if not report.ok:
        raise StoreError(f"backup {src} does not verify: {report.problems[0]}")
    if db.exists() and not db.is_dir():
        raise StoreError(f"{db} is a file, not a store directory: give --db a directory")
    if (db / _DATA).exists() and not force:
        raise StoreError(f"store {db} exists; pass --force to replace it (it is kept aside)")
    tmp = db.with_name(f".{db.name}.restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o700)
        fd = os.open(tmp / _DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(src / _DATA, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        fsync_path(tmp / _DATA)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot restore into {db}: {exc.strerror}") from exc
    # The copy is what will be served: verify it, not only the source it came from.
    copied = verify(tmp)
    (tmp / _LOCK).unlink(missing_ok=True)
    if not copied.ok:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"the restored copy of {src} does not verify: {copied.problems[0]}")
    try:
        with exclusive(db):
            if db.exists():
                db.rename(db.with_name(f"{db.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"))
            tmp.rename(db)
        fsync_path(db.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot restore into {db}: {exc.strerror}") from exc
    return report


def fsync_path(path: Path) -> None:
    """Sync a file or directory (a rename is durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "SCHEMA_VERSION",
    "Copied",
    "Report",
    "backup",
    "exclusive",
    "fsync_path",
    "restore",
    "verify",
]
