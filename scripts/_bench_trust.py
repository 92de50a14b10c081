"""Do single writes and lookups keep their latency while a big file is imported?

Starts a one-process server (`ceir serve` as it builds it, open mode, no staging, no
write rate limit) on a demo store, then measures, from one client, the latency of
unary CheckIMEI and of ReportLostStolen calls: first with nothing else running (the
baseline), then while a second client uploads and imports a manufacturer file of
``--rows`` rows (200,000 by default) through ImportFeed. Prints p50/p99 of both phases and
the ratio of the p99s. Same machine, same run, same server; ``--repeat N`` does it N
times (a new server and store each time) and prints each run's table with the load
average, since one run's p99 on a shared machine says little.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from ceir.imei import check_digit
from ceir.v1 import eir_pb2, eir_pb2_grpc, registry_pb2, registry_pb2_grpc

SERVER = """
import asyncio, signal, sys
from pathlib import Path
from ceir.server import app as server
from ceir.config import Settings
settings = Settings(
    db=Path(sys.argv[1]), port=0, workers=1, stage_above=0, stage_lost_stolen_above=0, write_rate=0
)
store = server.prepare_store(settings)
async def main():
    srv, port = server.create_server(settings, store)
    await srv.start()
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await srv.stop(0)
asyncio.run(main())
"""
LOOKUP = "352099001761481"


def imei(tac: str, serial: int) -> str:
    body = f"{tac}{serial:06d}"
    return body + str(check_digit(body))


def feed(rows: int) -> bytes:
    lines = ["imei,brand,model,tpp_number,maker_id,produced_at"]
    lines += [f"{imei('35209900', 100_000 + i)},B,M,TPP-1,M1,2025-01-01" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def upload(port: int, data: bytes, done: dict[str, float]) -> None:
    def messages() -> Iterator[registry_pb2.ImportFeedRequest]:
        header = registry_pb2.ImportHeader(
            kind=registry_pb2.FEED_KIND_MANUFACTURER, filename="bench.csv"
        )
        yield registry_pb2.ImportFeedRequest(header=header)
        for i in range(0, len(data), 1 << 20):
            yield registry_pb2.ImportFeedRequest(chunk=data[i : i + (1 << 20)])

    started = time.perf_counter()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        answer = registry_pb2_grpc.RegistryStub(ch).ImportFeed(messages(), timeout=600)
    done["seconds"] = time.perf_counter() - started
    done["added"] = answer.added


def measure(
    port: int, lookups: int, reports: int, serial: int, until: threading.Event | None = None
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of *lookups* CheckIMEI and *reports* ReportLostStolen, interleaved;
    stops early when *until* is set (the import finished)."""
    check, report = [], []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        reg = registry_pb2_grpc.RegistryStub(ch)
        eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=LOOKUP))
        every = max(1, lookups // max(1, reports))
        for i in range(lookups):
            if until is not None and until.is_set() and report:
                break
            t = time.perf_counter()
            eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=LOOKUP))
            check.append(1000 * (time.perf_counter() - t))
            if i % every == 0 and len(report) < reports:
                request = registry_pb2.LostStolenRequest(
                    imei=imei("35686800", serial + len(report)), report_ref="BENCH"
                )
                t = time.perf_counter()
                reg.ReportLostStolen(request)
                report.append(1000 * (time.perf_counter() - t))
            time.sleep(0.002)  # a steady trickle, not a flood: latency, not throughput
    return check, report


def pct(values: list[float], p: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def run_once(args: argparse.Namespace) -> None:
    """One server, one store: both phases, and their table."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ceir-bench-trust-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(Path(tmp) / "db")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            data = feed(args.rows)
            base_check, base_report = measure(port, args.lookups, args.reports, 0)
            done: dict[str, float] = {}
            finished = threading.Event()

            def run() -> None:
                upload(port, data, done)
                finished.set()

            thread = threading.Thread(target=run)
            thread.start()
            load_check, load_report = measure(
                port, args.lookups, args.reports, 100_000, until=finished
            )
            thread.join(timeout=600)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"import: {args.rows:,} rows, {int(done.get('added', 0)):,} added in "
          f"{done.get('seconds', float('nan')):.1f} s (ImportFeed, one call); load average "
          f"{load:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    print(f"{'':<22}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}")
    for name, base, during in (
        ("CheckIMEI", base_check, load_check),
        ("ReportLostStolen", base_report, load_report),
    ):
        print(f"{name + ' alone':<22}{len(base):>7}{pct(base, 50):>9.2f}{pct(base, 99):>9.2f}")
        print(
            f"{name + ' + import':<22}{len(during):>7}{pct(during, 50):>9.2f}"
            f"{pct(during, 99):>9.2f}"
        )
        print(f"{name} p99 ratio (import / alone): {pct(during, 99) / pct(base, 99):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Rows of the imported file.")
    parser.add_argument("--lookups", type=int, default=2_000, help="CheckIMEI calls per phase.")
    parser.add_argument("--reports", type=int, default=200, help="ReportLostStolen per phase.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs, each on a new server.")
    args = parser.parse_args()
    for i in range(args.repeat):
        if args.repeat > 1:
            print(f"-- run {i + 1} of {args.repeat}")
        run_once(args)


if __name__ == "__main__":
    main()
