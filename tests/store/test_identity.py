"""Identity tokens: keyed HMAC under a per-store secret, created once, never reversible."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
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
