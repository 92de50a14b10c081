"""A newcomer's first hour (issue 9 §3): every mistake ends in one line and a documented code.

Black-box: each test runs the installed ``ceir`` command in a subprocess, as a new user
would, and asserts the exit code, the one-line message on stderr, and that no output
holds a Python traceback (or a gRPC C-core abort).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CEIR = Path(sys.executable).with_name("ceir")
ROOT = Path(__file__).resolve().parents[2]
IMPOSSIBLE = Path("/proc/ceir-newcomer")  # /proc takes no new files, not even from root


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEIR_")}
    env.update(extra or {})
    return env


def ceir(*args: str | Path, cwd: Path | None = None, timeout: float = 60) -> Ran:
    """Run ``ceir ARGS`` as a user would (no CEIR_* variables from the test's environment)."""
    done = subprocess.run(
        [str(CEIR), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def one_line(ran: Ran, code: int, *fragments: str) -> str:
    """Assert *ran* exited *code* with one ``ceir: ...`` line on stderr holding *fragments*."""
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    assert ran.code == code, (ran.code, ran.stderr)
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ceir: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def usage_error(ran: Ran, *fragments: str) -> str:
    """Assert a click usage error (exit 2) whose ``Error:`` line holds *fragments*."""
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    assert ran.code == 2, (ran.code, ran.stderr)
    errors = [line for line in ran.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, ran.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def luhn(body: str) -> str:
    """*body* (14 digits) with its check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def tac_file(path: Path) -> Path:
    path.write_text("tac,brand,model,device_type\n35209900,Nusantara,N1,Smartphone\n")
    return path


def new_store(tmp_path: Path, name: str = "db") -> Path:
    db = tmp_path / name
    ran = ceir("import", "tac", tac_file(tmp_path / f"{name}-tac.csv"), "--db", db, "--create")
    assert ran.code == 0, ran.stderr
    return db


CHECKED = "352099001761481"
"""The IMEI the serving tests check: registered by import into their store."""


def registered_store(tmp_path: Path, name: str = "db") -> Path:
    """A store holding TAC 35209900 and, imported as a manufacturer feed, CHECKED: a
    secured server starts with no demo data, so its tests load theirs."""
    db = new_store(tmp_path, name)
    feed = tmp_path / f"{name}-manufacturer.csv"
    feed.write_text(
        "imei,brand,model,tpp_number,maker_id,produced_at\n"
        f"{CHECKED},Nusantara,N1,TPP-1,M1,2024-01-01\n"
    )
    ran = ceir("import", "manufacturer", feed, "--db", db, "-q")
    assert ran.code == 0, ran.stderr
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``ceir serve ARGS --port 0`` in a subprocess; its log lines collected by a thread."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen(
            [
                str(CEIR),
                "serve",
                "--port",
                "0",
                "--s13",
                "off",
                "--web",
                "off",
                "--sbi",
                "off",
                *map(str, args),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = int(self.wait_for(r"serving on 127\.0\.0\.1:(\d+)").group(1))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    """Servers a test starts (append them); each is stopped in teardown."""
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


# -- unwritable or impossible paths -----------------------------------------------------


def test_serve_on_an_impossible_store_path_exits_5(tmp_path: Path) -> None:
    """`ceir serve --db /proc/x`: the store directory cannot be made; one line, exit 5."""
    ran = ceir(
        "serve",
        "--db",
        IMPOSSIBLE,
        "--port",
        "0",
        "--s13",
        "off",
        "--web",
        "off",
        "--sbi",
        "off",
        "--workers",
        "1",
    )
    one_line(ran, 5, f"cannot create the store directory {IMPOSSIBLE}")


def test_import_on_an_impossible_store_path_exits_5(tmp_path: Path) -> None:
    """`ceir import ... --db /proc/x --create`: one line, exit 5."""
    ran = ceir("import", "tac", tac_file(tmp_path / "t.csv"), "--db", IMPOSSIBLE, "--create")
    one_line(ran, 5, f"cannot create the store directory {IMPOSSIBLE}")


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "0", "--s13", "off", "--web", "off", "--sbi", "off", "--workers", "1"),
        ("import", "tac", "TAC"),
        ("import", "tac", "TAC", "--create"),
        ("audit", "352099001761481"),
        ("purge",),
        ("backup", "NEW"),
        ("verify",),
        ("restore", "BACKUP"),
        ("restore", "BACKUP", "--force"),
    ],
    ids=["serve", "import", "import-create", "audit", "purge", "backup", "verify", "restore",
         "restore-force"],
)  # fmt: skip
def test_db_naming_a_regular_file_exits_5(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`--db` naming a regular file: "is a file, not a store directory", exit 5 (the store
    code, not click's usage error), file intact."""
    regular = tmp_path / "notes.txt"
    regular.write_text("not a store\n")
    made = {"TAC": lambda: str(tac_file(tmp_path / "t.csv")), "NEW": lambda: str(tmp_path / "bk")}
    made["BACKUP"] = lambda: _backup_of(new_store(tmp_path), tmp_path / "bk")
    args = [made[a]() if a in made else a for a in command]
    ran = ceir(*args, "--db", regular)
    one_line(ran, 5, f"{regular} is a file, not a store directory")
    assert regular.read_text() == "not a store\n"


def _backup_of(db: Path, dest: Path) -> str:
    ran = ceir("backup", dest, "--db", db)
    assert ran.code == 0, ran.stderr
    return str(dest)


@pytest.mark.parametrize("command", ["restore", "verify"])
def test_a_regular_file_for_a_backup_or_store_exits_5(tmp_path: Path, command: str) -> None:
    """`ceir restore FILE` and `ceir verify --db` with nothing there: one line, exit 5."""
    regular = tmp_path / "notes.txt"
    regular.write_text("not a store\n")
    if command == "restore":
        ran = ceir("restore", regular, "--db", tmp_path / "db")
        one_line(ran, 5, f"backup {regular} is a file, not a backup directory")
        assert not (tmp_path / "db").exists()
    else:
        ran = ceir("verify", "--db", tmp_path / "nothing")
        one_line(ran, 5, f"no ceir store at {tmp_path / 'nothing'}")
    assert regular.read_text() == "not a store\n"


def test_backup_to_an_impossible_path_exits_5(tmp_path: Path) -> None:
    """`ceir backup /proc/bk`: the backup cannot be written; one line, exit 5."""
    db = new_store(tmp_path)
    ran = ceir("backup", IMPOSSIBLE / "bk", "--db", db)
    one_line(ran, 5, f"cannot write the backup {IMPOSSIBLE / 'bk'}")


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("gen", "tac", "OUT"), "OUT"),
        (("certs", "OUT"), "OUT"),
        (("token", "add", "portal", "--role", "consumer", "--tokens", "OUT"), "OUT"),
    ],
    ids=["gen", "certs", "token-add"],
)
def test_an_unwritable_output_exits_6(tmp_path: Path, args: tuple[str, ...], path: str) -> None:
    """gen, certs and token add to a path under /proc: "cannot write PATH", exit 6."""
    out = str(IMPOSSIBLE / "out.x")
    ran = ceir(*(out if a == path else a for a in args))
    one_line(ran, 6, f"cannot write {out}")


def test_import_checks_the_reject_report_can_be_written_first(tmp_path: Path) -> None:
    """`--rejects /proc/r.csv`: refused before anything is written (exit 6); the same file
    then imports normally (it was not recorded as imported)."""
    db = new_store(tmp_path)
    feed = tmp_path / "t2.csv"
    feed.write_text("tac,brand,model,device_type\n01234500,Acme,One,Tablet\nbad,x,y,z\n")
    ran = ceir("import", "tac", feed, "--db", db, "--rejects", IMPOSSIBLE / "r.csv")
    one_line(ran, 6, f"cannot write the reject report {IMPOSSIBLE / 'r.csv'}", "nothing")
    report = tmp_path / "r.csv"
    again = ceir(
        "import", "tac", feed, "--db", db, "--rejects", report, "-q", "--max-bad-ratio", "1"
    )
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("imported tac t2.csv: 2 rows; 1 accepted"), again.stdout
    assert (tmp_path / "r.csv").read_text().count("\n") == 2  # header + the bad row


# -- a truncated or damaged store --------------------------------------------------------


def _truncate(db: Path) -> None:
    data = db / "data.mdb"
    size = data.stat().st_size
    with data.open("r+b") as f:
        f.truncate(size // 2)


def _zero_meta(db: Path) -> None:
    data = db / "data.mdb"
    with data.open("r+b") as f:
        f.write(b"\0" * 8192)


@pytest.mark.parametrize("damage", [_truncate, _zero_meta], ids=["truncated", "zeroed-meta"])
@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "0", "--s13", "off", "--web", "off", "--sbi", "off", "--workers", "1"),
        ("serve", "--port", "0", "--s13", "off", "--web", "off", "--sbi", "off", "--workers", "2"),
        ("audit", "352099001761481"),
        ("import", "tac", "TAC"),
        ("purge",),
        ("backup", "BK"),
    ],
    ids=["serve", "serve-2", "audit", "import", "purge", "backup"],
)
def test_a_damaged_store_is_refused_before_it_is_mapped(
    tmp_path: Path, damage: object, command: tuple[str, ...]
) -> None:
    """Every command that opens a store checks its file first: exit 5, no SIGBUS (135)."""
    db = new_store(tmp_path)
    for _ in range(3):  # a few pages more, so that half the file loses some
        feed = tmp_path / f"more{_}.csv"
        rows = "".join(f"{35209900 + 1000 * _ + i:08d},B,M,Phone\n" for i in range(300))
        feed.write_text("tac,brand,model,device_type\n" + rows)
        assert ceir("import", "tac", feed, "--db", db, "-q").code == 0
    assert callable(damage)
    damage(db)
    args = [
        str(tac_file(tmp_path / "t.csv"))
        if a == "TAC"
        else str(tmp_path / "bk")
        if a == "BK"
        else a
        for a in command
    ]
    ran = ceir(*args, "--db", db)
    line = one_line(ran, 5, str(db / "data.mdb"))
    assert "truncated" in line or "not an LMDB file" in line


