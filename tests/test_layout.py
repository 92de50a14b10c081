"""The tree is the architecture: the evidence issue 9 asks for, pinned so it stays true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CEIR = ROOT / "ceir"
MAX_TOP_LEVEL = 12
MAX_LINES = 600
_IMPORTS_LMDB = re.compile(r"^\s*(import lmdb|from lmdb\b)", re.MULTILINE)


def _sources(*folders: str) -> list[Path]:
    return [
        path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "v1" not in path.relative_to(ROOT).parts  # generated code
    ]


def test_only_the_store_imports_lmdb() -> None:
    """No module of ceir/ outside ceir/store/ imports lmdb (nor do loadtest/ or scripts/)."""
    outside = [
        str(path.relative_to(ROOT))
        for path in _sources("ceir", "loadtest", "scripts")
        if _IMPORTS_LMDB.search(path.read_text(encoding="utf-8"))
        and not path.is_relative_to(CEIR / "store")
    ]
    assert outside == []


def test_the_store_does_import_lmdb() -> None:
    """The grep above can fail: the store itself imports lmdb, and the pattern sees it."""
    assert _IMPORTS_LMDB.search((CEIR / "store" / "env.py").read_text(encoding="utf-8"))


def test_ceir_top_level_holds_at_most_twelve_modules() -> None:
    """Sub-packages per concern: ceir/ itself keeps only the domain and the few public faces."""
    top = sorted(p.name for p in CEIR.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_no_module_is_over_six_hundred_lines() -> None:
    """Modules of ceir/, loadtest/ and scripts/ are split before they pass 600 lines."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in _sources("ceir", "loadtest", "scripts")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
