"""The LMDB layer: layout, codecs and transactions.

Layout (named sub-databases of one LMDB environment, a directory):

``devices``
    8-byte big-endian IMEI body key -> 12-byte :class:`~ceir.record.Record`. The hot table.
``tacs``
    8 ASCII digits -> ``brand \\x1f model \\x1f device_type`` (UTF-8).
``meta``
    ``schema`` -> the layout version; a store of another version is refused.

Registry sub-databases (written by the feeds; see :mod:`ceir.store.audit`,
:mod:`ceir.store.identity`, :mod:`ceir.feeds.importer`). Lookups never read them, so the
hot record stays 12 bytes:

``details``
    device key + 1-byte feed kind -> that channel's fields (``\x1f``-joined UTF-8;
    personal numbers only as tokens), the leading fields many devices share as an id;
    the value a device's creation wrote also keeps that change's audit entry.
``shapes``
    those shared leading fields, once each, by id (and their hash -> id).
``audit``
    device key + 8-byte big-endian sequence number -> one change (append-only).
``audit_links``
    first sequence number of a batch of changes -> what they share (origin, time),
    their digest and the link of the batch before (the hash chain).
``imports``
    4-byte big-endian origin id -> JSON: one file import or one request, its principal,
    progress and summary.
``digests``
    SHA-256 of a feed file -> its origin id (re-imports are no-ops).
``identities``
    16-byte identity token + 4-byte day number -> devices registered for that arrival.
``rejects``
    origin id + 4-byte row number -> JSON reject (no personal data).
``config``
    store-wide settings and secrets (the token key).
``stages``
    bulk imports waiting for a second principal's approval (:mod:`ceir.feeds.staging`).
``changes``
    8-byte sequence -> one change-log entry: what replicas apply (:mod:`ceir.store.changes`).
``replica``
    on a replica: the applied sequence and the head it heard of (:mod:`ceir.store.replica`).
``volume``
    hourly counts of writes per channel and per principal, the last 24 hours only
    (:mod:`ceir.feeds.volume`).
``lists``
    the operators' list exports: one record per run and a compressed snapshot of each
    list it wrote, so a later run can write the delta (:mod:`ceir.store.lists`).
``observations``, ``clones``, ``pairs``, ``imsi_vault``, ``outbox``
    the clone detector's: SIMs seen per device, clone states, pairs, and at a replica its
    own SIMs' IMSIs sealed under ``<db>.site-key`` and its unsent upstream messages.

Adding these to an older store needs no migration: they are created on the first
writable open, and a read-only open of a store without them sees them as empty.

Files: the store's directory is 0700 and its files 0600 (a store holds tokens of personal
numbers). Its ``spool/`` sub-directory (0700) holds the bytes of uploads and decrypted
stages while they are imported, in files that have no name (``O_TMPFILE``) or lose it as
soon as they are open; whatever a killed process left there is wiped by the next writable
open. Keys are never inside the directory: ``<db>.token-key`` and ``<db>.stage-key`` lie
beside it and are backed up apart from it.

Reads use one read transaction per request or batch and never write. Writes go in
sorted batches, one write transaction each. The map grows by itself: nobody sees
``MapFullError``; readers in other processes follow a grown map transparently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import lmdb

from ceir.errors import StoreError, StoreSchemaError
from ceir.record import Record
from ceir.store import changes
from ceir.store._writer import Writer
from ceir.store.tables import Tables, TacInfo

__all__ = [
    "LMDB_VERSION",
    "SCHEMA_VERSION",
    "Store",
    "TacInfo",
    "Usage",
    "check_file",
    "exists",
    "open_store",
    "spool_file",
    "spool_path",
]

log = logging.getLogger("ceir.store")

LMDB_VERSION: str = lmdb.__version__
"""The py-lmdb release, for benchmark reports (nobody else imports lmdb)."""
SCHEMA_VERSION = 3
"""3: a device's creation keeps its audit entry in its ``details`` value, change-log
bodies of device puts compressed; 2: audit keyed by device, one hash-chain link per
batch (``audit_links``), shared details fields once (``shapes``); 1 had ``audit`` by
sequence number and ``audit_idx``."""
_SCHEMA_KEY = b"schema"
_CREATED_KEY = b"created_at"
SPOOL = "spool"
_FILES = ("data.mdb", "lock.mdb")
# Address space only (the file grows with the data). 1 TiB, so that a register of
# billions of devices never has to grow the map in a serving process: LMDB remaps on a
# grow, which is unsafe while other threads of the process are inside read transactions
# (the Registry service imports in a worker thread while lookups run).
_INITIAL_MAP = 1 << 40
_MAX_DBS = 32
# name -> dupsort. Opened (created) with the store; see the module docstring.
REGISTRY_DBS: dict[str, bool] = {
    "details": False,
    "shapes": False,
    "audit": False,
    "audit_links": False,
    "imports": False,
    "digests": False,
    "identities": False,
    "rejects": False,
    "config": False,
    "stages": False,  # bulk imports waiting for a second principal (ceir.feeds.staging)
    "changes": False,  # the change log replicas follow (ceir.store.changes)
    "replica": False,  # a replica's position in that log (ceir.store.replica)
    "volume": False,  # rolling 24-hour write counts (ceir.feeds.volume)
    "lists": False,  # list-export runs and their snapshots (ceir.store.lists)
    # the clone detector's (ceir.store.clonetables)
    "observations": False,
    "clones": False,
    "pairs": False,
    "imsi_vault": False,
    "outbox": False,
}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reads:
    """The hot path's view of ``devices``: ``get(key)`` -> packed record or None."""

    get: Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class Usage:
    """A store's size: its data file, its map (address space), the share in use."""

    file_bytes: int
    map_bytes: int
    used_ratio: float
    devices: int