# -- feeds: empty files, line endings ------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl"])
def test_an_empty_feed_is_an_error(tmp_path: Path, name: str) -> None:
    """A 0-byte feed file is "no header" (exit 7), not "imported 0 rows"."""
    db = new_store(tmp_path)
    empty = tmp_path / name
    empty.write_bytes(b"")
    ran = ceir("import", "manufacturer", empty, "--db", db)
    one_line(ran, 7, f"{empty.name} is empty", "no header")


def _manufacturer_rows() -> tuple[list[str], dict[int, str], str]:
    """Lines of a manufacturer feed, {line number: IMEI} of its bad rows, and a good IMEI."""
    header = "imei,brand,model,tpp_number,maker_id,produced_at"
    good = [luhn(f"352099{i:08d}") for i in range(1, 7)]
    lines = [header]
    bad: dict[int, str] = {}
    for i, imei in enumerate(good):
        lines.append(f"{imei},Nusantara,N1,TPP-1,M1,2024-01-0{i + 1}")
        if i in (1, 4):
            wrong = imei[:-1] + str((int(imei[-1]) + 1) % 10)
            lines.append(f"{wrong},Nusantara,N1,TPP-1,M1,2024-01-01")
            bad[len(lines)] = wrong
    return lines, bad, good[5]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r\r\n"], ids=["LF", "CRLF", "CRCRLF"])
