"""``ceir import`` and ``ceir audit``: writing feeds into the store, reading its history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ceir.cli._paths import create_option, require_store, require_writable
from ceir.cli.app import CONTEXT, EPILOG, EXIT_FEED, EXIT_STAGED, fail, main
from ceir.config import (
    DEFAULT_DB,
    DEFAULT_STAGE_ABOVE,
    DEFAULT_STAGE_LOST_STOLEN_ABOVE,
    field_default,
)
from ceir.errors import CeirError, FeedRefusedError
from ceir.feeds import Format, ImportState, Kind  # enums only: cheap to import
from ceir.feeds.base import Options  # its defaults are the flags' defaults

KINDS = tuple(k.value for k in Kind)
FORMATS = tuple(f.value for f in Format)


class BarProgress:
    """A tqdm bar on stderr with rows/s; silent when *enabled* is False."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def phase(self, name: str, total: int | None) -> None:
        self.close()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=name, unit=" rows", unit_scale=True, file=sys.stderr, leave=False
            )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cutoff(value: str | None) -> int | None:
    if value is None:
        return None
    from ceir.errors import FeedRowError
    from ceir.feeds.rows import parse_instant

    try:
        return parse_instant(value, "--cutoff")
    except FeedRowError as exc:
        raise click.BadParameter(exc.message) from None


_RULE = "the store's rule (ceir eligibility)"


@main.command("import", epilog=EPILOG, context_settings=CONTEXT)
@click.argument("kind", type=click.Choice(KINDS), metavar="KIND")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    envvar="CEIR_FORMAT",  # named after the flag, not the parameter
    type=click.Choice(FORMATS),
    default=None,
    show_default="auto",
    help="File format; detected from the extension and first lines when not given.",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    help="Store directory (the one `ceir serve` uses; it may be running).",
)
@create_option
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    show_default="FILE-NAME.rejects.csv in the current directory",
    help="Where to write the reject report (file, line, field, reason, message, fix).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no warnings; the summary only.")
@click.option(
    "--max-bad-ratio",
    type=click.FloatRange(0, 1),
    default=field_default(Options, "max_bad_ratio"),
    help="Refuse the whole file when more than this share of rows is malformed.",
)
@click.option(
    "--max-new-devices",
    type=click.IntRange(0),
    default=None,
    show_default="per kind",
    help="Refuse the whole file when it would add more new devices (TACs for tac).",
)
@click.option(
    "--allow-unknown-tac", is_flag=True, help="manufacturer: accept TACs not in the TAC table."
)
@click.option(
    "--fix-leading-zero",
    is_flag=True,
    help="tac: pad 7-digit TACs with the leading zero a spreadsheet dropped (counted).",
)
@click.option(
    "--customs-quota",
    type=click.IntRange(1),
    default=None,
    show_default=_RULE,
    help="Devices per identity per arrival (only lower than the store's rule).",
)
@click.option(
    "--customs-cooldown-days",
    type=click.IntRange(0),
    default=None,
    show_default=_RULE,
    help="Days between two arrivals of one identity (only higher than the store's rule).",
)
@click.option(
    "--cutoff",
    default=None,
    show_default=_RULE,
    help="operator-dump: devices first seen after this are not grandfathered (only "
    "earlier than the store's rule).",
)
@click.option(
    "--visitor-max-days",
    type=click.IntRange(1),
    default=None,
    show_default=_RULE,
    help="Longest visitor registration (only shorter than the store's rule).",
)
@click.option(
    "--batch-rows",
    type=click.IntRange(1),
    default=field_default(Options, "batch_rows"),
    help="Rows per write transaction (bigger: fewer pages rewritten, more memory).",
)
@click.option(
    "--stage-above",
    type=click.IntRange(0),
    envvar="CEIR_STAGE_ABOVE",
    default=DEFAULT_STAGE_ABOVE,
    help="Two-person rule: a file adding more new devices is staged (exit 8) until another "
    "principal runs `ceir approve`; 0: never stage.",
)
@click.option(
    "--stage-lost-stolen-above",
    type=click.IntRange(0),
    envvar="CEIR_STAGE_LOST_STOLEN_ABOVE",
    default=DEFAULT_STAGE_LOST_STOLEN_ABOVE,
    help="The same for lost-stolen files, whose blocks and unblocks count (the smaller "
    "threshold applies); 0: --stage-above alone (with --stage-above 0: never stage).",
)
def import_(
    kind: str,
    file: Path,
    fmt: str | None,
    db: Path,
    create: bool,
    rejects: Path | None,
    quiet: bool,
    max_bad_ratio: float,
    max_new_devices: int | None,
    allow_unknown_tac: bool,
    fix_leading_zero: bool,
    customs_quota: int | None,
    customs_cooldown_days: int | None,
    cutoff: str | None,
    visitor_max_days: int | None,
    batch_rows: int,
    stage_above: int,
    stage_lost_stolen_above: int,
) -> None:
    """Import a feed FILE of KIND into the register.

    \b
    KIND           columns (CSV header, or JSON Lines with the same names)
    tac            Osmocom TAC DB, GSMA pipe file, or tac,brand,model,device_type
    manufacturer   imei,brand,model,tpp_number,maker_id,produced_at
    customs        imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid
    operator-dump  imei,imsi,msisdn,first_seen
    visitor        imei,passport_number,registered_at,valid_until
    exception      imei,category,reference,valid_until
    lost-stolen    imei,report_ref,action,reported_at

    Bad rows go to the reject report and the rest is imported; the whole file is refused
    (exit 7, nothing written) above the bad-row or new-device limits. Importing a file
    again is a no-op; an interrupted import resumes where it stopped. The eligibility
    rules (cutoff, quotas, visitor days) are the store's (`ceir eligibility`): a flag may
    only tighten one (exit 9 otherwise).
    """
    from ceir.feeds import eligibility
    from ceir.feeds.staging import Stage, submit
    from ceir.store import open_store
    from ceir.store.audit import local_actor

    base = Options(
        max_bad_ratio=max_bad_ratio,
        max_new_devices=max_new_devices,
        allow_unknown_tac=allow_unknown_tac,
        fix_leading_zero=fix_leading_zero,
        batch_rows=batch_rows,
    )
    asked = {
        "customs_quota": customs_quota,
        "customs_cooldown_days": customs_cooldown_days,
        "cutoff": _cutoff(cutoff),
        "visitor_max_days": visitor_max_days,
    }
    report = rejects if rejects is not None else Path(f"{file.name}.rejects.csv")
    progress = BarProgress(enabled=not quiet and sys.stderr.isatty())
    try:
        require_store(db, create=create)
        require_writable(report, "the reject report", "nothing was imported")
        with open_store(db) as store:
            # Eligibility rules are the store's; a flag may only tighten one (else exit 9).
            options = eligibility.options(eligibility.read(store), base, **asked)
            result = submit(
                store,
                Kind(kind),
                file,
                actor=local_actor(),
                stage_above=stage_above,
                stage_lost_stolen_above=stage_lost_stolen_above,
                fmt=Format(fmt) if fmt else None,
                options=options,
                progress=progress,
                report=report,
            )
    except FeedRefusedError as exc:
        _print_summary(exc.summary, quiet)
        click.echo(f"ceir: {exc}", err=True)
        sys.exit(EXIT_FEED)
    except CeirError as exc:
        fail(exc)
    if isinstance(result, Stage):
        click.echo(result.line())
        sys.exit(EXIT_STAGED)
    _print_summary(result, quiet)


