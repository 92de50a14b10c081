"""``ceir clones``: suspected clones, their pairs, and a principal's reversals."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.clones.conditions import DEFAULT_GRACE_DAYS
from ceir.config import DEFAULT_DB
from ceir.errors import CeirError

_DB = click.option(
    "--db",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DB,
    show_default=True,
    help="Store directory (it may be served meanwhile).",
)
_IMEI = click.option("--imei", required=True, help="The device's IMEI (14, 15 or 16 digits).")


def _sim_options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option(
        "--operator",
        default="",
        metavar="MCC-MNC",
        help="With --token: the operator whose site made the token with its own key.",
    )(fn)
    fn = click.option(
        "--token", help="The SIM as an operator site's token (`ceir clones token` there)."
    )(fn)
    return click.option("--imsi", help="The SIM's IMSI (tokenised at once, never stored).")(fn)


@main.group(epilog=EPILOG, context_settings=CONTEXT)
def clones() -> None:
    """Suspected clones (one IMEI on several SIMs): list them, pair a SIM, clear a device.

    A local command acts as the site's admin; each change is audited (``ceir audit``) and
    reaches the replicas through the change log.
    """


def _key(imei: str) -> bytes:
    from ceir.imei import parse

    return parse(imei).key


def _pairing(
    db: Path, imei: str, imsi: str | None, token: str | None, operator: str, *, remove: bool
) -> None:
    from ceir.clones.actions import SimRef, pair
    from ceir.security.principals import Role
    from ceir.store import open_store
    from ceir.store.audit import local_actor
    from ceir.store.identity import tokenizer_for

    try:
        key = _key(imei)
        with open_store(db) as store:
            sim = SimRef.of(tokenizer_for(store), imsi=imsi, token=token, operator=operator)
            done = pair(
                store,
                key,
                sim,
                actor=local_actor(),
                role=Role.ADMIN,
                now=int(time.time()),
                remove=remove,
            )
    except CeirError as exc:
        fail(exc)
    verb = "unpaired" if remove else "paired"
    click.echo(
        f"{verb}" if done else f"nothing to do: the SIM was {'not ' if remove else ''}a pair"
    )


@clones.command("pair", epilog=EPILOG, context_settings=CONTEXT)
@_DB
@_IMEI
@_sim_options
def pair_command(db: Path, imei: str, imsi: str | None, token: str | None, operator: str) -> None:
    """Pair a SIM with a device (its owner proved ownership): it stays WHITELISTED."""
    _pairing(db, imei, imsi, token, operator, remove=False)


@clones.command("unpair", epilog=EPILOG, context_settings=CONTEXT)
@_DB
@_IMEI
@_sim_options
def unpair_command(db: Path, imei: str, imsi: str | None, token: str | None, operator: str) -> None:
    """Undo a pair: the SIM gets the device's clone answer again."""
    _pairing(db, imei, imsi, token, operator, remove=True)


@clones.command("clear", epilog=EPILOG, context_settings=CONTEXT)
@_DB
@_IMEI
def clear_command(db: Path, imei: str) -> None:
    """Clear a suspected clone: answers no longer depend on the SIM (undo: greylist)."""
    from ceir.clones.actions import clear
    from ceir.security.principals import Role
    from ceir.store import open_store
    from ceir.store.audit import local_actor

    try:
        key = _key(imei)
        with open_store(db) as store:
            done = clear(store, key, actor=local_actor(), role=Role.ADMIN, now=int(time.time()))
    except CeirError as exc:
        fail(exc)
    click.echo("cleared" if done else "nothing to do: the device is not flagged")


@clones.command("greylist", epilog=EPILOG, context_settings=CONTEXT)
@_DB
@_IMEI
@click.option(
    "--grace-days",
    type=click.IntRange(0),
    default=DEFAULT_GRACE_DAYS,
    show_default=True,
    help="Days before it is BLACKLISTED for every SIM but its pairs.",
)
def greylist_command(db: Path, imei: str, grace_days: int) -> None:
    """Greylist a device by hand (undoes clear): GREYLISTED / DUPLICATE but for its pairs."""
    from ceir.clones.actions import greylist
    from ceir.security.principals import Role
    from ceir.store import open_store
    from ceir.store.audit import local_actor

    try:
        key = _key(imei)
        with open_store(db) as store:
            done = greylist(
                store,
                key,
                actor=local_actor(),
                role=Role.ADMIN,
                now=int(time.time()),
                grace_days=grace_days,
            )
    except CeirError as exc:
        fail(exc)
    click.echo("greylisted" if done else "nothing to do: the device is flagged already")


@clones.command("token", epilog=EPILOG, context_settings=CONTEXT)
@_DB
@click.option("--imsi", required=True, help="The SIM's IMSI.")
def token_command(db: Path, imsi: str) -> None:
    """Print this site's token of a SIM (an operator sends it, not the IMSI, to pair)."""
    from ceir.clones.actions import SimRef
    from ceir.store import open_store
    from ceir.store.identity import tokenizer_for

    try:
        with open_store(db, readonly=True) as store:
            sim = SimRef.of(tokenizer_for(store), imsi=imsi)
    except CeirError as exc:
        fail(exc)
    click.echo("tok_" + sim.token.hex())


@clones.command("list", epilog=EPILOG, context_settings=CONTEXT)
@_DB
def list_command(db: Path) -> None:
    """Every device with a clone state: IMEI body, state, conditions, block date, pairs."""
    from ceir.store import clones as table
    from ceir.store import open_store

    try:
        with open_store(db, readonly=True) as store:
            pairs: dict[bytes, int] = {}
            for p in table.iter_pairs(store):
                pairs[p.key] = pairs.get(p.key, 0) + 1
            for c in table.iter_clones(store):
                body = f"{int.from_bytes(c.key, 'big'):014d}"
                conditions = "|".join(c.conditions) or "-"
                click.echo(
                    f"{body} {c.state.name} {conditions} {c.block_date or '-'} "
                    f"{pairs.get(c.key, 0)} pair(s)"
                )
    except CeirError as exc:
        fail(exc)