class Store:
    """An open ceir store. Make one with :func:`open_store`; close it when done."""

    def __init__(
        self, env: Any, path: Path, *, readonly: bool, durable: bool = True, metasync: bool = True
    ) -> None:
        self.env = env
        self.path = path
        self.readonly = readonly
        self.durable = durable
        self.metasync = metasync
        self.writer = Writer(env, path, readonly=readonly)
        self.devices = env.open_db(b"devices", create=not readonly)
        self.tacs = env.open_db(b"tacs", create=not readonly)
        self.meta = env.open_db(b"meta", create=not readonly)
        self.dbs: dict[str, Any] = {}
        for name, dupsort in REGISTRY_DBS.items():
            try:
                self.dbs[name] = env.open_db(
                    name.encode(), create=not readonly, dupsort=dupsort, dupfixed=dupsort
                )
            except lmdb.NotFoundError:
                self.dbs[name] = None  # an older read-only store: nothing recorded yet

    # -- process life ------------------------------------------------------------

    def close(self) -> None:
        if not self.readonly and not (self.durable and self.metasync):
            try:
                self.env.sync(True)
                if not self.durable:
                    (self.path / UNSYNCED).unlink(missing_ok=True)
            except (lmdb.Error, OSError) as exc:
                log.warning("cannot sync store %s on close: %s", self.path, exc)
        self.writer.close()
        self.env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Reads]:
        """The hot path's read transaction on ``devices``: ``reads.get(key)`` -> the packed
        record or None (keep the bound ``get`` for a batch)."""
        with self._reading(self.devices) as txn:
            yield Reads(txn.get)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Tables]:
        """Every table, viewed through one read transaction."""
        with self._reading(None) as txn:
            yield Tables(txn, self.devices, self.tacs, self.dbs)

    @contextlib.contextmanager
    def _reading(self, db: Any) -> Iterator[Any]:
        """A read transaction; any LMDB failure inside the block becomes StoreError."""
        try:
            txn = self._begin_read(db)
        except lmdb.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        try:
            yield txn
        except lmdb.Error as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        finally:
            with contextlib.suppress(lmdb.Error):
                txn.abort()

    def _begin_read(self, db: Any) -> Any:
        try:
            return self.env.begin(db=db, buffers=False)
        except lmdb.MapResizedError:
            # Another process grew the map; adopt its size and go on.
            self.env.set_mapsize(0)
            return self.env.begin(db=db, buffers=False)

    def get(self, key: bytes) -> Record | None:
        """The record stored under an 8-byte body key, or None."""
        with self.read() as reads:
            value = reads.get(key)
        return None if value is None else Record.unpack(value)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Packed records for *keys*, in order, from one read transaction."""
        with self.read() as reads:
            get = reads.get
            return [get(k) for k in keys]

    def device_count(self) -> int:
        """How many devices the register holds."""
        with self.snapshot() as tables:
            return tables.devices.count()

    def usage(self) -> Usage:
        """How big the store is and how much of its map it uses (for /metrics)."""
        try:
            info = self.env.info()
            page = int(self.env.stat()["psize"])
            file_bytes = (self.path / "data.mdb").stat().st_size
        except (lmdb.Error, OSError) as exc:
            raise StoreError(f"cannot read the size of store {self.path}: {exc}") from exc
        map_bytes = int(info["map_size"])
        used = (int(info["last_pgno"]) + 1) * page
        return Usage(file_bytes, map_bytes, used / map_bytes, self.device_count())

    def iter_devices(self) -> Iterator[tuple[bytes, Record]]:
        """Every (key, record) in key order, from one read transaction."""
        with self.snapshot() as tables:
            yield from tables.devices.items()

    def tac(self, tac: str) -> TacInfo | None:
        """The TAC database entry for an 8-digit TAC, or None."""
        with self.snapshot() as tables:
            return tables.tacs.get(tac)

    def table_bytes(self) -> dict[str, int]:
        """Bytes of the pages each table uses, by name (``devices``, ``tacs``, ``meta`` and
        the registry tables): what a device costs where (issue 12's hot/registry split)."""
        with self._reading(None) as txn:
            named = {"devices": self.devices, "tacs": self.tacs, "meta": self.meta, **self.dbs}
            page = int(self.env.stat()["psize"])
            out = {}
            for name, db in named.items():
                st = txn.stat(db) if db else {}
                pages = sum(st.get(k, 0) for k in ("branch_pages", "leaf_pages", "overflow_pages"))
                out[name] = int(pages) * page
            return out

    def used_bytes(self) -> int:
        """Bytes of the pages the store's tables use (the file also holds free pages)."""
        with self._reading(None) as txn:
            tables = [self.devices, self.tacs, self.meta, *(d for d in self.dbs.values() if d)]
            total = 0
            for db in tables:
                st = txn.stat(db)
                total += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            main = txn.stat()  # the main database: the table of tables
            total += main["branch_pages"] + main["leaf_pages"]
            return int(total) * int(self.env.stat()["psize"])

    def dump(self, *, skip: frozenset[str] = frozenset()) -> dict[str, list[tuple[bytes, bytes]]]:
        """Every table's raw (key, value) pairs by table name, but those in *skip*: for
        comparing two states of a store (tests, checks), not for serving."""
        with self._reading(None) as txn:
            named = {"devices": self.devices, "tacs": self.tacs, **self.dbs}
            return {
                name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db)] if db else []
                for name, db in named.items()
                if name not in skip
            }

    def tac_count(self) -> int:
        with self.snapshot() as tables:
            return tables.tacs.count()

    # -- writes --------------------------------------------------------------------

    def write(self, fn: Callable[[Tables], T]) -> T:
        """Run *fn(tables)* in one write transaction, growing the map if it fills.

        *fn* may run more than once (after a grow), so it must only write through *tables*.
        """
        return self._write_txn(lambda txn: fn(Tables(txn, self.devices, self.tacs, self.dbs)))

    def _write_txn(self, fn: Callable[[Any], T]) -> T:
        return self.writer.run(fn)  # writers take turns (ceir.store._writer)

    def put_devices(self, items: Iterable[tuple[bytes, Record]]) -> int:
        """Store records in one write transaction, sorted by key; returns how many."""
        pairs = {key: record.pack() for key, record in items}

        def put(tables: Tables) -> int:
            tables.devices.put(pairs)
            changes.record(tables, devices=sorted(pairs.items()))
            return len(pairs)

        return self.write(put)

    def put_tacs(self, entries: Iterable[TacInfo]) -> int:
        """Store TAC database entries in one write transaction; returns how many."""
        pairs = [(e.tac.encode(), e.pack()) for e in entries]

        def put(tables: Tables) -> int:
            tables.tacs.put(pairs)
            changes.record(tables, tacs=sorted(pairs))
            return len(pairs)

        return self.write(put)


