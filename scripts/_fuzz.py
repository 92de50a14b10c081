"""Fuzz targets and two engines: atheris (coverage-guided, when installed) and random.

Run through ``scripts/fuzz``. A target takes bytes and raises on a bug: an exception
other than the documented refusal, or a broken invariant. Crashing inputs are written
to ``var/fuzz/crash-<target>-<sha1>`` for replay (``--replay FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CRASHES = ROOT / "var" / "fuzz"

Target = Callable[[bytes], None]
TARGETS: dict[str, Target] = {}
_STATE: dict[str, Any] = {}


def target(fn: Target) -> Target:
    TARGETS[fn.__name__.removeprefix("fuzz_").replace("_", "-")] = fn
    return fn


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _setup() -> None:
    """A demo store and the handlers on it, made once per process."""
    if _STATE:
        return
    from ceir.config import UnknownStatus
    from ceir.lookup import Checker
    from ceir.policy import Policy
    from ceir.server.device_check import DeviceCheck
    from ceir.store import demo, open_store

    tmp = Path(tempfile.mkdtemp(prefix="ceir-fuzz-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # crashes are kept in var/fuzz/
    store = open_store(tmp / "db")
    demo.load(store)
    policy = Policy(UnknownStatus.BLACKLISTED.status)
    _STATE.update(
        tmp=tmp,
        store=store,
        checker=Checker(store, policy),
        device_check=DeviceCheck(store, policy),
        loop=asyncio.new_event_loop(),
    )


# -- targets ---------------------------------------------------------------------------


@target
def fuzz_imei(data: bytes) -> None:
    """parse and parse_lenient: an Imei with consistent fields, or InvalidImeiError."""
    from ceir.errors import InvalidImeiError
    from ceir.imei import check_digit, parse, parse_lenient

    text = _text(data)
    for fn in (parse, parse_lenient):
        try:
            imei = fn(text)
        except InvalidImeiError:
            continue
        c = imei.canonical
        assert len(c) == 15, c
        assert c.isascii(), c
        assert c.isdigit(), c
        assert int(c[14]) == check_digit(c[:14])
        assert parse(c).key == imei.key
        assert len(imei.key) == 8


@target
def fuzz_check_imei(data: bytes) -> None:
    """CheckIMEIBatch on arbitrary strings: one answer each, INVALID_IMEI exactly when
    the strict parser refuses."""
    _setup()
    from ceir.errors import InvalidImeiError
    from ceir.imei import parse
    from ceir.record import Reason
    from ceir.v1 import eir_pb2

    texts = _text(data).split("\n")[:64]
    requests = [eir_pb2.CheckIMEIRequest(imei=t, request_id=t[:8]) for t in texts]
    answers = _STATE["checker"].check_many(requests).responses
    assert len(answers) == len(requests)
    for text, answer in zip(texts, answers, strict=True):
        try:
            parse(text)
            valid = True
        except InvalidImeiError:
            valid = False
        assert (answer.reason == Reason.INVALID_IMEI) != valid, (text, answer)
        assert answer.request_id == text[:8]


@target
def fuzz_check_packed(data: bytes) -> None:
    """CheckPacked on arbitrary keys: one valid result byte per key."""
    _setup()
    keys = data[: len(data) // 8 * 8]
    out = _STATE["checker"].check_packed(keys)
    assert len(out) == len(keys) // 8
    assert all(1 <= (b & 3) <= 3 and 1 <= (b >> 2) <= 8 for b in out)


@target
def fuzz_lookup_device(data: bytes) -> None:
    """The DeviceCheck handler: an answer, or InvalidImeiError (INVALID_ARGUMENT)."""
    _setup()
    from ceir.errors import InvalidImeiError
    from ceir.v1 import device_check_pb2

    request = device_check_pb2.LookupDeviceRequest(imei=_text(data))
    coro = _STATE["device_check"].LookupDevice(request, None)
    try:
        answer = _STATE["loop"].run_until_complete(coro)
    except InvalidImeiError:
        return
    assert len(answer.imei) == 15
    assert answer.state != 0


@target
def fuzz_proto(data: bytes) -> None:
    """Every request message: decodes or raises DecodeError; decoded ones round-trip."""
    from google.protobuf.message import DecodeError

    from ceir.v1 import device_check_pb2, eir_pb2

    for cls in (
        eir_pb2.CheckIMEIRequest,
        eir_pb2.CheckIMEIBatchRequest,
        eir_pb2.CheckPackedRequest,
        device_check_pb2.LookupDeviceRequest,
    ):
        try:
            message = cls.FromString(data)
        except DecodeError:
            continue
        assert cls.FromString(message.SerializeToString()) == message


@target
def fuzz_record(data: bytes) -> None:
    """Record.unpack of any 12 bytes: a record that packs back, or ValueError."""
    from ceir.record import Record

    value = data[:12].ljust(12, b"\x00")
    try:
        record = Record.unpack(value)
    except ValueError:
        return
    assert Record.unpack(record.pack()) == record


@target
def fuzz_credentials(data: bytes) -> None:
    """A bearer token or a client certificate from an attacker names nobody."""
    from ceir.security.principals import Role, principal_from_certificate
    from ceir.security.tokens import TokenBook

    if "book" not in _STATE:
        _STATE["book"] = TokenBook().add("a", Role.ADMIN)[0]
    assert _STATE["book"].authenticate(_text(data)) is None
    principal_from_certificate(data)


def _kept(exc: Any, feed: Any) -> None:
    """What a reject keeps and shows is short, and for a feed with personal columns holds
    no run of 6+ digits (a swapped NIK or MSISDN) and no quoted raw value."""
    from ceir.feeds.rows import MAX_MESSAGE, redact

    message = redact(exc.message, personal=bool(feed.personal))
    assert len(message) <= MAX_MESSAGE, "a reject message over the cap"
    if feed.personal:
        assert not re.search(r"\d{6,}", message), "a digit run in a personal feed's reject"


def _feed_target(kind_name: str) -> Target:
    """Reading and checking a feed file of one kind: rows become candidates and
    decisions, or FeedRowError (one row) / FeedFormatError (the file)."""

    def fuzz(data: bytes) -> None:
        _setup()
        from ceir.errors import FeedFormatError, FeedRowError
        from ceir.feeds import Format, Kind
        from ceir.feeds.base import Context, Options
        from ceir.feeds.kinds import feed_for
        from ceir.feeds.reader import MAX_LINE, open_feed
        from ceir.store.identity import Tokenizer

        kind = Kind(kind_name)
        feed = feed_for(kind)
        path = _STATE["tmp"] / f"fuzz.{'jsonl' if data[:1] == b'{' else 'csv'}"
        header = ",".join(feed.fields).encode() + b"\n"
        path.write_bytes(data if data[:1] in (b"{", b"#") else header + data)
        store = _STATE["store"]
        with store.snapshot() as tables:
            ctx = Context(tables, Options(), Tokenizer(b"k" * 32), 1.79e9)
            try:
                reader = open_feed(path, feed, Format.JSONL if data[:1] == b"{" else None)
                for _line, values in reader.rows():
                    if isinstance(values, FeedRowError):
                        _kept(values, feed)
                        continue
                    # The reader's limits hold before any row is parsed.
                    assert sum(map(len, values)) <= MAX_LINE, "a row longer than the line cap"
                    try:
                        candidate = feed.parse(values, ctx)
                        feed.decide(candidate, ctx)
                    except FeedRowError as exc:
                        _kept(exc, feed)
                        continue
            except FeedFormatError:
                return

    fuzz.__name__ = f"fuzz_feed_{kind_name.replace('-', '_')}"
    fuzz.__doc__ = f"The {kind_name} feed reader and rules on arbitrary file contents."
    return fuzz


for _kind in ("tac", "manufacturer", "customs", "operator-dump", "visitor", "exception",
              "lost-stolen"):  # fmt: skip
    target(_feed_target(_kind))


# -- engines ---------------------------------------------------------------------------

_SEEDS = [
    b"9" * 70_000 + b"\n352099001761481,B,M,T,X,2025-01-01\n",  # over the line cap
    b'{"imei": ' + b"[" * 40 + b"]" * 40 + b"}\n",  # over the nesting cap
    b"," * 100_000 + b"\n",  # very many columns
    b"352099001761481", b"35209900176148", b"3520990017614812", b"35-209900-176148-1",
    b"35 209900 176148 1", b"\xef\xbc\x93\xef\xbc\x95", b"000000000000000", b"12345678901234",
    b"35209900176148\n352099001761499\n86012345000002", b"\x0a\x0f352099001761481",
    b"352099001761481,Nusantara,N1,TPP-1,M1,2025-01-01\n",
    b"352099001761481,BC-1,NIK,3171012345678901,2025-01-10,PASSENGER,true\n",
    b"352099001761481,510101234567890,+6281200000001,2019-05-01\n",
    b"352099001761481,X1234567,2026-11-01,2027-01-01\n",
    b"352099001761481,DIPLOMAT,REF-1,\n352099001761481,POL-1,BLOCK,2026-01-01\n",
    b"35209900,Nusantara,N1,Smartphone\n3520990,\"A,B\",\"x\n",
    b'{"imei": "352099001761481", "brand": "N", "model": 1}\n',
]  # fmt: skip
_ALPHABET = b"0123456789 -*#abcdefABCDEF\n\x00\xff"


def random_input(rng: random.Random) -> bytes:
    """Structured noise: IMEI-like digit runs, mutated seeds, raw bytes, unicode digits."""
    roll = rng.random()
    if roll < 0.3:
        return bytes(rng.choice(_ALPHABET[:10]) for _ in range(rng.randrange(0, 20)))
    if roll < 0.6:
        data = bytearray(rng.choice(_SEEDS))
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            i = rng.randrange(len(data) + 1)
            if op == 0:
                data.insert(i, rng.choice(_ALPHABET))
            elif op == 1 and data:
                del data[min(i, len(data) - 1)]
            elif data:
                data[min(i, len(data) - 1)] = rng.randrange(256)
        return bytes(data)
    if roll < 0.8:
        return rng.randbytes(rng.randrange(0, 200))
    digits = "0123456789 -\u2013" + "".join(
        chr(c) for c in (*range(0xFF10, 0xFF1A), *range(0x660, 0x66A))
    )
    return "".join(rng.choice(digits) for _ in range(rng.randrange(0, 24))).encode()


def run_random(name: str, cases: int, seed: int) -> tuple[int, list[Path]]:
    rng = random.Random(f"{seed}:{name}")
    fn = TARGETS[name]
    crashes: list[Path] = []
    ran = 0
    while ran < cases and len(crashes) < 10:
        data = random_input(rng)
        ran += 1
        try:
            fn(data)
        except Exception:  # noqa: BLE001 - any exception is a finding
            crashes.append(_save(name, data))
    return ran, crashes


def _save(name: str, data: bytes) -> Path:
    CRASHES.mkdir(parents=True, exist_ok=True)
    path = CRASHES / f"crash-{name}-{hashlib.sha1(data).hexdigest()[:12]}"
    path.write_bytes(data)
    print(f"CRASH {name}: {path}\n{traceback.format_exc()}", file=sys.stderr)
    return path


def run_atheris(name: str, cases: int) -> tuple[int, list[Path]]:
    """Run one target under atheris in a child process (atheris exits when done)."""
    CRASHES.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--engine", "atheris-child", "--target", name,
         f"-runs={cases}", "-max_len=256", f"-artifact_prefix={CRASHES}/{name}-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    done = [line for line in proc.stderr.splitlines() if line.startswith("Done ")]
    ran = int(done[-1].split()[1]) if done else 0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        found = sorted(CRASHES.glob(f"{name}-crash-*"), key=os.path.getmtime)[-1:]
        return ran, found or [CRASHES / f"crash-{name}-unknown"]
    return ran, []


def atheris_child(name: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        import ceir.feeds.reader
        import ceir.feeds.rows
        import ceir.imei
        import ceir.lookup
        import ceir.record
        import ceir.server.device_check  # noqa: F401
    _setup()
    atheris.Setup([sys.argv[0], *argv], TARGETS[name])
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="total, over all targets")
    parser.add_argument("--engine", choices=["auto", "atheris", "random", "atheris-child"])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", type=Path, help="run one saved input through --target")
    args, rest = parser.parse_known_args()
    names = args.target or sorted(TARGETS)
    if args.engine == "atheris-child":
        atheris_child(names[0], rest)
        return 0
    if args.replay:
        TARGETS[names[0]](args.replay.read_bytes())
        print("no crash")
        return 0
    engine = args.engine or "auto"
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "random"
    per = -(-args.cases // len(names))
    print(f"fuzzing {len(names)} targets, {per:,} cases each, engine {engine}")
    total, crashes = 0, []
    for name in names:
        started = time.monotonic()
        ran, found = (
            run_atheris(name, per) if engine == "atheris" else run_random(name, per, args.seed)
        )
        total += ran
        crashes += found
        print(f"  {name:<16}{ran:>10,} cases {len(found):>3} crashes "
              f"{time.monotonic() - started:>7.1f} s")  # fmt: skip
    print(f"total {total:,} cases, {len(crashes)} crashes, engine {engine}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
