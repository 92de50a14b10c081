"""Clear IMSIs at an operator's replica, sealed: never in clear on disk.

An operator's replica must later export its own notifications and exceptions lists with
the IMSIs it saw on its own network (DOMAIN.md §7), so it keeps each of them — and only
there — in ``imsi_vault``: the SIM's token (the replica's own identity-token key) ->
12-byte nonce + AES-256-GCM of the IMSI, the token as associated data. The 32-byte key
lives outside the store in ``<db>.site-key`` (0600, like ``<db>.token-key``): a stolen
``data.mdb`` or backup holds no IMSI it can read. The central register never holds one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import weakref
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ceir.errors import ConfigError
from ceir.store import Store

__all__ = ["SiteVault", "reveal", "site_key_path", "site_vault"]

_KEY_BYTES = 32
_NONCE = 12


class SiteVault:
    """Seals and opens IMSIs under one site key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, token: bytes, imsi: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, imsi.encode(), token)

    def open(self, token: bytes, sealed: bytes) -> str | None:
        """The IMSI sealed for *token*; None if the bytes do not open under this key."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], token).decode()
        except (InvalidTag, ValueError):
            return None


def site_key_path(store: Store) -> Path:
    """Where the site key of *store* lives: beside the store, not in it."""
    return store.path.with_name(f"{store.path.name}.site-key")


def _load(path: Path, *, create: bool) -> bytes:
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"no site key at {path}; it is kept beside the store") from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(_KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # a sibling's key won the race
                os.link(tmp, path)  # whole or not at all
        except OSError as exc:
            raise ConfigError(f"cannot write the site key {path}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return _load(path, create=False)
    except OSError as exc:
        raise ConfigError(f"cannot read the site key {path}: {exc.strerror}") from exc
    if len(key) != _KEY_BYTES:
        raise ConfigError(f"the site key {path} is damaged (not {_KEY_BYTES} bytes)")
    return key


_VAULTS: weakref.WeakKeyDictionary[Store, SiteVault] = weakref.WeakKeyDictionary()


def site_vault(store: Store) -> SiteVault:
    """The vault of *store*: its site key file, created on a writable store's first use."""
    found = _VAULTS.get(store)
    if found is None:
        found = _VAULTS[store] = SiteVault(_load(site_key_path(store), create=not store.readonly))
    return found


def reveal(store: Store, token: bytes) -> str | None:
    """The clear IMSI this site sealed for *token*, or None (not held here)."""
    with store.snapshot() as tables:
        sealed = tables.vault.get(token)
    if sealed is None:
        return None
    return site_vault(store).open(token, sealed)
