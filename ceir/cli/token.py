"""``ceir token``: bearer tokens for principals, stored hashed in a file."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.config import DEFAULT_TOKENS
from ceir.errors import CeirError
from ceir.security.principals import Role

_FILE = click.option(
    "--tokens",
    "path",
    envvar="CEIR_TOKENS",  # the same file `ceir serve --tokens` reads
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_TOKENS,
    show_default=True,
    help="Token file (ceir serve reads it).",
)


@main.group(epilog=EPILOG, context_settings=CONTEXT)
def token() -> None:
    """Create, list and revoke bearer tokens (clients send `authorization: Bearer TOKEN`)."""


@token.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="What the principal may do.",
)
@click.option(
    "--operator",
    "operator_id",
    envvar="CEIR_OPERATOR",
    default="",
    help="MCC-MNC of an operator, e.g. 510-10.",
)
@click.option(
    "--person",
    default="",
    help="Who the token belongs to (a staff id); two tokens of one person cannot stage "
    "and approve each other's imports.  [default: NAME]",
)
@_FILE
def add(name: str, role: str, operator_id: str, person: str, path: Path) -> None:
    """Create a token for principal NAME and print it once (only its hash is kept).

    A running server reads the file at start and on SIGHUP (`kill -HUP PID`).
    """
    from ceir.security.tokens import TokenBook

    try:
        book, secret = TokenBook.load(path).add(name, Role(role), operator_id, person)
        book.save(path)
    except CeirError as exc:
        fail(exc)
    click.echo(secret)


@token.command(name="list", epilog=EPILOG, context_settings=CONTEXT)
@_FILE
def list_(path: Path) -> None:
    """List the principals that have a token (never the tokens)."""
    from ceir.security.tokens import TokenBook

    try:
        book = TokenBook.load(path)
    except CeirError as exc:
        fail(exc)
    for e in book.entries:
        created = time.strftime("%Y-%m-%d", time.gmtime(e.created_at))
        click.echo(f"{e.principal.name}\t{e.principal.label}\t{created}")


@token.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("name")
@_FILE
def revoke(name: str, path: Path) -> None:
    """Remove NAME's token; a running server refuses it after SIGHUP (`kill -HUP PID`)."""
    from ceir.security.tokens import TokenBook

    try:
        TokenBook.load(path).revoke(name).save(path)
    except CeirError as exc:
        fail(exc)
    click.echo(f"revoked {name}")