def _schema_error(path: Path, found: bytes) -> StoreSchemaError:
    if found in (b"1", b"2"):  # older layouts of the registry (no conversion in place)
        how = (
            "Keep serving it with the ceir release that wrote it, or import its feed files "
            "again into a new store (--db) with this one."
        )
    else:
        how = "Use a matching ceir release or a new store path."
    return StoreSchemaError(
        f"store {path} has schema version {found.decode(errors='replace')!r}; "
        f"this ceir reads version {SCHEMA_VERSION}. {how}"
    )


def _refuse_other_schema(env: Any, path: Path) -> None:
    """Raise StoreSchemaError if the store records a schema version other than this one."""
    try:
        with env.begin(buffers=False) as txn:
            meta = env.open_db(b"meta", txn=txn, create=False)
            found = txn.get(_SCHEMA_KEY, db=meta)
    except lmdb.NotFoundError:
        return  # a new store
    if found is not None and found != str(SCHEMA_VERSION).encode():
        raise _schema_error(path, found)


def _check_schema(store: Store) -> None:
    with store._reading(store.meta) as txn:
        found = txn.get(_SCHEMA_KEY)
    if found is None:
        if store.readonly:
            raise StoreSchemaError(f"{store.path} is not a ceir store (no schema version)")

        def init(txn: Any) -> None:
            txn.put(_SCHEMA_KEY, str(SCHEMA_VERSION).encode(), db=store.meta)
            txn.put(_CREATED_KEY, str(int(time.time())).encode(), db=store.meta)

        store._write_txn(init)
        return
    if found != str(SCHEMA_VERSION).encode():
        raise _schema_error(store.path, found)