def test_line_numbers_are_the_lines_an_editor_shows(tmp_path: Path, ending: str) -> None:
    """Reject reports and audit entries give the LF-counted line, whatever the endings."""
    db = new_store(tmp_path)
    lines, bad, last_good = _manufacturer_rows()
    feed = tmp_path / "m.csv"
    feed.write_bytes(ending.join(lines).encode() + ending.encode())
    report = tmp_path / "m.rejects.csv"
    ran = ceir(
        "import",
        "manufacturer",
        feed,
        "--db",
        db,
        "--rejects",
        report,
        "-q",
        "--max-bad-ratio",
        "1",
    )
    assert ran.code == 0, ran.stderr
    rejects = report.read_text().splitlines()[1:]
    found = {int(row.split(",")[1]): row for row in rejects}
    assert sorted(found) == sorted(bad)
    for line, imei in bad.items():
        assert imei in found[line]
    history = ceir("audit", last_good, "--db", db)
    assert history.code == 0, history.stderr
    assert f"m.csv line {len(lines)})" in history.stdout, history.stdout


# -- writing commands refuse a missing store -------------------------------------------------


@pytest.mark.parametrize("command", [("import", "tac", "TAC"), ("purge",)], ids=["import", "purge"])
def test_a_typo_in_db_is_refused_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A --db that does not exist: "no ceir store at X; give --create", exit 5, nothing made;
    with --create the store is made."""
    typo = tmp_path / "registr"
    args = [str(tac_file(tmp_path / "t.csv")) if a == "TAC" else a for a in command]
    ran = ceir(*args, "--db", typo)
    one_line(ran, 5, f"no ceir store at {typo}", "--create")
    assert not typo.exists()
    created = ceir(*args, "--db", typo, "--create")
    assert created.code == 0, created.stderr
    assert (typo / "data.mdb").exists()


def test_the_default_store_is_created_without_create(tmp_path: Path) -> None:
    """The default path (var/ceir) is created by a first import, as the README shows."""
    ran = ceir("import", "tac", tac_file(tmp_path / "t.csv"), "-q", cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "var" / "ceir" / "data.mdb").exists()


# -- ceir serve: a busy port, SIGHUP ---------------------------------------------------------


@pytest.mark.parametrize("face", ["grpc", "s13", "web", "sbi"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_busy_port_fails_before_touching_the_store(
    tmp_path: Path, workers: str, face: str
) -> None:
    """A taken port (gRPC, S13, web or N5g-eir): "cannot listen on ...", exit 6, no store."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "fresh"
        faces = {"grpc": "0", "s13": "off", "web": "off", "sbi": "off"}
        faces[face] = str(port) if face == "grpc" else f"127.0.0.1:{port}"
        ports = ("--port", faces["grpc"], "--s13", faces["s13"], "--web", faces["web"])
        ports += ("--sbi", faces["sbi"])
        ran = ceir("serve", "--db", db, *ports, "--workers", workers)
    one_line(ran, 6, "cannot listen on", f"127.0.0.1:{port}")
    assert not db.exists()


