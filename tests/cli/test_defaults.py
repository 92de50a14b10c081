"""Each default is written once: the flags of ``ceir serve``, ``ceir import`` and
``ceir purge`` show and use the defaults of ``Settings``, ``Options`` and retention."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

import click
import pytest

from ceir import config
from ceir.cli.app import main
from ceir.config import Settings
from ceir.feeds import retention, staging
from ceir.feeds.base import Options


def _params(command: str) -> dict[str, Any]:
    cmd = main.commands[command]
    assert isinstance(cmd, click.Command)
    return {p.name: p.default for p in cmd.params if p.name}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


@pytest.mark.parametrize(("command", "cls"), [("serve", Settings), ("import", Options)])
def test_flags_default_to_their_dataclass_field(command: str, cls: type) -> None:
    """Every flag named after a field of the dataclass defaults to that field's default."""
    params = _params(command)
    shared = [f for f in dataclasses.fields(cls) if f.name in params]
    assert len(shared) >= 5
    for f in shared:
        flag = params[f.name]
        scalar = int | float | str | Path
        if not (isinstance(flag, scalar) and isinstance(_plain(f.default), scalar)):
            continue  # no default (click's UNSET), computed (--tokens) or parsed (--s13-peers)
        assert params[f.name] == _plain(f.default), f.name


def test_stage_above_is_one_number_everywhere() -> None:
    """The two-person threshold: Settings, staging.submit, ceir serve and ceir import agree."""
    import inspect

    submit = inspect.signature(staging.submit).parameters["stage_above"].default
    values = {
        Settings().stage_above,
        submit,
        _params("serve")["stage_above"],
        _params("import")["stage_above"],
    }
    assert values == {config.DEFAULT_STAGE_ABOVE}


def test_purge_flags_default_to_the_retention_defaults() -> None:
    """ceir purge --temporary-days / --identity-days are purge()'s own defaults."""
    import inspect

    signature = inspect.signature(retention.purge).parameters
    params = _params("purge")
    assert params["temporary_days"] == signature["temporary_days"].default == 90
    assert params["identity_days"] == signature["identity_days"].default == 365
    assert params["rejects_days"] == signature["rejects_days"].default
    assert signature["rejects_days"].default == config.DEFAULT_REJECTS_DAYS
