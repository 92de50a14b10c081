"""The ``ceir`` group, its exit codes and the one place errors become them.

Every command module imports from here; nothing here imports a command.

Exit codes (also in ``ceir --help``):

==  =====================================================================
0   success; for ``ceir check``: the device may connect
1   ``ceir check``: the device will be refused (not registered, blocked, expired);
    ``ceir verify --compare``: the two copies differ
2   usage error (bad flag or argument; ``ceir lists export --base`` of no recorded run)
3   invalid IMEI
4   the server could not be reached, failed, or rate-limits you (retry after the time given)
5   the store cannot be opened: missing (``--create``), damaged, not a directory, unknown
    layout
6   bad configuration (e.g. the address cannot be bound, a file cannot be written)
7   a feed file was refused whole or cannot be read (nothing was imported)
8   a feed file was staged for a second principal's approval (nothing written yet)
9   not allowed: unauthenticated, permission denied, or TLS credentials the server refuses
10  no such stage, or it expired
==  =====================================================================
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from ceir import __version__
from ceir.errors import (
    CeirError,
    ConfigError,
    FeedError,
    ForbiddenError,
    InvalidImeiError,
    RemoteError,
    ReplicationError,
    StageExpiredError,
    StoreError,
    UnknownRunError,
)
from ceir.store import SCHEMA_VERSION

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INVALID_IMEI = 3
EXIT_UNAVAILABLE = 4
EXIT_STORE = 5
EXIT_CONFIG = 6
EXIT_FEED = 7
EXIT_STAGED = 8
EXIT_FORBIDDEN = 9
EXIT_NO_STAGE = 10

# The one place where errors become exit codes. Most specific class first.
EXIT_FOR_ERROR: tuple[tuple[type[CeirError], int], ...] = (
    (InvalidImeiError, EXIT_INVALID_IMEI),
    (UnknownRunError, EXIT_USAGE),  # `ceir lists export --base N` of no recorded run
    (StoreError, EXIT_STORE),
    (FeedError, EXIT_FEED),
    (RemoteError, EXIT_UNAVAILABLE),
    (ReplicationError, EXIT_UNAVAILABLE),  # copies that did not meet at one sequence
    (ForbiddenError, EXIT_FORBIDDEN),
    (StageExpiredError, EXIT_NO_STAGE),
    (ConfigError, EXIT_CONFIG),
    (CeirError, EXIT_CONFIG),
)

EPILOG = """\b
Exit codes: 0 ok (check: may connect), 1 check: refused (verify
--compare: copies differ), 2 usage (also: lists --base of no run),
3 invalid IMEI, 4 server unreachable or rate-limiting, 5 store missing,
damaged or unreadable, 6 bad configuration (address in use, a file that
cannot be written), 7 feed refused or unreadable, 8 import staged for
approval (nothing written yet), 9 not allowed (unauthenticated, permission
denied, TLS credentials refused), 10 no such stage or it expired.
Every flag can also be set as CEIR_<FLAG>, e.g. CEIR_DB, CEIR_PORT."""


def fail(exc: CeirError) -> NoReturn:
    """Print what is wrong and exit with the error's code."""
    for cls, code in EXIT_FOR_ERROR:
        if isinstance(exc, cls):
            click.echo(f"ceir: {exc}", err=True)
            sys.exit(code)
    raise exc  # pragma: no cover - CeirError is in the table


# Every command reads its flags from CEIR_<FLAG> too (CEIR_DB, CEIR_PORT, ...): the
# same names whatever the command, so one environment configures them all.
CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "CEIR",
    "show_default": True,
}


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(
    __version__,
    prog_name="ceir",
    message=f"%(prog)s {__version__} (store schema {SCHEMA_VERSION})",
)
def main() -> None:
    """ceir: the national IMEI register and the CheckIMEI service operators' EIRs call."""


def run() -> None:
    """Entry point of the ``ceir`` script (the commands are added by :mod:`ceir.cli`)."""
    try:
        main()
    except OSError as exc:  # a path no command checked: still one line, never a traceback
        where = f"cannot use {exc.filename}: " if exc.filename else ""
        click.echo(f"ceir: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_CONFIG)
