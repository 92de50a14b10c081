"""`ceir clones` on a store, and clone detection in a running `ceir serve` (real gRPC)."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from ceir.cli import main
from ceir.imei import body_key
from ceir.record import Reason, Record, Source, Status
from ceir.store import clones, open_store
from ceir.v1 import eir_pb2
from tests.conftest import run_server

BODY = "35209900176148"
IMEI = BODY + "1"
OWNER = "510100000000001"
SIMS = [f"51011000000{n:04d}" for n in range(9)]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_clones_commands(tmp_path: Path) -> None:
    """greylist, pair by IMSI or token, unpair, clear, list: exact output, exit codes."""
    db = str(tmp_path / "db")
    with open_store(db) as store:
        store.put_devices([(body_key(BODY), Record(Reason.REGISTERED, Source.MANUFACTURER))])
    assert _invoke("clones", "greylist", "--db", db, "--imei", IMEI) == (0, "greylisted\n", "")
    assert _invoke("clones", "pair", "--db", db, "--imei", IMEI, "--imsi", OWNER)[:2] == (
        0,
        "paired\n",
    )
    code, out, _ = _invoke("clones", "list", "--db", db)
    assert code == 0
    assert out.startswith(f"{BODY} GREYLISTED - ")
    assert out.endswith(" 1 pair(s)\n")
    code, token, _ = _invoke("clones", "token", "--db", db, "--imsi", OWNER)
    assert code == 0
    assert token.startswith("tok_")
    assert OWNER not in token
    by_token = ("--token", token.strip(), "--operator", "510-10")
    assert _invoke("clones", "pair", "--db", db, "--imei", IMEI, *by_token)[1] == "paired\n"
    assert _invoke("clones", "unpair", "--db", db, "--imei", IMEI, "--imsi", OWNER)[1] == (
        "unpaired\n"
    )
    assert _invoke("clones", "clear", "--db", db, "--imei", IMEI) == (0, "cleared\n", "")
    code, _out, err = _invoke("clones", "pair", "--db", db, "--imei", "123", "--imsi", OWNER)
    assert code == 3
    assert err.startswith("ceir: ")
    assert err.count("\n") == 1
    code, _out, err = _invoke("clones", "pair", "--db", db, "--imei", IMEI, "--token", "tok_x")
    assert code == 6
    assert "--operator" in err
    assert err.count("\n") == 1
    code, _out, err = _invoke("clones", "pair", "--db", db, "--imei", IMEI, "--imsi", "12ab")
    assert code == 6
    assert "12ab" not in err


def test_a_served_register_greylists_a_clone_and_keeps_its_owner(tmp_path: Path) -> None:
    """Ten SIMs on one demo device over gRPC CheckIMEI: within a flush the device answers
    GREYLISTED / DUPLICATE to the clones and without an IMSI, WHITELISTED to its owner."""
    with run_server(tmp_path / "db", observe=True) as server:
        first = server.eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=OWNER))
        assert first.status == Status.WHITELISTED
        time.sleep(0.5)  # the owner is seen first
        batch = [eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=s) for s in SIMS]
        server.eir.CheckIMEIBatch(eir_pb2.CheckIMEIBatchRequest(requests=batch))
        deadline = time.monotonic() + 10
        while not list(clones.iter_clones(server.store)) and time.monotonic() < deadline:
            time.sleep(0.05)
        clone = server.eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=SIMS[0]))
        owner = server.eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=IMEI, imsi=OWNER))
        bare = server.eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=IMEI))
    assert (clone.status, clone.reason) == (Status.GREYLISTED, Reason.DUPLICATE)
    assert (owner.status, owner.reason) == (Status.WHITELISTED, Reason.REGISTERED)
    assert (bare.status, bare.reason) == (Status.GREYLISTED, Reason.DUPLICATE)