def _print_summary(summary: Any, quiet: bool) -> None:
    if not quiet and summary.state is not ImportState.ALREADY_IMPORTED:
        for warning in summary.warnings:
            click.echo(f"warning: {summary.file}: {warning}", err=True)
        if summary.trimmed:
            click.echo(
                f"warning: {summary.file}: trimmed surrounding spaces in {summary.trimmed:,} "
                "field(s)",
                err=True,
            )
        if summary.fixed:
            click.echo(
                f"warning: {summary.file}: padded {summary.fixed:,} 7-digit TAC(s) with a "
                "leading zero (--fix-leading-zero)",
                err=True,
            )
    click.echo(summary.line())
    if summary.report and summary.state is not ImportState.ALREADY_IMPORTED:  # nothing new
        click.echo(f"reject report: {summary.report}")
        if not quiet:
            for r in summary.first_rejects[:5]:
                fix = f" (fix: {r.fix})" if r.fix else ""
                click.echo(f"  line {r.line}: {r.reason}: {r.message}{fix}")
            more = summary.rejected_total - min(5, len(summary.first_rejects))
            if more > 0:
                click.echo(f"  ... and {more:,} more in the report")


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("imei")
@click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, help="Store directory.")
def audit(imei: str, db: Path) -> None:
    """Print the history of a device: every change, who made it, when and from where.

    Personal numbers never appear: identities are shown as tokens.
    """
    from ceir.feeds.history import device_history
    from ceir.imei import parse_lenient
    from ceir.store import open_store

    try:
        parsed = parse_lenient(imei)
        with open_store(db, readonly=True) as store:
            report = device_history(store, parsed)
    except CeirError as exc:
        fail(exc)
    for line in report.lines():
        click.echo(line)


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("kind", type=click.Choice(KINDS), metavar="KIND")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option(
    "--rows", "n", envvar="CEIR_ROWS", type=click.IntRange(0), default=1000, help="How many rows."
)
@click.option(
    "--dirt",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of rows with one realistic defect (0.02: 2%).",
)
@click.option("--seed", type=int, default=0, help="Same seed, same file.")
@click.option(
    "--format", "fmt", envvar="CEIR_FORMAT", type=click.Choice(("csv", "jsonl")), default="csv"
)
@click.option(
    "--start",
    type=int,
    default=-1,
    show_default="the kind's own range",
    help="First serial index: files with disjoint ranges hold disjoint devices.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def gen(
    kind: str, out: Path, n: int, dirt: float, seed: int, fmt: str, start: int, quiet: bool
) -> None:
    """Write a synthetic feed of KIND to OUT ('-': stdout), for tests and benchmarks.

    KIND is one of tac, manufacturer, customs, operator-dump, visitor, exception,
    lost-stolen.

    Device feeds use the TACs that `ceir gen tac OUT --rows 500` writes: import those
    first, or manufacturer rows are rejected as unknown TACs.
    """
    from ceir.feeds.gen import generate

    progress = BarProgress(enabled=not quiet and sys.stderr.isatty() and str(out) != "-")
    progress.phase("generating", n)
    try:
        if str(out) == "-":
            generate(Kind(kind), n, sys.stdout, dirt=dirt, seed=seed, fmt=Format(fmt), start=start)
        else:
            generate(
                Kind(kind),
                n,
                out,
                dirt=dirt,
                seed=seed,
                fmt=Format(fmt),
                start=start,
                progress=progress.advance,
            )
    except CeirError as exc:
        fail(exc)
    finally:
        progress.close()
