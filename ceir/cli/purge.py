"""``ceir purge``: delete expired temporaries, old identity tokens and rejects, expired stages."""

from __future__ import annotations

from pathlib import Path

import click

from ceir.cli._paths import create_option, require_store
from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.config import (
    DEFAULT_DB,
    DEFAULT_IDENTITY_DAYS,
    DEFAULT_OBSERVATION_DAYS,
    DEFAULT_REJECTS_DAYS,
    DEFAULT_TEMPORARY_DAYS,
)
from ceir.errors import CeirError


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    help="Store directory (it may be served meanwhile).",
)
@create_option
@click.option(
    "--temporary-days",
    type=click.IntRange(0),
    default=DEFAULT_TEMPORARY_DAYS,
    help="Days after a temporary (visitor) registration ended before it is deleted.",
)
@click.option(
    "--identity-days",
    type=click.IntRange(1),
    default=DEFAULT_IDENTITY_DAYS,
    help="Days after an arrival before its identity token is deleted (keep it at least as "
    "long as the customs cooldown).",
)
@click.option(
    "--rejects-days",
    type=click.IntRange(0),
    default=DEFAULT_REJECTS_DAYS,
    help="Days after an import before its rejected rows (the rejects table) are deleted.",
)
@click.option(
    "--observation-days",
    type=click.IntRange(1),
    default=DEFAULT_OBSERVATION_DAYS,
    help="Days after a SIM was last seen with a device before that sighting (a token; at a "
    "replica also its sealed IMSI) is deleted.",
)
def purge(
    db: Path,
    create: bool,
    temporary_days: int,
    identity_days: int,
    rejects_days: int,
    observation_days: int,
) -> None:
    """Remove personal data past retention; record what was removed in the audit log.

    Deletes temporary registrations that ended more than --temporary-days ago (their
    passport tokens with them), identity tokens of arrivals older than --identity-days,
    the rejected rows of imports older than --rejects-days, sightings of SIMs last seen
    more than --observation-days ago, and expired stages. The audit
    log gets the counts and one PURGE entry per device, never a personal number or token.
    """
    import time

    from ceir.clones.retention import purge_sightings
    from ceir.feeds.retention import purge as run
    from ceir.store import open_store
    from ceir.store.audit import local_actor

    try:
        require_store(db, create=create)
        with open_store(db) as store:
            purged = run(
                store,
                actor=local_actor(),
                temporary_days=temporary_days,
                identity_days=identity_days,
                rejects_days=rejects_days,
            )
            sightings = purge_sightings(store, now=int(time.time()), days=observation_days)
    except CeirError as exc:
        fail(exc)
    click.echo(purged.line())
    click.echo(sightings.line())
