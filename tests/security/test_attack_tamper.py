"""Issue 10 §5: an edited backup (a device made EXEMPT, its audit entry and the origin's
actor rewritten) no longer passes `ceir verify` or `ceir restore`; a re-chained log is
caught by the head hash recorded earlier (`ceir verify --expect-head`)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import lmdb

from ceir.record import Reason, Record, Source
from ceir.store import audit
from ceir.store.audittables import AuditLog
from ceir.store.details import entry_of
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
    """Make the first device EXEMPT in *copy*; optionally rewrite its audit entry (an
    exception, not a registration), its origin's actor, and every batch's digest and link
    after them (all without any key: none is needed)."""
    env = lmdb.open(str(copy), max_dbs=32, subdir=True)
    key = int(imei(0)[:14]).to_bytes(8, "big")
    exempt = Record(Reason.EXEMPT, Source.MINISTRY).pack()
    with env.begin(write=True) as txn:
        devices, log = env.open_db(b"devices", txn=txn), env.open_db(b"audit", txn=txn)
        links, imports = env.open_db(b"audit_links", txn=txn), env.open_db(b"imports", txn=txn)
        txn.put(key, exempt, db=devices)
        if entry:  # a creation's entry is kept at the end of its details value
            details = env.open_db(b"details", txn=txn)
            cursor = txn.cursor(details)
            assert cursor.set_range(key)
            value = bytearray(cursor.value())
            assert entry_of(bytes(value)) is not None
            value[-1] = (value[-1] & 0xF0) | audit.Action.EXCEPTION
            txn.put(cursor.key(), bytes(value), db=details)
        if actor:
            first = (2).to_bytes(4, "big")  # the first manufacturer import (#1: the TACs)
            info = json.loads(txn.get(first, db=imports))
            info["actor"] = "ministry:kemenperin"
            txn.put(first, json.dumps(info).encode(), db=imports)
        if rechain:
            _rechain(txn, devices, log, links, imports, env.open_db(b"details", txn=txn))
    env.close()


def _rechain(txn: Any, devices: Any, log: Any, links: Any, imports: Any, details: Any) -> None:
    """Every batch's digest and link recomputed, as verify computes them."""
    batches = [(int.from_bytes(k, "big"), audit.Batch.unpack(v)) for k, v in txn.cursor(links)]
    covered: dict[int, list[tuple[int, bytes]]] = {first: [] for first, _b in batches}
    logged = AuditLog(txn, log, links, details).by_device()  # audit + details, as verify reads
    entries = [(key, seq, value) for key, found in logged for seq, value in found]
    for i, (key, seq, value) in enumerate(entries):
        if i + 1 < len(entries) and entries[i + 1][0] == key:
            new = audit.old_of(entries[i + 1][2])
        else:
            found = txn.get(key, db=devices)
            new = None if found is None else bytes(found)
        first = max(f for f, _b in batches if f <= seq)
        covered[first].append((seq, audit.hashed(key, seq, value, new)))
    prev = audit.GENESIS
    for first, batch in batches:
        digest = hashlib.sha256(b"".join(h for _s, h in sorted(covered[first]))).digest()
        fixed = batch._replace(digest=digest, prev=prev).pack()
        txn.put(first.to_bytes(8, "big"), fixed, db=links)
        info = json.loads(txn.get(batch.origin.to_bytes(4, "big"), db=imports))
        prev = audit.link(first, fixed, audit.fingerprint(info))


def test_a_device_edited_in_a_backup_fails_verify_and_restore(tmp_path: Path) -> None:
    """Only the device record edited: its audit batch's digest says otherwise."""
    copy, _head = _register(tmp_path)
    _exempt(copy, entry=False, actor=False, rechain=False)
    out = ceir("verify", "--db", str(copy), cwd=tmp_path, ok=(5,))
    assert "do not match its digest" in out.stderr
    out = ceir("restore", str(copy), "--db", str(tmp_path / "restored"), cwd=tmp_path, ok=(5,))
    assert not (tmp_path / "restored").exists()


def test_an_edited_audit_entry_and_actor_break_the_chain(tmp_path: Path) -> None:
    """The entry and the origin's actor rewritten too: the batch's digest and the next
    batch's link are wrong."""
    copy, _head = _register(tmp_path)
    _exempt(copy, entry=True, actor=True, rechain=False)
    out = ceir("verify", "--db", str(copy), cwd=tmp_path, ok=(5,))
    assert "audit: the entries of batch 1-3 (import #2) do not match its digest" in out.stderr
    assert "audit: batch 4-6 (import #3) does not follow the batch before it" in out.stderr
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
