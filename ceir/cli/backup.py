"""``ceir backup``, ``ceir restore``, ``ceir verify``: copies and checks of a store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ceir.cli.app import CONTEXT, EPILOG, EXIT_STORE, fail, main
from ceir.config import DEFAULT_DB
from ceir.errors import CeirError

_DB = click.option(
    "--db",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DB,
    show_default=True,
    help="Store directory (LMDB).",
)


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
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
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
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
def verify(db: Path) -> None:
    """Check a store's integrity and schema: every table walked, every value decoded.

    Exits 0 when the store is sound, 5 with the problems listed when it is not.
    """
    from ceir.store.backup import verify as run

    report = run(db)
    for name, count in sorted(report.tables.items()):
        click.echo(f"{name:<12}{count:>14,}")
    if report.ok:
        click.echo(f"{db}: ok")
        return
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    click.echo(f"{db}: {len(report.problems)} problem(s)", err=True)
    sys.exit(EXIT_STORE)
