"""``ceir backup``, ``ceir restore``, ``ceir verify``, ``ceir compact``: copies, checks
and compaction of a store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ceir.cli._client import ClientAuth, auth_from, call_failed, client_options
from ceir.cli.app import CONTEXT, EPILOG, EXIT_REFUSED, EXIT_STORE, fail, main
from ceir.config import DEFAULT_DB
from ceir.errors import CeirError, StoreError

_DB = click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="Store directory (LMDB).",
)


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("dest", type=click.Path(path_type=Path))
@_DB
def backup(dest: Path, db: Path) -> None:
    """Write a consistent, compacted, verified copy of the store to DEST.

    Safe while `ceir serve` and imports run: the copy is one committed state.
    """
    from ceir.store.backup import backup as run

    try:
        copied = run(db, dest)
    except CeirError as exc:
        fail(exc)
    tables = ", ".join(f"{n} {c:,}" for n, c in sorted(copied.report.tables.items()))
    click.echo(
        f"backup of {db} written to {copied.dest}: {copied.bytes:,} bytes in "
        f"{copied.seconds:.2f} s; verified ({tables})"
    )


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@_DB
def compact(db: Path) -> None:
    """Shrink the store's file to its live size and pack its hot table (stop `ceir serve`
    and imports first).

    Rewrites the devices table in key order (every page full), writes a compacted copy
    beside the store (free pages dropped; needs free disk for it), checks it holds every
    entry, and renames it into place. Exits 0 when done; 5 when the store is missing,
    damaged or open in another process, or was written meanwhile: then nothing changed.
    """
    from ceir.store.compact import compact as run

    try:
        done = run(db)
    except CeirError as exc:
        fail(exc)
    per = max(done.devices, 1)
    click.echo(
        f"compacted {db}: file {done.file_before:,} -> {done.file_after:,} bytes "
        f"({done.file_before / per:,.0f} -> {done.file_after / per:,.0f} B/device), hot table "
        f"{done.hot_before / per:.1f} -> {done.hot_after / per:.1f} B/device, "
        f"{done.devices:,} devices, {done.seconds:.2f} s"
    )


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("src", type=click.Path(path_type=Path))
@_DB
@click.option("--force", is_flag=True, help="Replace an existing store (it is kept aside).")
def restore(src: Path, db: Path, force: bool) -> None:
    """Put the backup SRC in place of the store (stop `ceir serve` first)."""
    from ceir.store.backup import restore as run

    try:
        report = run(src, db, force=force)
    except CeirError as exc:
        fail(exc)
    click.echo(f"restored {src} to {db}: {report.tables.get('devices', 0):,} devices")


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@_DB
@click.option(
    "--compare",
    metavar="HOST:PORT",
    help="Instead: compare the hot table, range by range, with the ceir server there "
    "(a replica with its central) at the same change sequence.",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=30.0,
    help="With --compare: seconds to wait for both copies to stand at one sequence.",
)
@click.option(
    "--expect-head",
    metavar="HASH",
    help="The audit chain's head hash recorded earlier (printed by a previous verify): "
    "exit 5 unless the log still ends there or has only grown past it.",
)
@client_options
def verify(
    db: Path,
    compare: str | None,
    wait: float,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
    expect_head: str | None,
) -> None:
    """Check a store's integrity and schema: every table walked, every value decoded,
    the audit chain followed; print the chain's head hash (keep it elsewhere).

    Exits 0 when the store is sound, 5 with the problems listed when it is not. With
    --compare, exits 0 when every range's digest matches the other server's and 1,
    naming the ranges that differ, when one does not.
    """
    if compare is not None:
        _compare(db, compare, wait, auth_from(ca, cert, key, token))
        return
    from ceir.store import exists
    from ceir.store.backup import verify as run

    if not exists(db):  # nothing to walk: one line, as every command says it
        if db.exists() and not db.is_dir():
            fail(StoreError(f"{db} is a file, not a store directory: give --db a directory"))
        fail(StoreError(f"no ceir store at {db}; check --db"))
    report = run(db, expect_head=expect_head)
    for name, count in sorted(report.tables.items()):
        click.echo(f"{name:<12}{count:>14,}")
    click.echo(f"audit chain: {report.chained:,} entries linked; head {report.audit_head}")
    if report.ok:
        click.echo(f"{db}: ok")
        return
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    click.echo(f"{db}: {len(report.problems)} problem(s)", err=True)
    sys.exit(EXIT_STORE)


def _compare(db: Path, address: str, wait: float, auth: ClientAuth) -> None:
    import grpc

    from ceir.replication.verify import RangeDigest, compare
    from ceir.store import open_store
    from ceir.v1 import replication_pb2, replication_pb2_grpc

    def remote() -> tuple[int, list[RangeDigest]]:
        with auth.channel(address) as channel:
            stub = replication_pb2_grpc.ReplicationStub(channel)
            reply = stub.Digest(
                replication_pb2.DigestRequest(), metadata=auth.metadata, timeout=600
            )
        return reply.sequence, [(r.range, r.count, r.sha256) for r in reply.ranges]

    try:
        with open_store(db, readonly=True) as store:
            found = compare(store, remote, wait=wait)
    except grpc.RpcError as exc:
        call_failed(exc, address)
    except CeirError as exc:
        fail(exc)
    if not found.differ:
        click.echo(
            f"{db} = {address} at change {found.sequence:,}: {found.ranges} ranges, "
            f"{found.rows:,} rows, every digest equal"
        )
        return
    for name, here, there in found.differ:
        click.echo(f"differs: {name} ({here:,} rows here, {there:,} there)")
    click.echo(
        f"{db} != {address} at change {found.sequence:,}: {len(found.differ)} of "
        f"{found.ranges} ranges differ",
        err=True,
    )
    sys.exit(EXIT_REFUSED)
