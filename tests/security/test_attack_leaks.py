"""Issue 10 §3, attacks on personal data: the token key, file modes, reject reports, spool
files and forged audit lines. Black-box: the ``ceir`` command in a subprocess, the store's
files read as bytes."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import lmdb

CEIR = str(Path(sys.executable).with_name("ceir"))
NIK = "3171012345678901"
PASSPORT = "X7654321"
MSISDN = "+6281234567890"
IMSI = "510101234567890"


def ceir(*args: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CEIR, *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=120
    )
    assert result.returncode in ok, (result.returncode, result.stdout, result.stderr)
    return result


def imei(serial: int) -> str:
    body = f"35209900{serial:06d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str(-total % 10)


def _customs(tmp_path: Path, rows: list[str], name: str = "customs.csv") -> Path:
    path = tmp_path / name
    header = "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _tac(tmp_path: Path, db: Path) -> None:
    (tmp_path / "tac.csv").write_text("tac,brand,model,device_type\n35209900,B,M,Smartphone\n")
    ceir("import", "tac", "tac.csv", "--db", str(db), "--create", "-q", cwd=tmp_path)


def _key_file(db: Path) -> Path:
    return db.with_name(f"{db.name}.token-key")


def test_token_key_lives_beside_the_store_never_in_it_or_its_backups(tmp_path: Path) -> None:
    """After a customs import the identity-token key is a 0600 file beside the store; its
    bytes are not in data.mdb nor in a backup (a stolen data.mdb reverses nothing)."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    _customs(tmp_path, [f"{imei(1)},BC-1,NIK,{NIK},2025-01-10,PASSENGER,true"])
    ceir("import", "customs", "customs.csv", "--db", str(db), "--create", "-q", cwd=tmp_path)
    key = _key_file(db)
    assert key.is_file(), "the token key must be a file beside the store"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_bytes()
    assert len(secret) >= 32
    ceir("backup", str(tmp_path / "copy"), "--db", str(db), cwd=tmp_path)
    for path in [db / "data.mdb", *(tmp_path / "copy").iterdir()]:
        data = path.read_bytes()
        assert secret not in data, f"the token key is in {path}"
        assert secret.hex().encode() not in data
    assert not list((tmp_path / "copy").glob("*token-key*"))