def _token(tokens: Path, name: str) -> str:
    ran = ceir("token", "add", name, "--role", "consumer", "--tokens", tokens)
    assert ran.code == 0, ran.stderr
    return ran.stdout.strip()


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_the_token_file_in_every_worker(
    tmp_path: Path, serve: list[Serve], workers: int
) -> None:
    """After `ceir token revoke` and SIGHUP, every worker refuses the revoked token (exit 9)
    and still serves the others; each worker logs the reload; the server keeps running."""
    tokens = tmp_path / "tokens.json"
    revoked, kept = _token(tokens, "old"), _token(tokens, "new")
    db = registered_store(tmp_path)
    server = Serve("--db", db, "--tokens", tokens, "--workers", str(workers))
    serve.append(server)
    imei = (CHECKED, "--server", server.address)
    assert ceir("check", *imei, "--token", revoked).code == 0
    assert ceir("token", "revoke", "old", "--tokens", tokens).code == 0
    server.process.send_signal(signal.SIGHUP)
    for _ in range(workers):
        server.wait_for(r"reloaded bearer tokens from .*tokens\.json: 1 token")
    for _ in range(2 * workers):  # each `ceir check` is a new connection: any worker
        ran = ceir("check", *imei, "--token", revoked)
        one_line(ran, 9, "UNAUTHENTICATED")
    assert ceir("check", *imei, "--token", kept).code == 0
    assert server.process.poll() is None


def test_sighup_keeps_the_old_tokens_when_the_file_is_broken(
    tmp_path: Path, serve: list[Serve]
) -> None:
    """A token file broken between start and SIGHUP: the reload is refused and logged, the
    server keeps its tokens and keeps serving."""
    tokens = tmp_path / "tokens.json"
    secret = _token(tokens, "portal")
    server = Serve("--db", registered_store(tmp_path), "--tokens", tokens, "--workers", "1")
    serve.append(server)
    tokens.write_text("{not json")
    server.process.send_signal(signal.SIGHUP)
    server.wait_for(r"WARNING .*cannot reload bearer tokens")
    ran = ceir("check", CHECKED, "--server", server.address, "--token", secret)
    assert ran.code == 0, ran.stderr
    assert server.process.poll() is None


def test_sighup_reloads_the_tls_files(tmp_path: Path, serve: list[Serve]) -> None:
    """New certificate, key and client CA on disk + SIGHUP: new connections use them (a
    client of the new PKI is served, one of the old PKI is refused, exit 9)."""
    old, new, live = tmp_path / "old", tmp_path / "new", tmp_path / "live"
    for pki in (old, new):
        assert ceir("certs", pki).code == 0
    live.mkdir()
    names = ("server.pem", "server.key", "ca.pem")
    for name in names:
        (live / name).write_bytes((old / name).read_bytes())
    server = Serve(
        "--db",
        registered_store(tmp_path),
        "--workers",
        "2",
        "--tls-cert",
        live / "server.pem",
        "--tls-key",
        live / "server.key",
        "--client-ca",
        live / "ca.pem",
    )
    serve.append(server)

    def check(pki: Path) -> Ran:
        return ceir(
            "check",
            CHECKED,
            "--server",
            f"localhost:{server.port}",
            "--ca",
            pki / "ca.pem",
            "--cert",
            pki / "portal.pem",
            "--key",
            pki / "portal.key",
        )

    assert check(old).code == 0
    for name in names:
        (live / name).write_bytes((new / name).read_bytes())
    server.process.send_signal(signal.SIGHUP)
    for _ in range(2):
        server.wait_for(r"reloaded TLS files .*server\.pem")
    for _ in range(3):
        assert check(new).code == 0
        one_line(check(old), 9, "refused the connection's credentials")
    assert server.process.poll() is None


