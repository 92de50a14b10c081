"""``ceir certs``: a development CA and certificates; ``ceir certs revoke``: the deny-list."""

from __future__ import annotations

from pathlib import Path

import click

from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.errors import CeirError

_DEFAULT = "dev"
"""The subcommand ``ceir certs [DIRECTORY]`` means (as it did before ``revoke``)."""


class _CertsGroup(click.Group):
    """``ceir certs DIRECTORY`` keeps meaning ``ceir certs dev DIRECTORY``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = [_DEFAULT, *args]
        return super().parse_args(ctx, args)


@main.group(cls=_CertsGroup, epilog=EPILOG, context_settings=CONTEXT)
def certs() -> None:
    """Development certificates (`ceir certs [DIRECTORY]`, i.e. `ceir certs dev`) and the
    deny-list of revoked client certificates (`ceir certs revoke`)."""


@certs.command(epilog=EPILOG, context_settings=CONTEXT)
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
def dev(directory: Path, hosts: tuple[str, ...]) -> None:
    """Write a development PKI into DIRECTORY (default var/certs): for tests and trials.

    ca.pem, server.pem/server.key, and NAME.pem/NAME.key for each demo principal
    (telkomsel and indosat operators, nusantara manufacturer, customs, kemenperin
    ministry, portal consumer, admin, and replica for `ceir replica --source-cert`). Keys
    are unencrypted, readable by you only.

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


@certs.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("certificates", nargs=-1, required=True, metavar="CERT...")
@click.option(
    "--cert-deny",
    "path",
    envvar="CEIR_CERT_DENY",  # the same file `ceir serve --cert-deny` reads
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Deny-list file (ceir serve --cert-deny reads it); created if missing.",
)
def revoke(certificates: tuple[str, ...], path: Path) -> None:
    """Revoke client certificates: add each CERT (a PEM file, or sha256:FINGERPRINT or
    serial:HEX) to the deny-list.

    A running server with --cert-deny sees the change within seconds (it watches the
    file; SIGHUP works too) and refuses the certificate on gRPC, N5g-eir and the web face.
    """
    from ceir.security.trust import add_to_deny_list, deny_entry

    try:
        entries = [deny_entry(given) for given in certificates]
        added = add_to_deny_list(path, entries)
    except CeirError as exc:
        fail(exc)
    for _line, what in entries:
        click.echo(f"revoked {what}")
    if added < len(entries):
        click.echo(f"({len(entries) - added} already in {path})")
