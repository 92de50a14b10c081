"""Which HTTP/2 server for the N5g-eir face: the candidates, measured in one run.

Each candidate is one server process (one core) answering ``{"status":"WHITELISTED"}``
to every GET over cleartext HTTP/2 with prior knowledge, driven by ``h2load`` (Debian
``nghttp2-client``) with the same flags; then the same h2load run against ceir's own
N5g-eir face (a real lookup, gate and query parsing) for comparison:

- ``h2`` (python-hyper) as an asyncio Protocol on uvloop: ceir's choice
  (:mod:`ceir.network._http2`);
- granian (Rust, hyper): its ASGI interface, one worker, one runtime thread;
- hypercorn: ASGI on asyncio, one worker (it closes a connection after
  ``keep_alive_max_requests`` = 1,000 requests by default; raised here so h2load can run).

``python -m loadtest.sbi_servers`` prints one row per candidate; ``./scripts/bench --sbi``
runs it. Candidates whose package is not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

BODY = b'{"status":"WHITELISTED"}'
CANDIDATES = ("h2", "granian", "hypercorn")
PACKAGES = {"h2": "h2", "granian": "granian", "hypercorn": "hypercorn"}


async def _asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


app = _asgi


def _serve_h2(port: int) -> None:
    from ceir.network._http2 import Http2Server, Response

    ok = Response(200, BODY)

    async def main() -> None:
        server = Http2Server(lambda _request: ok, lambda: ok)
        await server.listen("127.0.0.1", port, ssl_context=None, reuse_port=False)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)

    import uvloop

    uvloop.run(main())


def _serve_hypercorn(port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.keep_alive_max_requests = 10**9
    config.accesslog = None
    config.errorlog = None
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


def _serve_granian(port: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.server import Server

    Server(
        "loadtest.sbi_servers:app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http2,
        workers=1,
        runtime_threads=1,
        log_enabled=False,
    ).serve()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


@dataclass(frozen=True, slots=True)
class H2loadResult:
    requests: int
    succeeded: int
    per_second: float
    p50_ms: float
    p99_ms: float


_RATE = re.compile(r"finished in [\d.]+\w*, ([\d.]+) req/s")
_DONE = re.compile(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded")


def h2load(
    url: str,
    *,
    requests: int,
    clients: int = 4,
    streams: int = 16,
    threads: int = 1,
    extra: tuple[str, ...] = (),
) -> H2loadResult:
    """Run h2load against *url*; per-request latency percentiles from its log file."""
    binary = shutil.which("h2load")
    if binary is None:
        raise RuntimeError("h2load is not installed (Debian: apt-get install nghttp2-client)")
    log = f"/tmp/ceir-h2load-{os.getpid()}.log"  # noqa: S108 - private, removed below
    try:
        out = subprocess.run(  # noqa: S603 - h2load from PATH, our own arguments
            [
                binary,
                "-n",
                str(requests),
                "-c",
                str(clients),
                "-m",
                str(streams),
                "-t",
                str(threads),
                "--log-file",
                log,
                *extra,
                *([url] if url else []),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        times = []
        with open(log, encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    times.append(int(parts[2]))  # microseconds
    finally:
        if os.path.exists(log):
            os.unlink(log)
    rate = _RATE.search(out)
    done = _DONE.search(out)
    if rate is None or done is None:
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    times.sort()

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] / 1000 if times else 0.0

    return H2loadResult(
        int(done.group(1)), int(done.group(2)), float(rate.group(1)), pct(0.50), pct(0.99)
    )


def measure(name: str, requests: int) -> tuple[str, H2loadResult | str]:
    """Start candidate *name* in its own process, run h2load, stop it."""
    if importlib.util.find_spec(PACKAGES[name]) is None:
        return name, f"not installed (pip install {PACKAGES[name]})"
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "loadtest.sbi_servers", "serve", name, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        h2load(f"http://127.0.0.1:{port}/", requests=2000)  # warm up
        return name, h2load(f"http://127.0.0.1:{port}/", requests=requests)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run one candidate server (used by the benchmark)")
    serve.add_argument("name", choices=CANDIDATES)
    serve.add_argument("port", type=int)
    parser.add_argument("--requests", type=int, default=100_000, help="h2load requests per row")
    args = parser.parse_args(argv)
    if args.command == "serve":
        {"h2": _serve_h2, "granian": _serve_granian, "hypercorn": _serve_hypercorn}[args.name](
            args.port
        )
        return 0
    print(
        f"{'HTTP/2 server (1 process, h2c, h2load -c4 -m16)':<50} {'req/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for name in CANDIDATES:
        label, result = measure(name, args.requests)
        if isinstance(result, str):
            print(f"{label:<50} {result}")
        else:
            print(
                f"{label:<50} {result.per_second:>9,.0f} {result.p50_ms:>7.2f} "
                f"{result.p99_ms:>7.2f}  ({result.succeeded:,}/{result.requests:,} ok)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
