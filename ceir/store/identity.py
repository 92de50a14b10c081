"""Personal numbers (NIK, passport, MSISDN, IMSI) become keyed tokens on read.

A token is HMAC-SHA256 over the kind and the normalised number, under a 32-byte secret
created on first use; the first 16 bytes are kept. Same number and kind -> same token
within one store, so quotas can count per identity, but the number cannot be recovered
from the token without the secret, and the clear value is never stored, logged or returned.

The secret lives **outside** the store, in ``<db>.token-key`` beside it (mode 0600, like
the stage key): a stolen ``data.mdb`` or backup holds tokens but no key, so a NIK cannot
be reversed from it by trying the numbers of a known prefix. Back the key file up apart
from the store. A store made before the key moved out kept it in its ``config`` table;
the first writable use moves it to the key file and deletes it from the table.
"""

from __future__ import annotations

import enum
import hashlib
import os
import secrets
import unicodedata
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ceir.errors import ConfigError
from ceir.store import Store
from ceir.store.tables import TOKEN_BYTES

try:  # the column tokens in C (ceir/store/_hmac.c), when it was built
    from ceir.store import _hmac
except ImportError:  # pragma: no cover - no compiler or libcrypto at install: hashlib
    _hmac = None  # type: ignore[assignment]

__all__ = ["TOKEN_BYTES", "IdKind", "Tokenizer", "key_path", "tokenizer_for"]

_SECRET_KEY = b"token_secret"
_SECRET_BYTES = 32


class IdKind(enum.Enum):
    """What kind of personal number a token stands for (part of the HMAC input)."""

    NIK = "NIK"
    PASSPORT = "PASSPORT"
    MSISDN = "MSISDN"
    IMSI = "IMSI"


_SEPARATORS = frozenset(" -./_")


def normalise(value: str) -> str:
    """The form that is tokenised: NFKC (fullwidth digits are digits), upper case, no
    spaces or separators (``-``, ``.``, ``/``, ``_``)."""
    folded = unicodedata.normalize("NFKC", value).upper()
    return "".join(c for c in folded if c not in _SEPARATORS and not c.isspace())


class Tokenizer:
    """Turns personal numbers into tokens under one secret.

    The HMAC's inner and outer hash states after the key block are made once (RFC 2104),
    so a token costs two SHA-256 compressions and no key set-up: a third of
    ``hmac.digest``'s time here, and the bulk import makes two per row.
    """

    __slots__ = ("_cache", "_inner", "_key", "_outer")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._key = secret
        block = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        block = block.ljust(64, b"\0")
        self._inner: Any = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer: Any = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._cache: dict[tuple[IdKind, str], bytes] = {}

    def _mac(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return bytes(outer.digest()[:TOKEN_BYTES])

    def token(self, kind: IdKind, value: str) -> bytes:
        """The 16-byte token of *value* (a *kind* number)."""
        key = (kind, value)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        # Digits are their own normal form (an IMSI, the common case: skip NFKC).
        plain = value if value.isascii() and value.isdigit() else normalise(value)
        digest = self._mac(f"{kind.value}\x00{plain}".encode())
        if len(self._cache) < 65536:
            self._cache[key] = digest
        return digest

    def text(self, kind: IdKind, value: str) -> str:
        """The token as it is shown: ``tok_`` + 32 hex digits."""
        return "tok_" + self.token(kind, value).hex()

    def texts(self, kind: IdKind, values: Sequence[str]) -> list[str]:
        """:meth:`text` of many values, without the cache."""
        prefix, out = f"{kind.value}\x00", []
        for value in values:
            # Digits and "+" are their own normal form (the common case: skip NFKC).
            plain = value if value.isascii() and value.replace("+", "").isdigit() else None
            message = (prefix + (normalise(value) if plain is None else plain)).encode()
            out.append("tok_" + self._mac(message).hex())
        return out

    def digests(
        self, kind: IdKind, buf: bytes, starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.uint8]:
        """The tokens, ``(n, 16)``, of the values ``buf[starts[i]:stops[i]]`` (the bulk
        import's columns): each value must be non-empty ASCII in its normal form already
        (digits and ``+``: the caller checks), as no normalising is done here.

        In C when it was built (no Python object per value); else with hashlib.
        """
        n = len(starts)
        if not n:
            return np.zeros((0, TOKEN_BYTES), np.uint8)
        starts = np.ascontiguousarray(starts, np.int64)
        stops = np.ascontiguousarray(stops, np.int64)
        if _hmac is not None:
            raw = _hmac.macs(self._key, f"{kind.value}\x00".encode(), buf, starts.data, stops.data)
            return np.frombuffer(raw, np.uint8).reshape(n, TOKEN_BYTES)
        return self._digests(kind, buf, starts, stops)

    def _digests(
        self, kind: IdKind, buf: bytes, starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.uint8]:
        """:meth:`digests` with hashlib."""
        n, prefix = len(starts), f"{kind.value}\x00".encode()
        messages = [prefix + buf[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
        inner, outer = self._inner.copy, self._outer.copy
        out = []
        for message in messages:
            h = inner()
            h.update(message)
            o = outer()
            o.update(h.digest())
            out.append(o.digest())
        return np.frombuffer(b"".join(out), np.uint8).reshape(n, 32)[:, :TOKEN_BYTES]


def key_path(store: Store) -> Path:
    """Where the identity-token key of *store* lives: beside the store, not in it."""
    return store.path.with_name(f"{store.path.name}.token-key")


def _read_key(path: Path) -> bytes | None:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the identity-token key {path}: {exc.strerror}") from exc
    if len(key) < 16:
        raise ConfigError(f"the identity-token key {path} is damaged (under 16 bytes)")
    return key


def _write_key(path: Path, key: bytes) -> bytes:
    """Create the key file with *key* (0600), or read the one another process made first.

    The key is written whole to a private file first and then linked into place, so a
    process that finds the key file (a sibling worker starting at the same moment) never
    reads it half-written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            found = _read_key(path)
            if found is None:  # pragma: no cover - created and removed meanwhile
                raise ConfigError(f"the identity-token key {path} vanished") from None
            return found
    except OSError as exc:
        raise ConfigError(f"cannot write the identity-token key {path}: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return key


_TOKENIZERS: weakref.WeakKeyDictionary[Store, Tokenizer] = weakref.WeakKeyDictionary()


def tokenizer_for(store: Store) -> Tokenizer:
    """The tokenizer of *store*: its key file, created on first use (race-free); an old
    store's key is moved out of its ``config`` table. Kept per open store."""
    found = _TOKENIZERS.get(store)
    if found is None:
        found = _TOKENIZERS[store] = _load_tokenizer(store)
    return found


def _load_tokenizer(store: Store) -> Tokenizer:
    path = key_path(store)
    key = _read_key(path)
    with store.snapshot() as tables:
        old = tables.config.get(_SECRET_KEY)
    if old is not None:
        if store.readonly:
            return Tokenizer(key if key is not None else old)
        if key is None:
            key = _write_key(path, old)
        if key != old:
            raise ConfigError(
                f"store {store.path} still holds an identity-token key that differs from "
                f"{path}; restore the key file that belongs to this store"
            )
        store.write(lambda tables: tables.config.delete(_SECRET_KEY))
        return Tokenizer(key)
    if key is None:
        if store.readonly:
            raise ConfigError(f"no identity-token key at {path}; it is kept beside the store")
        key = _write_key(path, secrets.token_bytes(_SECRET_BYTES))
    return Tokenizer(key)
