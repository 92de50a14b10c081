"""Personal numbers (NIK, passport, MSISDN, IMSI) become keyed tokens on read.

A token is HMAC-SHA256 over the kind and the normalised number, under a 32-byte secret
kept in the store's ``config`` sub-database and created on first use; the first 16 bytes
are kept. Same number and kind -> same token within one store, so quotas can count per
identity, but the number cannot be recovered from the token without the secret, and the
clear value is never stored, logged or returned.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from typing import Any

from ceir.store import Store

__all__ = ["TOKEN_BYTES", "IdKind", "Tokenizer", "tokenizer_for"]

TOKEN_BYTES = 16
_SECRET_KEY = b"token_secret"
_SECRET_BYTES = 32


class IdKind(enum.Enum):
    """What kind of personal number a token stands for (part of the HMAC input)."""

    NIK = "NIK"
    PASSPORT = "PASSPORT"
    MSISDN = "MSISDN"
    IMSI = "IMSI"


def normalise(value: str) -> str:
    """The form that is tokenised: no surrounding or inner spaces/dashes, upper case."""
    return "".join(value.split()).replace("-", "").upper()


class Tokenizer:
    """Turns personal numbers into tokens under one secret."""

    __slots__ = ("_cache", "_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._key = secret
        self._cache: dict[tuple[IdKind, str], bytes] = {}

    def token(self, kind: IdKind, value: str) -> bytes:
        """The 16-byte token of *value* (a *kind* number)."""
        key = (kind, value)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        message = f"{kind.value}\x00{normalise(value)}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:TOKEN_BYTES]
        if len(self._cache) < 65536:
            self._cache[key] = digest
        return digest

    def text(self, kind: IdKind, value: str) -> str:
        """The token as it is shown: ``tok_`` + 32 hex digits."""
        return "tok_" + self.token(kind, value).hex()


def tokenizer_for(store: Store) -> Tokenizer:
    """The tokenizer of *store*, creating its secret on first use (race-free)."""
    config = store.dbs["config"]
    if config is not None:
        with store.snapshot() as txn:
            found = txn.get(_SECRET_KEY, db=config)
        if found is not None:
            return Tokenizer(bytes(found))
    candidate = secrets.token_bytes(_SECRET_BYTES)

    def create(txn: Any) -> bytes:
        # put(overwrite=False) keeps a secret another process created first.
        txn.put(_SECRET_KEY, candidate, db=store.dbs["config"], overwrite=False)
        return bytes(txn.get(_SECRET_KEY, db=store.dbs["config"]))

    return Tokenizer(store.write(create))