def _make_private(path: Path) -> None:
    """The store directory 0700, its files 0600, its spool empty (a writable open)."""
    try:
        os.chmod(path, 0o700)
        for name in _FILES:
            if (path / name).exists():
                os.chmod(path / name, 0o600)
        spool = path / SPOOL
        spool.mkdir(mode=0o700, exist_ok=True)
        os.chmod(spool, 0o700)
        for left in spool.iterdir():
            if left.is_file() or left.is_symlink():
                left.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make store {path} private: {exc.strerror}") from exc


def spool_file(store: Store) -> IO[bytes]:
    """A new, empty, nameless file in the store's spool (read and write, 0600).

    It has no name from the start where the file system allows (``O_TMPFILE``), else it
    is unlinked as soon as it is open: nothing of it survives the process. Open it again
    by :func:`spool_path` (each open reads from the start).
    """
    spool = store.path / SPOOL
    if not spool.is_dir():
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    flag = getattr(os, "O_TMPFILE", 0)
    if flag:
        try:
            fd = os.open(spool, flag | os.O_RDWR, 0o600)
            return os.fdopen(fd, "w+b")
        except OSError:
            pass  # a file system without O_TMPFILE: a named file, unlinked at once
    fd, name = tempfile.mkstemp(prefix="ceir-", dir=spool)
    os.unlink(name)
    return os.fdopen(fd, "w+b")


def spool_path(f: IO[bytes]) -> Path:
    """A path that opens *f*'s file again (Linux ``/proc/self/fd``)."""
    return Path(f"/proc/self/fd/{f.fileno()}")


_DATA = "data.mdb"
_MAGIC = 0xBEEFC0DE
_META = struct.Struct("<16xIIQQI92xQQ")  # page header, magic, version, address, mapsize,
# free-db page size, rest of the two db records, last page, txn id (LMDB 0.9, 64-bit)


