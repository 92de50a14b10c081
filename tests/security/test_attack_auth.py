"""Issue 10 §2 and §4: authentication fails closed, and one caller's input is bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from ceir.config import Settings
from ceir.v1 import eir_pb2, eir_pb2_grpc
from tests._serving import serving
from tests.security.test_attack_leaks import _tac, ceir

REGISTERED_DEMO = "352099001761481"


@pytest.mark.parametrize("content", [None, "", '{"version": 1, "tokens": []}\n'])
def test_configured_tokens_never_degrade_to_open(tmp_path: Path, content: str | None) -> None:
    """A token file that is missing, empty or lists nobody refuses every call; it does not
    turn security off (anonymous callers used to be served as admin)."""
    tokens = tmp_path / "tokens.json"
    if content is not None:
        tokens.write_text(content)
    settings = Settings(db=tmp_path / "db", tokens=tokens)
    with serving(settings) as running, running.channel() as ch:
        eir = eir_pb2_grpc.EquipmentIdentityRegisterStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            eir.CheckIMEI(eir_pb2.CheckIMEIRequest(imei=REGISTERED_DEMO))
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


def _jsonl(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text(text)
    return path


def test_a_10_mb_jsonl_field_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """One JSONL row with a 10 MB field is a malformed row whose message is short; the
    command's output stays small."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    _jsonl(tmp_path, '{"imei": "' + "9" * 10_000_000 + '"}\n')
    out = ceir(
        "import", "manufacturer", "m.jsonl", "--db", str(db), "--create", cwd=tmp_path, ok=(7,)
    )
    assert len(out.stdout) + len(out.stderr) < 5_000
    assert "too long" in out.stderr + out.stdout


def _peak_rss_kib(tmp_path: Path, *args: str) -> int:
    """The peak RSS of one `ceir` run, measured by a fresh parent whose only child it is."""
    from tests.security.test_attack_leaks import CEIR

    probe = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], capture_output=True, check=False)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, CEIR, *args],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    return int(done.stdout)


def test_a_csv_line_of_3m_columns_is_one_malformed_row(tmp_path: Path) -> None:
    """A CSV line of 3 million columns is a malformed row, refused (exit 7) without the
    memory of 3 million fields: the run costs about what a one-row file costs."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    header = "imei,brand,model,tpp_number,maker_id,produced_at\n"
    (tmp_path / "m.csv").write_text(header + "," * 3_000_000 + "\n")
    (tmp_path / "small.csv").write_text(header + "," * 5 + "\n")
    out = ceir(
        "import", "manufacturer", "m.csv", "--db", str(db), "--create", cwd=tmp_path, ok=(7,)
    )
    assert len(out.stdout) + len(out.stderr) < 5_000
    baseline = _peak_rss_kib(tmp_path, "import", "manufacturer", "small.csv", "--db", str(db))
    wide = _peak_rss_kib(tmp_path, "import", "manufacturer", "m.csv", "--db", str(db))
    assert wide < baseline + 12_000, (baseline, wide)


def test_deeply_nested_json_is_a_malformed_row_not_a_crash(tmp_path: Path) -> None:
    """200,000-deep JSON used to raise RecursionError (exit 1); it is a malformed row."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    _jsonl(tmp_path, "[" * 200_000 + "]" * 200_000 + "\n")
    out = ceir(
        "import", "manufacturer", "m.jsonl", "--db", str(db), "--create", cwd=tmp_path, ok=(7,)
    )
    assert "Traceback" not in out.stderr


def test_startup_line_names_the_open_default(tmp_path: Path) -> None:
    """`ceir serve` without security says it is open, loopback only, in its start-up line."""
    import os
    import signal
    import time

    from tests.security.test_attack_leaks import CEIR

    proc = subprocess.Popen(
        [CEIR, "serve", "--db", str(tmp_path / "db"), "--port", "0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while "serving on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)
    assert "open" in line, line
    assert "loopback" in line, line


def test_a_half_open_connection_is_closed_after_the_handshake_timeout(tmp_path: Path) -> None:
    """A TCP connection that never starts its handshake is closed by the server (within
    the 5 s handshake timeout), instead of holding a descriptor for as long as it likes."""
    import socket
    import time

    with serving(Settings(db=tmp_path / "db")) as running:
        sock = socket.create_connection(("127.0.0.1", running.port))
        sock.settimeout(0.5)
        started = time.monotonic()
        closed_after = None
        try:
            while time.monotonic() - started < 20:
                try:
                    if sock.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
        finally:
            sock.close()
    assert closed_after is not None, "the half-open connection was still open after 20 s"
    assert closed_after < 12
