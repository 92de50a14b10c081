"""Bearer tokens: stored hashed, shown once, revocable; `ceir token` commands."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_CONFIG, main
from ceir.errors import ConfigError
from ceir.security.principals import Principal, Role
from ceir.security.tokens import TokenBook, digest


def test_a_token_authenticates_its_principal_and_nothing_else() -> None:
    """The clear token maps to its principal; a near miss maps to nobody."""
    book, token = TokenBook().add("telkomsel", Role.OPERATOR, "510-10")
    assert book.authenticate(token) == Principal("telkomsel", Role.OPERATOR, "510-10")
    assert book.authenticate(token[:-1]) is None
    assert book.authenticate("") is None
    assert book.authenticate("x" * 10_000) is None


def test_the_file_holds_hashes_not_tokens(tmp_path: Path) -> None:
    """Saved: the SHA-256 of the token, never the token; mode 0600; loads back equal."""
    book, token = TokenBook().add("bea", Role.CUSTOMS)
    path = tmp_path / "tokens.json"
    book.save(path)
    raw = path.read_text()
    assert token not in raw
    assert json.loads(raw)["tokens"][0]["sha256"] == digest(token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokenBook.load(path).authenticate(token) == Principal("bea", Role.CUSTOMS)


def test_operators_need_an_operator_id_and_others_must_not_have_one() -> None:
    """An operator without MCC-MNC, or a customs principal with one, is refused."""
    with pytest.raises(ConfigError, match="operator id"):
        TokenBook().add("x", Role.OPERATOR)
    with pytest.raises(ConfigError, match="operator id"):
        TokenBook().add("x", Role.CUSTOMS, "510-10")
    with pytest.raises(ConfigError, match="MCC-MNC"):
        TokenBook().add("x", Role.OPERATOR, "51010")


def test_duplicate_names_and_unknown_revocations_are_errors() -> None:
    """Names are unique; revoking a name that has no token says so."""
    book, _ = TokenBook().add("a", Role.ADMIN)
    with pytest.raises(ConfigError, match="exists"):
        book.add("a", Role.ADMIN)
    with pytest.raises(ConfigError, match="no token named"):
        book.revoke("b")


def test_a_damaged_file_is_a_config_error(tmp_path: Path) -> None:
    """Garbage in the token file stops the server with the file name, not a traceback."""
    path = tmp_path / "tokens.json"
    path.write_text('{"version": 1, "tokens": [{"name": "a"}]}')
    with pytest.raises(ConfigError, match="damaged"):
        TokenBook.load(path)


def test_token_add_list_revoke_commands(tmp_path: Path) -> None:
    """`ceir token add` prints the token once; list shows principals; revoke removes one."""
    path = str(tmp_path / "tokens.json")
    runner = CliRunner()
    added = runner.invoke(
        main,
        [
            "token",
            "add",
            "telkomsel",
            "--role",
            "operator",
            "--operator",
            "510-10",
            "--tokens",
            path,
        ],
    )
    assert added.exit_code == 0, added.output
    token = added.output.strip()
    assert token.startswith("ceir_")
    listed = runner.invoke(main, ["token", "list", "--tokens", path])
    assert listed.exit_code == 0
    assert listed.output.startswith("telkomsel\toperator:telkomsel@510-10\t")
    assert token not in listed.output
    bad = runner.invoke(main, ["token", "add", "x", "--role", "operator", "--tokens", path])
    assert bad.exit_code == EXIT_CONFIG
    assert "operator id" in bad.output
    revoked = runner.invoke(main, ["token", "revoke", "telkomsel", "--tokens", path])
    assert revoked.output == "revoked telkomsel\n"
    assert TokenBook.load(Path(path)).authenticate(token) is None
