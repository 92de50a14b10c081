"""``python -m loadtest``: five simulated operators' EIR nodes against ceir, open loop.

Builds (or reuses) a register loaded through ``ceir import`` from generated feeds,
starts ``ceir serve --workers N`` on it (or uses --server), offers attaches at --rate
for --duration seconds, checks every answer, and prints a per-operator table; writes
result.json and chart.png to --out. ``--ramp`` raises the rate step by step until p99
passes --p99-limit-ms twice in a row at one rate (or errors or wrong answers appear)
and reports the highest rate that held. Exit status 1 when any answer was wrong, 2 on
errors (not in ramp mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ceir.server.supervisor import default_workers
from loadtest import fill, report
from loadtest.engine import ClientSettings, Face, Mode, RunResult, run_load
from loadtest.population import DEFAULT_MIX, OPERATORS, Operator, format_mix, parse_mix
from loadtest.serverproc import ServerProcess, cpu_seconds

WARMUP = 1.0  # seconds of uncounted load at the step's rate before each measured run


def _operators(value: str) -> tuple[Operator, ...]:
    if value.isdigit():
        count = int(value)
        if not 1 <= count <= len(OPERATORS):
            raise click.BadParameter(f"between 1 and {len(OPERATORS)}")
        return OPERATORS[:count]
    by_name = {op.name.lower().split()[0]: op for op in OPERATORS} | {
        op.mnc: op for op in OPERATORS
    }
    try:
        return tuple(by_name[name.strip().lower()] for name in value.split(","))
    except KeyError as exc:
        raise click.BadParameter(f"unknown operator {exc}; use a count or names") from None


@contextlib.contextmanager
def _server(
    address: str | None, db: Path, workers: int, face: Face = Face.GRPC
) -> Iterator[tuple[str, int | None]]:
    if address:
        yield address, None
        return
    with ServerProcess(db, workers=workers) as server:
        yield server.addresses[face], server.process.pid


_POPULATION: Any = None  # set before forking client processes, which inherit it


def _run(
    population: Any,
    address: str,
    server_pid: int | None,
    rate: float,
    duration: float,
    mode: Mode,
    operators: tuple[Operator, ...],
    settings: ClientSettings,
    seed: int,
    procs: int = 1,
) -> RunResult:
    """One measured run, from this process or split over *procs* client processes
    (operators shared out by market share; each process runs its nodes' event loop)."""
    if procs <= 1 or len(operators) == 1:
        return _run_here(
            population, address, server_pid, rate, duration, mode, operators, settings, seed
        )
    groups: list[list[Operator]] = [[] for _ in range(min(procs, len(operators)))]
    for op in sorted(operators, key=lambda o: -o.share):
        min(groups, key=lambda g: sum(o.share for o in g)).append(op)
    total = sum(op.share for op in operators)
    global _POPULATION  # noqa: PLW0603 - handed to forked children without pickling it
    _POPULATION = population
    context = multiprocessing.get_context("fork")
    jobs = [
        (
            address,
            server_pid if k == 0 else None,
            rate * sum(o.share for o in g) / total,
            duration,
            mode,
            tuple(g),
            settings,
            seed + 1000 * k,
        )
        for k, g in enumerate(groups)
    ]
    with context.Pool(len(groups)) as pool:
        results = pool.starmap(_run_child, jobs)
    return RunResult(
        [node for r in results for node in r.nodes],
        duration,
        max(r.elapsed for r in results),
        sum(r.client_cpu for r in results),
        # The first process measured the server over its window, which the others' share.
        results[0].server_cpu,
        mode,
        rate,
        settings.face,
    )


def _run_child(address: str, server_pid: int | None, *args: Any) -> RunResult:
    return _run_here(_POPULATION, address, server_pid, *args)


def _run_here(
    population: Any,
    address: str,
    server_pid: int | None,
    rate: float,
    duration: float,
    mode: Mode,
    operators: tuple[Operator, ...],
    settings: ClientSettings,
    seed: int,
) -> RunResult:
    cpu = None if server_pid is None else (lambda: cpu_seconds(server_pid))
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(
            run_load(
                population,
                address,
                rate=rate,
                duration=duration,
                mode=mode,
                operators=operators,
                settings=settings,
                seed=seed,
                server_cpu=cpu,
                warmup=WARMUP,
            )
        )


def _loud(summary: dict[str, Any]) -> None:
    if summary["total"]["wrong"]:
        click.echo(f"\n!!! {summary['total']['wrong']:,} WRONG ANSWERS !!!", err=True)
        for op in summary["operators"].values():
            for example in op["wrong_examples"]:
                click.echo(f"  {example}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--rate", type=float, default=5000, show_default=True, help="Attaches/s offered, all operators."
)
@click.option("--duration", type=float, default=10, show_default=True, help="Seconds of arrivals.")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=Mode.COALESCED.value,
    show_default=True,
    help="How nodes ask: coalesced per-attach calls, one stream message per IMEI, "
    "batch calls, or one unary call per attach.",
)
@click.option(
    "--face",
    type=click.Choice([f.value for f in Face]),
    default=Face.GRPC.value,
    show_default=True,
    help="The door the nodes ask through: gRPC CheckIMEI (as --mode says), S13 "
    "ME-Identity-Check over Diameter (one ECR per attach, pipelined on one connection "
    "per operator's MME) or N5g-eir over HTTP/2 (one GET per attach, multiplexed on one "
    "connection per operator's AMF).",
)
@click.option("--operators", default="5", show_default=True, help="How many (1-5) or names/MNCs.")
@click.option(
    "--mix", default=format_mix(DEFAULT_MIX), show_default=True, help="Device mix, KIND=WEIGHT,..."
)
@click.option(
    "--devices", type=int, default=200_000, show_default=True, help="Subscribers (one device each)."
)
@click.option("--seed", type=int, default=20200915, show_default=True)
@click.option("--workers", type=int, default=0, help="Server worker processes (0: one per core).")
@click.option(
    "--server",
    "address",
    default=None,
    help="Use a running server at ADDR instead (the address of the --face asked; n5g: its "
    "apiRoot, http://HOST:PORT).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=Path("var/loadtest"),
    show_default=True,
    help="Where the register and feeds are built (reused).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Result folder [default: WORK/results].",
)
@click.option(
    "--max-batch",
    type=int,
    default=1000,
    show_default=True,
    help="Coalescing/batch: IMEIs per message.",
)
@click.option(
    "--max-delay-ms",
    type=float,
    default=1.0,
    show_default=True,
    help="Coalescing/batch: longest wait before a flush.",
)
@click.option(
    "--timeout", type=float, default=5.0, show_default=True, help="Per-attach deadline (s)."
)
@click.option("--ramp", is_flag=True, help="Raise the rate until p99 passes --p99-limit-ms.")
@click.option(
    "--ramp-factor", type=float, default=1.25, show_default=True, help="Rate multiplier per step."
)
@click.option(
    "--ramp-max", type=float, default=1_000_000, show_default=True, help="Stop ramping here."
)
@click.option("--p99-limit-ms", type=float, default=10.0, show_default=True)
@click.option(
    "--client-procs",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Load-generator processes (operators shared out between them).",
)
@click.option("--quiet", is_flag=True, help="Only the table.")
def main(
    rate: float,
    duration: float,
    mode: str,
    face: str,
    operators: str,
    mix: str,
    devices: int,
    seed: int,
    workers: int,
    address: str | None,
    work: Path,
    out: Path | None,
    max_batch: int,
    max_delay_ms: float,
    timeout: float,
    ramp: bool,
    ramp_factor: float,
    ramp_max: float,
    p99_limit_ms: float,
    client_procs: int,
    quiet: bool,
) -> None:
    """Simulated operator EIR nodes against ceir: open-loop load, every answer checked."""
    try:
        chosen_mix = parse_mix(mix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mix") from None
    ops = _operators(operators)
    out = out or work / "results"
    workers = workers or default_workers()
    settings = ClientSettings(max_batch, max_delay_ms / 1000, timeout, Face(face))
    population, db = fill.prepare(
        devices=devices, mix=chosen_mix, seed=seed, work=work, quiet=quiet
    )
    the_mode = Mode(mode)
    with _server(address, db, workers, settings.face) as (addr, cpu):
        if not quiet:
            where = f"{workers} workers" if cpu else "external server"
            click.echo(
                f"ceir at {addr} ({where}); {devices:,} devices; mix {format_mix(chosen_mix)}"
            )
        args = (population, addr, cpu, the_mode, ops, settings, seed, client_procs)
        if ramp:
            _ramp(args, rate, duration, ramp_factor, ramp_max, p99_limit_ms, out, workers)
        else:
            _single(args, rate, duration, out, workers)


def _label(mode: Mode, settings: ClientSettings) -> str:
    """What the nodes did: the gRPC mode, or the other face."""
    if settings.face is Face.GRPC:
        return mode.value
    if settings.face is Face.N5G:
        return "n5g (one HTTP/2 GET per attach)"
    return f"{settings.face.value} (one ECR per attach)"


def _single(args: tuple[Any, ...], rate: float, duration: float, out: Path, workers: int) -> None:
    population, addr, cpu, the_mode, ops, settings, seed, procs = args
    run = _run(population, addr, cpu, rate, duration, the_mode, ops, settings, seed, procs)
    summary = report.summarize(run)
    summary["workers"] = workers if cpu else None
    summary["client"] = {**vars(settings), "face": settings.face.value, "processes": procs}
    click.echo(f"\n{_label(the_mode, settings)}, {rate:,.0f} attaches/s offered for {duration:g} s")
    click.echo(report.table(summary))
    report.write_json(out / "result.json", summary)
    report.chart(
        out / "chart.png",
        summary,
        f"ceir load test: {_label(the_mode, settings)}, {rate:,.0f}/s offered, "
        f"{len(ops)} operators",
    )
    click.echo(f"result: {out / 'result.json'}; chart: {out / 'chart.png'}")
    _loud(summary)
    if summary["total"]["wrong"]:
        sys.exit(1)
    if summary["total"]["errors"]:
        sys.exit(2)


def _ramp(
    args: tuple[Any, ...],
    rate: float,
    duration: float,
    factor: float,
    ceiling: float,
    limit_ms: float,
    out: Path,
    workers: int,
) -> None:
    population, addr, cpu, the_mode, ops, settings, seed, procs = args
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    current = rate
    retried = False
    while current <= ceiling:
        run = _run(population, addr, cpu, current, duration, the_mode, ops, settings, seed, procs)
        summary = report.summarize(run)
        steps.append(summary)
        total = summary["total"]
        ok = (
            not total["wrong"]
            and not total["errors"]
            and total["p99_ms"] is not None
            and total["p99_ms"] <= limit_ms
            and total["achieved_rate"] >= 0.95 * total["offered_rate"]
        )
        click.echo(
            f"ramp {current:>10,.0f}/s: achieved {total['achieved_rate']:>10,.0f}/s "
            f"p50 {report.ms(total['p50_ms'])} p99 {report.ms(total['p99_ms'])} ms "
            f"errors {total['errors']} wrong {total['wrong']} -> {'ok' if ok else 'FAIL'}"
        )
        _loud(summary)
        if total["wrong"]:
            sys.exit(1)
        if not ok and not retried and not total["errors"]:
            retried = True  # one noisy step on a shared machine: measure that rate again
            continue
        if not ok:
            break
        retried = False
        best = summary
        current *= factor
        time.sleep(0.5)
    report.write_json(
        out / "ramp.json",
        {
            "p99_limit_ms": limit_ms,
            "steps": steps,
            "best": best,
            "workers": workers,
            "client": {**vars(settings), "face": settings.face.value, "processes": procs},
        },
    )
    title = f"ceir ramp: {_label(the_mode, settings)}, {len(ops)} operators"
    report.ramp_chart(out / "ramp.png", steps, limit_ms, title)
    if best is None:
        click.echo(f"no step held p99 <= {limit_ms:g} ms (from {rate:,.0f}/s)")
        return
    click.echo(
        f"\nhighest sustainable rate: {best['total']['offered_rate']:,.0f} attaches/s offered "
        f"with p99 {best['total']['p99_ms']:.2f} ms <= {limit_ms:g} ms"
    )
    click.echo(report.table(best))
    report.write_json(out / "result.json", best)
    title = f"ceir: best ramp step, {_label(the_mode, settings)}, {best['rate']:,.0f}/s offered"
    report.chart(out / "chart.png", best, title)
    click.echo(f"ramp: {out / 'ramp.json'}, {out / 'ramp.png'}; best step: {out / 'chart.png'}")


if __name__ == "__main__":
    main()