# -- ceir check: credentials, rate limits, addresses, timeouts -----------------------------------


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, Path]]:
    """A mutual-TLS server and its development PKI."""
    tmp = tmp_path_factory.mktemp("mtls")
    pki = tmp / "pki"
    assert ceir("certs", pki).code == 0
    server = Serve(
        "--db",
        registered_store(tmp),
        "--workers",
        "1",
        "--tls-cert",
        pki / "server.pem",
        "--tls-key",
        pki / "server.key",
        "--client-ca",
        pki / "ca.pem",
    )
    try:
        yield server, pki
    finally:
        server.stop()


def test_check_in_clear_against_tls_exits_9_with_a_hint(mtls: tuple[Serve, Path]) -> None:
    """Clear text against a TLS server: exit 9, "speaks TLS? give --ca" (not "is it running?")."""
    server, _pki = mtls
    ran = ceir("check", CHECKED, "--server", f"localhost:{server.port}")
    line = one_line(ran, 9, "TLS", "--ca")
    assert "running" not in line


def test_check_without_client_certificate_exits_9_with_a_hint(mtls: tuple[Serve, Path]) -> None:
    """TLS without a client certificate against mutual TLS: exit 9, "give --cert and --key"."""
    server, pki = mtls
    address = f"localhost:{server.port}"
    ran = ceir("check", CHECKED, "--server", address, "--ca", pki / "ca.pem")
    line = one_line(ran, 9, "--cert and --key")
    assert "running" not in line
    ok = ceir(
        "check",
        CHECKED,
        "--server",
        address,
        "--ca",
        pki / "ca.pem",
        "--cert",
        pki / "portal.pem",
        "--key",
        pki / "portal.key",
    )
    assert ok.code == 0, ok.stderr


@pytest.mark.parametrize(("given", "missing"), [("--cert", "--key"), ("--key", "--cert")])
def test_check_cert_without_key_is_a_usage_error(
    mtls: tuple[Serve, Path], given: str, missing: str
) -> None:
    """--cert without --key (or the reverse): usage error, exit 2 — not a C-core abort (134)."""
    server, pki = mtls
    path = pki / ("portal.pem" if given == "--cert" else "portal.key")
    address = f"localhost:{server.port}"
    ran = ceir("check", CHECKED, "--server", address, "--ca", pki / "ca.pem", given, path)
    usage_error(ran, given, missing)


def test_a_rate_limited_check_says_so_with_retry_after(tmp_path: Path, serve: list[Serve]) -> None:
    """Past the consumer rate: "rate-limited ... retry after N s", exit 4, not "is it running?"."""
    server = Serve(
        "--db",
        tmp_path / "db",
        "--workers",
        "1",
        "--consumer-rate",
        "0.01",
        "--consumer-burst",
        "1",
    )
    serve.append(server)
    imei = ("352099001761481", "--server", server.address)
    assert ceir("check", *imei).code == 0
    ran = ceir("check", *imei)
    line = one_line(ran, 4, "rate-limit", "retry after")
    assert re.search(r"retry after \d+ s", line), line
    assert "running" not in line


def test_check_server_without_port_uses_50051() -> None:
    """`--server HOST` means HOST:50051 (not gRPC's 443)."""
    ran = ceir("check", "352099001761481", "--server", "127.0.0.9", "--timeout", "1")
    one_line(ran, 4, "127.0.0.9:50051")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--server", "127.0.0.1:99999"), "99999"),
        (("--server", "127.0.0.1:0"), "port"),
        (("--server", "127.0.0.1:x"), "port"),
        (("--timeout", "0"), "--timeout"),
        (("--timeout", "-1"), "--timeout"),
    ],
    ids=["port-too-big", "port-0", "port-not-a-number", "timeout-0", "timeout-negative"],
)
def test_check_bad_address_or_timeout_is_a_usage_error(
    args: tuple[str, ...], fragment: str
) -> None:
    """Out-of-range ports and non-positive timeouts: usage errors, exit 2."""
    usage_error(ceir("check", "352099001761481", *args), fragment)


