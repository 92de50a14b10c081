"""`--server HOST[:PORT]`: the default port, IPv6, and what is refused."""

from __future__ import annotations

import click
import pytest

from ceir.cli._client import ServerAddress
from ceir.config import DEFAULT_PORT


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("localhost", f"localhost:{DEFAULT_PORT}"),
        ("10.0.0.7:7000", "10.0.0.7:7000"),
        ("::1", f"[::1]:{DEFAULT_PORT}"),
        ("[::1]", f"[::1]:{DEFAULT_PORT}"),
        ("[::1]:65535", "[::1]:65535"),
        (" ceir.example:1 ", "ceir.example:1"),
    ],
)
def test_server_address_defaults_the_port(given: str, address: str) -> None:
    """A host alone gets port 50051; a given port is kept; IPv6 is bracketed."""
    assert ServerAddress().convert(given, None, None) == address


@pytest.mark.parametrize("given", ["h:0", "h:65536", "h:x", "h:", ":50051", "[::1]x", "[]:1"])
def test_server_address_refuses_what_is_not_one(given: str) -> None:
    """Ports outside 1..65535, non-numbers and missing hosts are usage errors."""
    with pytest.raises(click.BadParameter):
        ServerAddress().convert(given, None, None)
