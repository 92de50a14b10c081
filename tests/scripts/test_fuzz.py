"""Fuzzing in the test suite: hypothesis drives the fuzz targets of scripts/fuzz, and a
short run of the script itself must report zero crashes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def load_fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ceir_fuzz", ROOT / "scripts" / "_fuzz.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = load_fuzz()

imei_like = st.text(alphabet=st.sampled_from("0123456789 -*#\n\uff11\u0663abc"), max_size=40).map(
    str.encode
)
anything = st.one_of(st.binary(max_size=300), imei_like, st.text(max_size=40).map(str.encode))


@pytest.mark.parametrize("name", sorted(FUZZ.TARGETS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=anything)
def test_fuzz_target_holds(name: str, data: bytes) -> None:
    """Each target (IMEI parser, handlers, decoders, credentials, feeds) survives any input."""
    FUZZ.TARGETS[name](data)


def test_fuzz_script_short_run_reports_zero_crashes() -> None:
    """`scripts/_fuzz.py --engine random` runs every target and finds nothing."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_fuzz.py"), "--engine", "random",
         "--cases", "7000"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(" cases, 0 crashes, engine random")
