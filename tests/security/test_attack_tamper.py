"""Issue 10 §5: an edited backup (a device made EXEMPT, its audit entry and the origin's
actor rewritten) no longer passes `ceir verify` or `ceir restore`; a re-chained log is
caught by the head hash recorded earlier (`ceir verify --expect-head`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lmdb

from ceir.record import Reason, Record, Source
from ceir.store import audit
from tests.security.test_attack_leaks import _tac, ceir, imei

MAKER = "imei,brand,model,tpp_number,maker_id,produced_at"


def _register(tmp_path: Path) -> tuple[Path, str]:
    """A store with two manufacturer imports (3 devices, then 3 more); its backup."""
    db = tmp_path / "db"
    _tac(tmp_path, db)
    for n, start in ((1, 0), (2, 3)):
        rows = [f"{imei(start + i)},B,M,TPP-{n},M1,2025-01-01" for i in range(3)]
        (tmp_path / f"m{n}.csv").write_text("\n".join([MAKER, *rows]) + "\n")
        ceir("import", "manufacturer", f"m{n}.csv", "--db", str(db), "-q", cwd=tmp_path)
    out = ceir("verify", "--db", str(db), cwd=tmp_path).stdout
    found = re.search(r"^audit chain: 6 entries linked; head ([0-9a-f]{64})$", out, re.M)
    assert found, out
    ceir("backup", str(tmp_path / "copy"), "--db", str(db), cwd=tmp_path)
    return tmp_path / "copy", found.group(1)


def _exempt(copy: Path, *, entry: bool, actor: bool, rechain: bool) -> None:
    """Make the first device EXEMPT in *copy*; optionally rewrite its audit entry, its
    origin's actor, and every link after them (all without any key: none is needed)."""
    env = lmdb.open(str(copy), max_dbs=32, subdir=True)
    key = int(imei(0)[:14]).to_bytes(8, "big")
    exempt = Record(Reason.EXEMPT, Source.MINISTRY).pack()
    with env.begin(write=True) as txn:
        devices, log = env.open_db(b"devices", txn=txn), env.open_db(b"audit", txn=txn)
        imports = env.open_db(b"imports", txn=txn)
        txn.put(key, exempt, db=devices)
        if entry:
            seq = (1).to_bytes(8, "big")
            value = bytearray(txn.get(seq, db=log))
            new_at = len(value) - audit.HASH_BYTES - len(exempt)
            value[new_at : new_at + len(exempt)] = exempt
            txn.put(seq, bytes(value), db=log)
        if actor:
            raw = txn.get((1).to_bytes(4, "big"), db=imports)
            info = json.loads(raw)
            info["actor"] = "ministry:kemenperin"
            txn.put((1).to_bytes(4, "big"), json.dumps(info).encode(), db=imports)
        if rechain:
            prev = audit.GENESIS
            for k, v in list(txn.cursor(log)):
                seq_n = int.from_bytes(k, "big")
                fixed = bytes(v[: len(v) - audit.HASH_BYTES]) + prev
                txn.put(k, fixed, db=log)
                origin = audit.origin_of(fixed)
                info = json.loads(txn.get(origin.to_bytes(4, "big"), db=imports))
                prev = audit.link(seq_n, fixed, audit.fingerprint(info))
    env.close()


def test_a_device_edited_in_a_backup_fails_verify_and_restore(tmp_path: Path) -> None:
    """Only the device record edited: its last audit entry says otherwise."""
    copy, _head = _register(tmp_path)
    _exempt(copy, entry=False, actor=False, rechain=False)
    out = ceir("verify", "--db", str(copy), cwd=tmp_path, ok=(5,))
    assert "is not what its last audit entry" in out.stderr
    out = ceir("restore", str(copy), "--db", str(tmp_path / "restored"), cwd=tmp_path, ok=(5,))
    assert not (tmp_path / "restored").exists()


def test_an_edited_audit_entry_and_actor_break_the_chain(tmp_path: Path) -> None:
    """The entry and the origin's actor rewritten too: the next entry's link is wrong."""
    copy, _head = _register(tmp_path)
    _exempt(copy, entry=True, actor=True, rechain=False)
    out = ceir("verify", "--db", str(copy), cwd=tmp_path, ok=(5,))
    assert "audit: entry 2 does not follow entry 1" in out.stderr
    ceir("restore", str(copy), "--db", str(tmp_path / "restored"), cwd=tmp_path, ok=(5,))


def test_a_rechained_log_is_caught_by_the_recorded_head(tmp_path: Path) -> None:
    """Every link recomputed: the chain holds, but not through the head recorded before."""
    copy, head = _register(tmp_path)
    ceir("verify", "--db", str(copy), "--expect-head", head, cwd=tmp_path)
    _exempt(copy, entry=True, actor=True, rechain=True)
    ceir("verify", "--db", str(copy), cwd=tmp_path)  # self-consistent now
    out = ceir("verify", "--db", str(copy), "--expect-head", head, cwd=tmp_path, ok=(5,))
    assert "does not pass through the expected head" in out.stderr


def test_the_head_moves_on_as_the_log_grows(tmp_path: Path) -> None:
    """A head recorded earlier still verifies after more imports (the log only grew)."""
    db = tmp_path / "db"
    _copy, head = _register(tmp_path)
    rows = [f"{imei(10 + i)},B,M,TPP-3,M1,2025-01-01" for i in range(2)]
    (tmp_path / "m3.csv").write_text("\n".join([MAKER, *rows]) + "\n")
    ceir("import", "manufacturer", "m3.csv", "--db", str(db), "-q", cwd=tmp_path)
    out = ceir("verify", "--db", str(db), "--expect-head", head, cwd=tmp_path).stdout
    assert "audit chain: 8 entries linked" in out
    assert head not in out