def test_an_old_stores_key_is_moved_out_and_tokens_stay_the_same(tmp_path: Path) -> None:
    """A store whose key sits in its config table (the old layout) gets it moved to the
    key file on the next write; the same NIK keeps its token (quotas still count)."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    old = bytes(range(100, 132))
    env = lmdb.open(str(db), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"token_secret", old, db=env.open_db(b"config", txn=txn))
    env.close()
    _key_file(db).unlink(missing_ok=True)  # an old store has no key file
    rows = [
        f"{imei(1)},BC-1,NIK,{NIK},2025-01-10,PASSENGER,true",
        f"{imei(2)},BC-2,NIK,{NIK},2025-01-10,PASSENGER,true",
    ]
    _customs(tmp_path, rows)
    ceir("import", "customs", "customs.csv", "--db", str(db), "--create", "-q", cwd=tmp_path)
    assert _key_file(db).read_bytes() == old
    assert old not in (db / "data.mdb").read_bytes() or _only_in_free_pages(db, old)
    env = lmdb.open(str(db), max_dbs=16, readonly=True)
    with env.begin() as txn:
        assert txn.get(b"token_secret", db=env.open_db(b"config", txn=txn)) is None
    env.close()
    # the third device of the same NIK on the same day is over the quota of 2
    _customs(tmp_path, [f"{imei(3)},BC-3,NIK,{NIK},2025-01-10,PASSENGER,true"], "more.csv")
    out = ceir("import", "customs", "more.csv", "--db", str(db), "--create", "-q", cwd=tmp_path)
    assert "quota" in out.stdout, out.stdout


def _only_in_free_pages(db: Path, secret: bytes) -> bool:
    """A compacted copy of *db* does not hold *secret* (it survived only in a free page)."""
    copy = db.with_name("compacted")
    env = lmdb.open(str(db), max_dbs=16, readonly=True)
    copy.mkdir()
    env.copy(str(copy), compact=True)
    env.close()
    return secret not in (copy / "data.mdb").read_bytes()


def test_store_files_and_backups_are_private(tmp_path: Path) -> None:
    """The store directory and a backup directory are 0700, their files 0600."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    ceir("backup", str(tmp_path / "copy"), "--db", str(db), cwd=tmp_path)
    for directory in (db, tmp_path / "copy"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        for path in directory.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


SWAPPED_HEADERS = {
    "customs": "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid",
    "visitor": "imei,passport_number,registered_at,valid_until",
    "operator-dump": "imei,imsi,msisdn,first_seen",
}


def _swapped_rows(kind: str, n: int) -> list[str]:
    """Rows of *kind* with the personal column swapped into another one."""
    rows = []
    for i in range(n):
        nik, msisdn = f"31710123456{i:05d}", f"+62812345{i:05d}"
        passport, imsi = f"X76{i:05d}", f"5101012345{i:05d}"
        rows.append(
            {
                "customs": f"{nik},BC-{i},NIK,{imei(i)},2025-01-10,PASSENGER,true",
                "visitor": f"{imei(i)},2026-11-01,{passport},2027-01-01",
                "operator-dump": f"{imei(i)},{imsi},2019-05-01,{msisdn}",
            }[kind]
        )
    return rows


def test_reject_reports_never_echo_a_personal_number(tmp_path: Path) -> None:
    """Columns swapped in 20 rows (imei<->id_number, registered_at<->passport_number,
    first_seen<->msisdn): neither the report, the output, data.mdb nor a backup holds a
    clear number; messages say what is wrong instead."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    for kind, header in SWAPPED_HEADERS.items():
        rows = _swapped_rows(kind, 20)
        (tmp_path / f"{kind}.csv").write_text("\n".join([header, *rows]) + "\n")
        report = tmp_path / f"{kind}.rejects.csv"
        out = ceir(
            "import", kind, f"{kind}.csv", "--db", str(db), "--create", "--rejects", str(report),
            cwd=tmp_path, ok=(0, 7),
        )  # fmt: skip
        text = out.stdout + out.stderr + report.read_text()
        assert "rejected" in text or "malformed" in text
        for found in re.findall(r"\d{6,}", text):
            assert found.startswith("35209900"), f"{kind}: a digit run {found} was echoed"
        assert "X76" not in text
    ceir("backup", str(tmp_path / "copy"), "--db", str(db), cwd=tmp_path)
    stored = (db / "data.mdb").read_bytes() + (tmp_path / "copy" / "data.mdb").read_bytes()
    for kind in SWAPPED_HEADERS:
        for row in _swapped_rows(kind, 20):
            for value in row.split(","):
                if re.fullmatch(r"\+?\d{10,}|X76\d{5}", value) and not value.startswith("352"):
                    assert value.encode() not in stored, f"{kind}: {value} is stored"


def test_audit_escapes_a_forged_filename(tmp_path: Path) -> None:
    """A file name with a newline and control characters cannot forge a line of
    `ceir audit`: the history stays one line per change."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    name = "m.csv\n2026-01-01 00:00:00 manufacturer by admin:ops\x1b[2K"
    (tmp_path / name).write_text(
        f"imei,brand,model,tpp_number,maker_id,produced_at\n{imei(7)},B,M,TPP-1,M1,2025-01-01\n"
    )
    ceir("import", "manufacturer", name, "--db", str(db), "--create", "-q", cwd=tmp_path)
    out = ceir("audit", imei(7), "--db", str(db), cwd=tmp_path).stdout
    assert "\x1b" not in out
    assert not any(line.startswith("2026-01-01 00:00:00 manufacturer") for line in out.splitlines())


def test_spool_directory_is_private_and_wiped_at_start(tmp_path: Path) -> None:
    """The store's spool (for uploads and decrypted stages) is a 0700 directory inside the
    store's directory; a file left there by a killed import is gone at the next start."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    spool = db / "spool"
    assert spool.is_dir()
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    left = spool / "ceir-import-left.csv"
    left.write_text(f"{NIK}\n")
    os.chmod(left, 0o600)
    ceir("import", "tac", "tac.csv", "--db", str(db), "--create", "-q", cwd=tmp_path)
    assert not left.exists()
