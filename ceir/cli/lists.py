"""``ceir lists export``: the operators' lists in DIRBS's formats; ``ceir lists runs``."""

from __future__ import annotations

from pathlib import Path

import click

from ceir.cli._paths import create_option, require_store
from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.config import DEFAULT_DB, field_default
from ceir.errors import CeirError
from ceir.lists.export import ExportOptions


@main.group(epilog=EPILOG, context_settings=CONTEXT)
def lists() -> None:
    """The lists the CEIR hands to operators: blacklist, notifications, exceptions."""


@lists.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    help="Store directory (it may be served meanwhile).",
)
@create_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write the files into (made if missing).",
)
@click.option(
    "--base",
    type=click.IntRange(1),
    default=None,
    metavar="RUN_ID",
    help="An earlier run of this store (`ceir lists runs`): write the deltas against it "
    "too. Without it, only full lists.",
)
@click.option(
    "--check-digit/--no-check-digit",
    default=field_default(ExportOptions, "check_digit"),
    help="IMEIs as 15 digits (body + Luhn check digit) instead of the 14-digit body.",
)
@click.option(
    "--operator",
    "operators",
    multiple=True,
    envvar="CEIR_OPERATOR",
    metavar="MCC-MNC",
    help="An operator to write notifications and exceptions for (repeatable). The "
    "central writes them for these, those of the --base run and every operator that saw a "
    "flagged device; a replica writes its own operator's only and needs it named once.",
)
@click.option(
    "--keep-runs",
    type=click.IntRange(1),
    default=field_default(ExportOptions, "keep_runs"),
    help="Runs the store keeps to be a later --base (the newest); older ones are deleted.",
)
def export(
    db: Path,
    create: bool,
    out: Path,
    base: int | None,
    check_digit: bool,
    operators: tuple[str, ...],
    keep_runs: int,
) -> None:
    """Write the lists, full and (with --base) delta, with zipped copies; record the run.

    \b
    Files ({prefix} is YYYYmmdd_HHMMSS, UTC):
      {prefix}_blacklist.csv                   imei,block_date,reasons
      {prefix}_notifications_{op}.csv          imei,imsi,msisdn,block_date,reasons
      {prefix}_exceptions_{op}.csv             imei,imsi,msisdn
    and with --base, per change kind (a header even when empty):
      {prefix}_blacklist_delta_{base}_{run}_{blocked|unblocked|changed}.csv
      {prefix}_notifications_{op}_delta_{base}_{run}_{new|resolved|blacklisted|
        no_longer_seen|changed}.csv
      {prefix}_exceptions_{op}_delta_{base}_{run}_{added|removed}.csv
    zipped: {prefix}_blacklist.zip, {prefix}_{op}.zip.

    block_date is YYYYMMDD (UTC), reasons sorted, distinct and |-joined, msisdn empty
    (ceir holds none). The central writes the blacklist and, per operator, SIMs as
    identity tokens (tok_...); an operator's replica writes its own operator's lists with
    the clear IMSIs it saw (files 0600). The run id printed is what a later --base names.
    An unknown --base is a usage error (exit 2); a directory that cannot be written exits 6.
    """
    from ceir.lists.export import export as run
    from ceir.security.principals import check_operator_id
    from ceir.store import open_store

    try:
        ops = tuple(check_operator_id(op) for op in operators)
        options = ExportOptions(
            base=base or 0, check_digit=check_digit, operators=ops, keep_runs=keep_runs
        )
        require_store(db, create=create)
        with open_store(db) as store:
            done = run(store, out, options)
    except CeirError as exc:
        fail(exc)
    click.echo(done.line())


@lists.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    help="Store directory.",
)
def runs(db: Path) -> None:
    """The export runs recorded in the store: id, time, base, rows per list."""
    from ceir.store import lists as recorded
    from ceir.store import open_store

    try:
        require_store(db, create=False)
        with open_store(db, readonly=True) as store:
            found = recorded.runs(store)
    except CeirError as exc:
        fail(exc)
    for r in found:
        counts = ", ".join(f"{name} {info['rows']:,}" for name, info in r.lists.items())
        base = f" base {r.base}" if r.base else ""
        click.echo(f"{r.run}\t{r.prefix}\t{r.state.value}{base}\t{counts}")