def check_file(path: Path) -> str | None:
    """A problem with ``data.mdb``'s size or meta pages, or None.

    LMDB maps the file: reading a page past a truncated end kills the process (SIGBUS),
    so the size the newest meta page claims is checked before the file is opened. It
    reads the two meta pages only, so every open can afford it.
    """
    data = path / _DATA
    try:
        size = data.stat().st_size
        with data.open("rb") as f:
            first = f.read(_META.size)
            if len(first) < _META.size:
                return f"{data} is {size} bytes: too short for an LMDB file"
            page = _META.unpack(first)[4]
            if page < 512 or page & (page - 1):
                return f"{data} is not an LMDB file (page size {page})"
            f.seek(page)
            second = f.read(_META.size)
    except OSError as exc:
        return f"cannot read {data}: {exc.strerror}"
    metas = [_META.unpack(b) for b in (first, second) if len(b) == _META.size]
    valid = [m for m in metas if m[0] == _MAGIC]
    if not valid:
        return f"{data} is not an LMDB file (bad magic)"
    newest = max(valid, key=lambda m: m[6])
    needed = (newest[5] + 1) * page
    if size < needed:
        return f"{data} is truncated: its last page ends at byte {needed:,}, the file at {size:,}"
    return None


def exists(path: str | Path) -> bool:
    """Whether *path* holds a store (its data file), sound or not."""
    return (Path(path) / _DATA).exists()


UNSYNCED = "unsynced"
"""In the directory of a store opened with ``durable=False``: the boot id of the system
that is writing it without fsync (removed once a clean close has synced it)."""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _not_durable(path: Path) -> None:
    """Before a store is opened without fsync: if a system that has since gone down (its
    marker names another boot) wrote it so, its last commits may be lost or torn — discard
    it; then mark it as written without fsync by this boot (the marker itself durable)."""
    marker = path / UNSYNCED
    boot = _boot_id()
    try:
        found = marker.read_text().strip() if marker.exists() else None
        if found is not None and (found != boot or not boot):
            log.warning(
                "store %s was written without fsync by a system that went down since; "
                "discarding it (a replica bootstraps again)",
                path,
            )
            for name in _FILES:
                (path / name).unlink(missing_ok=True)
            found = None
        if found is None:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, boot.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            dir_fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise StoreError(f"cannot mark store {path} as written without fsync: {exc}") from exc


def open_store(
    path: str | Path, *, readonly: bool = False, durable: bool = True, metasync: bool = True
) -> Store:
    """Open (and, unless *readonly*, create) the store at directory *path*.

    The data file is checked before it is mapped (:func:`check_file`): a truncated or
    foreign file is a :class:`StoreError`, never a SIGBUS later.

    ``durable=False`` is for a replica's store only: commits skip fsync (LMDB
    ``MDB_NOSYNC``). A killed process loses nothing (its writes are in the kernel's page
    cache); a system crash may lose or tear the last commits, so a store found written
    that way by an earlier boot is discarded and the replica bootstraps again from the
    central's snapshot. A clean close syncs it.

    ``metasync=False`` (a served import's process): one fsync a commit, not two (LMDB
    ``MDB_NOMETASYNC``); a system crash may undo the last commit, never tear it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a store directory: give --db a directory")
    if not readonly:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {path}: {exc.strerror}") from exc
    elif not exists(path):
        raise StoreError(f"no ceir store at {path}")
    if not durable and not readonly:
        _not_durable(path)
    if exists(path):
        problem = check_file(path)
        if problem is not None:
            raise StoreError(
                f"{problem}; the store is damaged (`ceir verify --db {path}` lists the "
                "problems; restore a backup)"
            )
    try:
        env = lmdb.open(
            str(path),
            map_size=_INITIAL_MAP,
            max_dbs=_MAX_DBS,
            max_readers=1024,
            readonly=readonly,
            readahead=False,  # lookups are random; readahead only evicts hot pages
            sync=durable,
            metasync=metasync,
            subdir=True,
            mode=0o600,
        )
    except lmdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    try:
        _refuse_other_schema(env, path)  # before a writable open adds this version's tables
        store = Store(env, path, readonly=readonly, durable=durable, metasync=metasync)
        _check_schema(store)
    except lmdb.Error as exc:
        env.close()
        raise StoreError(f"cannot open store {path}: {exc}") from exc
    except StoreError:
        env.close()
        raise
    if not readonly:
        _make_private(path)  # the files LMDB just created
    return store