# -- stage ids, help -------------------------------------------------------------------------


def test_stage_ids_are_never_reused(tmp_path: Path, serve: list[Serve]) -> None:
    """A rejected stage's id is not given to the next stage: `ceir approve 1` from shell
    history cannot approve a different file."""
    db = new_store(tmp_path)
    server = Serve("--db", db, "--workers", "1", "--no-demo")
    serve.append(server)
    staged = []
    for n in (1, 2):
        feed = tmp_path / f"m{n}.csv"
        rows = [luhn(f"35209900{n}{i:05d}") for i in range(3)]
        feed.write_text(
            "imei,brand,model,tpp_number,maker_id,produced_at\n"
            + "".join(f"{imei},Nusantara,N1,TPP-1,M1,2024-01-01\n" for imei in rows)
        )
        ran = ceir("import", "manufacturer", feed, "--db", db, "--stage-above", "1")
        assert ran.code == 8, ran.stderr
        staged.append(int(re.search(r"as stage (\d+)", ran.stdout).group(1)))  # type: ignore[union-attr]
        rejected = ceir("reject", str(staged[-1]), "--server", server.address)
        assert rejected.code == 0, rejected.stderr
    assert staged == [1, 2]
    ran = ceir("approve", "1", "--digest", "0" * 64, "--server", server.address)
    one_line(ran, 10, "no stage 1")


@pytest.mark.parametrize("command", [("import",), ("purge",)])
def test_help_documents_create_and_exit_codes(command: tuple[str, ...]) -> None:
    """--create and the exit codes are in the writing commands' help."""
    ran = ceir(*command, "--help")
    assert ran.code == 0
    assert "--create" in ran.stdout
    for code in range(11):
        assert re.search(rf"\b{code} ", ran.stdout), code


# -- the README is true -------------------------------------------------------------------------


def test_the_readme_client_snippet_runs_as_a_script(tmp_path: Path, serve: list[Serve]) -> None:
    """The README's Python client snippet, saved as a file and run, answers as it says."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    snippet = next(b for b in blocks if "from ceir.client import Client" in b)
    server = Serve("--db", tmp_path / "db", "--workers", "1")
    serve.append(server)
    script = tmp_path / "client.py"
    script.write_text(snippet.replace("127.0.0.1:50051", server.address))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    expected = re.search(r"print\(.*\)\s+# (.*)", snippet)
    assert expected is not None
    assert done.stdout.strip() == expected.group(1).strip()


def _normal(line: str) -> str:
    """*line* without what changes from run to run: timings, dates, the local user."""
    line = re.sub(r"\d[\d,]*\.\d s; [\d,]+ rows/s", "<timing>", line)
    line = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<when>", line)
    return re.sub(r"local:\S+@\S+", "<local>", line)


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Whether *actual* lines are *expected*, where a line '...' stands for any lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return (
        bool(actual)
        and _normal(expected[0]) == _normal(actual[0])
        and (_matches(expected[1:], actual[1:]))
    )


def test_the_readme_feed_transcript_is_true(tmp_path: Path, serve: list[Serve]) -> None:
    """The README's `ceir import` transcript, command for command on the demo store that
    `./scripts/run` makes, prints what the README shows (timings and dates aside)."""
    shared = ROOT.parent / "shared" / "data" / "osmocom-tacdb.csv"
    if not shared.exists():
        pytest.skip(f"{shared} is not here (the README's transcript reads it)")
    readme = (ROOT / "README.md").read_text()
    block = next(
        b
        for b in re.findall(r"```console\n(.*?)```", readme, re.S)
        if b.startswith("$ .venv/bin/ceir import tac ../shared/data/osmocom-tacdb.csv")
    )
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    serve.append(Serve("--db", tmp_path / "var" / "ceir", "--workers", "1"))  # the demo data
    for command, expected in steps:
        args = shlex.split(command)
        assert args[0] == ".venv/bin/ceir"
        args = [a.replace("../shared", str(ROOT.parent / "shared")) for a in args[1:]]
        ran = ceir(*args, cwd=tmp_path)
        assert ran.code == 0, (command, ran.stderr)
        actual = ran.stderr.splitlines() + ran.stdout.splitlines()
        assert _matches(expected, actual), (command, expected, actual)
