"""``./scripts/edge-demo``: a broker, the central register and the five Indonesian
operators' replicas on loopback; prints where each answers, stops all on Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from ceir.replication.keys import generate
from loadtest.edge import NatsServer, Node, central, replica

OPERATORS = (
    ("telkomsel", "510-10"),
    ("indosat", "510-01"),
    ("xl", "510-11"),
    ("tri", "510-89"),
    ("smartfren", "510-09"),
)


def _faces(node: Node) -> str:
    return "".join(f"  {name} {address}" for name, address in sorted(node.faces.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, help="Keep stores and logs here (default: a temp dir).")
    parser.add_argument(
        "--for", dest="seconds", type=float, help="Stop after this many seconds (default: Ctrl-C)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ceir-edge-") as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        signing, verify = generate(root / "keys")
        broker = NatsServer(root / "nats")
        broker.start()
        nodes: list[Node] = []
        try:
            hub = central(root, broker, signing)
            nodes.append(hub.start())
            print(f"broker    {broker.url} (JetStream, stream CEIR_CHANGES)", flush=True)
            print(f"central   grpc {hub.address}{_faces(hub)}", flush=True)
            for name, mcc_mnc in OPERATORS:
                node = replica(
                    root, name, broker, hub.address, verify, "--operator", mcc_mnc
                ).start()
                nodes.append(node)
                print(f"{name:<10}{mcc_mnc}  grpc {node.address}{_faces(node)}", flush=True)
            print(f"logs and stores in {root}; Ctrl-C stops everything", flush=True)
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            for node in reversed(nodes):
                node.stop()
            broker.stop()
            print("stopped", flush=True)


if __name__ == "__main__":
    main()
