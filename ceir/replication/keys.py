"""The central register's Ed25519 key pair: it signs, replicas verify.

``ceir replica keygen DIR`` writes ``signing.pem`` (private, mode 0600, stays on the
central site) and ``verify.pem`` (public, given to every replica).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ceir.errors import ConfigError

__all__ = ["generate", "load_signing_key", "load_verify_key"]

SIGNING_NAME = "signing.pem"
VERIFY_NAME = "verify.pem"


def generate(directory: Path) -> tuple[Path, Path]:
    """Write a new key pair into *directory*; refuses to overwrite one."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / SIGNING_NAME, directory / VERIFY_NAME
    for path in (private, public):
        if path.exists():
            raise ConfigError(f"{path} exists; remove it first or choose another directory")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The central's private key (PEM, PKCS#8, Ed25519)."""
    try:
        key = serialization.load_pem_private_key(_read(path, "signing key"), password=None)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not a PEM private key (ceir replica keygen makes one)"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """The central's public key (PEM, Ed25519)."""
    try:
        key = serialization.load_pem_public_key(_read(path, "verify key"))
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not a PEM public key (ceir replica keygen makes one)"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return key
