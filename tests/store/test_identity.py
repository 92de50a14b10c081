"""Identity tokens: keyed HMAC under a per-store secret, created once, never reversible."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.store import open_store
from ceir.store.identity import IdKind, Tokenizer, tokenizer_for


def test_secret_is_created_on_first_use_and_kept(tmp_path: Path) -> None:
    """The first tokenizer creates the secret; reopening the store gives the same tokens."""
    with open_store(tmp_path / "db") as store:
        first = tokenizer_for(store).token(IdKind.NIK, "3171012345678901")
    with open_store(tmp_path / "db") as store:
        again = tokenizer_for(store).token(IdKind.NIK, "3171012345678901")
    assert first == again
    assert len(first) == 16


def test_stores_have_different_secrets(tmp_path: Path) -> None:
    """Two stores tokenise the same number differently."""
    with open_store(tmp_path / "a") as a, open_store(tmp_path / "b") as b:
        assert tokenizer_for(a).token(IdKind.NIK, "1") != tokenizer_for(b).token(IdKind.NIK, "1")


def test_kind_is_part_of_the_token() -> None:
    """The same digits as NIK and as MSISDN give different tokens."""
    t = Tokenizer(b"k" * 32)
    assert t.token(IdKind.NIK, "628111") != t.token(IdKind.MSISDN, "628111")


def test_spacing_and_case_do_not_change_the_token() -> None:
    """' a 123-45 ' and 'A12345' are one passport."""
    t = Tokenizer(b"k" * 32)
    assert t.token(IdKind.PASSPORT, " a 123-45 ") == t.token(IdKind.PASSPORT, "A12345")


def test_short_secret_is_refused() -> None:
    """A secret under 16 bytes is a programming error."""
    with pytest.raises(ValueError, match="16 bytes"):
        Tokenizer(b"short")


@given(st.text(min_size=1, max_size=30))
def test_token_never_contains_the_number(value: str) -> None:
    """The shown token is tok_ + 32 hex digits whatever the number."""
    text = Tokenizer(b"s" * 32).text(IdKind.PASSPORT, value)
    assert text.startswith("tok_")
    assert len(text) == 36
    int(text[4:], 16)


def test_workers_creating_the_key_at_once_all_read_one_whole_key(tmp_path: Path) -> None:
    """Sibling workers that create the identity-token key at the same moment all end with
    the same whole key: none reads the file half-written (it appears only once complete)."""
    import threading

    from ceir.store import identity

    path = tmp_path / "db.token-key"
    barrier = threading.Barrier(16)
    found: list[bytes] = []

    def create(n: int) -> None:
        barrier.wait()
        found.append(identity._write_key(path, bytes([n]) * 32))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16
    assert len(set(found)) == 1
    assert path.read_bytes() == found[0]
    assert (path.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.token-key"]


def _reference(key: bytes, kind: IdKind, value: bytes) -> bytes:
    """The token as the standard library's one-shot HMAC makes it (the oracle)."""
    import hmac

    return hmac.digest(key, kind.value.encode() + b"\x00" + value, "sha256")[:16]


column = st.lists(st.text(alphabet="0123456789+", min_size=1, max_size=40), max_size=60)


@settings(max_examples=60)
@given(values=column, key=st.binary(min_size=16, max_size=100), kind=st.sampled_from(IdKind))
def test_column_tokens_are_the_hmac_of_each_value(
    values: list[str], key: bytes, kind: IdKind
) -> None:
    """``digests`` over a column cut from one buffer (C when built, and hashlib) gives each
    value's HMAC-SHA256 prefix, as ``token`` does one at a time; keys past a block too."""
    import numpy as np

    buf = b"x," + ",".join(values).encode() + b",y"
    lengths = np.array([len(v) for v in values], np.int64)
    starts = 2 + (np.cumsum(lengths + 1) - lengths - 1).astype(np.int64)
    stops = starts + lengths
    t = Tokenizer(key)
    want = [_reference(key, kind, v.encode()) for v in values]
    assert [bytes(r) for r in t.digests(kind, buf, starts, stops)] == want
    assert [bytes(r) for r in t._digests(kind, buf, starts, stops)] == want
    assert [t.token(kind, v) for v in values] == want
    assert t.texts(kind, values) == ["tok_" + w.hex() for w in want]


def test_single_tokens_normalise_as_issue_10_says() -> None:
    """NFKC, upper case, separators dropped: the token is the HMAC of the normal form."""
    key = b"q" * 32
    t = Tokenizer(key)
    assert t.token(IdKind.NIK, "\uff13\uff11\uff17\uff11-0123 4567.8901") == _reference(
        key, IdKind.NIK, b"3171012345678901"
    )
    assert t.texts(IdKind.PASSPORT, [" c-447_1234 "]) == [
        "tok_" + _reference(key, IdKind.PASSPORT, b"C4471234").hex()
    ]


def test_column_outside_the_buffer_is_refused() -> None:
    """The C path checks every offset against the buffer (no read past its end)."""
    import numpy as np

    from ceir.store import identity

    if identity._hmac is None:
        pytest.skip("the C tokens were not built (no compiler or libcrypto at install)")
    t = Tokenizer(b"k" * 32)
    with pytest.raises(ValueError, match="outside"):
        t.digests(IdKind.IMSI, b"123", np.array([0], np.int64), np.array([4], np.int64))
    with pytest.raises(ValueError, match="outside"):
        t.digests(IdKind.IMSI, b"123", np.array([2], np.int64), np.array([1], np.int64))
