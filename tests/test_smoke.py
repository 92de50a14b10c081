"""The package imports and its command answers --help."""

from click.testing import CliRunner

from ceir.cli import main


def test_help_lists_serve_and_check() -> None:
    """`ceir --help` exits 0 and names the serve and check commands."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    assert "check" in result.output
