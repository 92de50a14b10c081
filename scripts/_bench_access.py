"""What access control costs on the lookup path: calls/s with and without the gate.

Starts a one-process server twice on the same demo store — once as `ceir serve` builds
it (access interceptor in open mode: authentication, the method table, decoding in the
gate, stream limits) and once with the interceptor removed — and drives each with the
same closed-loop client for the same time: unary CheckIMEI, and CheckIMEIStream with
one IMEI per message. Prints calls/s and the ratio. Same machine, same run.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from ceir.v1 import eir_pb2, eir_pb2_grpc

SERVER = """
import asyncio, signal, sys
from pathlib import Path
import grpc
from ceir.server import app as server
from ceir.config import Settings
if sys.argv[2] == "off":
    real = grpc.aio.server
    def bare(*args, **kwargs):
        kwargs.pop("interceptors", None)
        return real(*args, **kwargs)
    server.grpc.aio.server = bare
settings = Settings(db=Path(sys.argv[1]), port=0, workers=1)
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


def drive(port: int, seconds: float) -> dict[str, float]:
    request = eir_pb2.CheckIMEIRequest(imei="352099001761481")
    message = eir_pb2.CheckIMEIBatchRequest(requests=[request])
    out = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        stub.CheckIMEI(request)
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            stub.CheckIMEI(request)
            n += 1
        out["unary calls/s"] = n / seconds

        def messages() -> Any:
            while time.perf_counter() < stop_at:
                yield message

        stop_at = time.perf_counter() + seconds
        n = sum(1 for _ in stub.CheckIMEIStream(messages()))
        out["stream messages/s"] = n / seconds
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp(prefix="ceir-bench-access-")) / "db"
    best: dict[str, dict[str, float]] = {"off": {}, "on": {}}
    for _ in range(args.rounds):
        for gate in ("off", "on"):
            proc = subprocess.Popen([sys.executable, "-c", SERVER, str(db), gate],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            try:
                for name, value in drive(port, args.seconds).items():
                    best[gate][name] = max(best[gate].get(name, 0.0), value)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    print(f"{'path':<20}{'no gate':>12}{'with gate':>12}{'ratio':>8}")
    for name in best["off"]:
        off, on = best["off"][name], best["on"][name]
        print(f"{name:<20}{off:>12,.0f}{on:>12,.0f}{on / off:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
