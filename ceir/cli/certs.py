"""``ceir certs``: a development CA, a server certificate and one client per demo principal."""

from __future__ import annotations

from pathlib import Path

import click

from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.errors import CeirError


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument(
    "directory", type=click.Path(path_type=Path, file_okay=False), default=Path("var/certs")
)
@click.option(
    "--host",
    "hosts",
    envvar="CEIR_HOST",  # named after the flag; several names: separated by spaces
    multiple=True,
    default=("localhost", "127.0.0.1", "::1"),
    show_default=True,
    help="Name or address the server certificate is valid for (repeat for more).",
)
def certs(directory: Path, hosts: tuple[str, ...]) -> None:
    """Write a development PKI into DIRECTORY (default var/certs): for tests and trials.

    ca.pem, server.pem/server.key, and NAME.pem/NAME.key for each demo principal
    (telkomsel and indosat operators, nusantara manufacturer, customs, kemenperin
    ministry, portal consumer, admin). Keys are unencrypted, readable by you only.

    \b
    ceir serve --tls-cert D/server.pem --tls-key D/server.key --client-ca D/ca.pem
    """
    from ceir.security.certs import DEMO_PRINCIPALS, write_dev_pki

    try:
        write_dev_pki(directory, hosts)
    except CeirError as exc:
        fail(exc)
    click.echo(f"wrote a development CA, a server certificate and clients to {directory}/")
    for p in DEMO_PRINCIPALS:
        click.echo(f"  {p.name}.pem  {p.label}")
