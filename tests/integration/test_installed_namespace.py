"""The built wheel installs one name, ``phaseflow``, so a processor's own ``models``, ``agents``,
``streams`` or ``sinks`` package (first on ``sys.path``) cannot shadow ours.

The wheel is built from a copy of the checkout (symlinks kept, as in a clone) and unpacked into
a directory put on ``PYTHONPATH`` after the decoys; the commands run in fresh processes. Those
processes use this interpreter's installed dependencies, which include the ``local`` extra the
demo needs (``dev`` pulls it in); the wheel's metadata is checked to declare it as that extra.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from phaseflow.streams.local.extra import LOCAL_EXTRA_PACKAGES, missing_local_packages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "agents", "models", "sinks")
#: Guards against a hanging build or command; not a performance assertion.
HANG_GUARD_SECONDS = 300


@dataclass(frozen=True)
class Install:
    """The unpacked wheel and, to go before it on ``PYTHONPATH``, the decoy packages."""

    wheel: Path
    site: Path
    decoys: Path

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PHASEFLOW_")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.decoys), str(self.site)])
        return env

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=cwd,
            timeout=HANG_GUARD_SECONDS,
            check=False,
        )


def _build_wheel(out: Path) -> Path:
    source = out / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in (*PACKAGES, "phaseflow"):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=ignore)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(out / "dist"), str(source)),
        ],
        check=True,
        timeout=HANG_GUARD_SECONDS,
    )
    (wheel,) = (out / "dist").glob("phaseflow-*.whl")
    return wheel


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    wheel = _build_wheel(tmp_path_factory.mktemp("wheel"))
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    decoys = tmp_path_factory.mktemp("decoys")
    for name in PACKAGES:
        (decoys / name).mkdir()
        (decoys / name / "__init__.py").write_text(
            f"raise ImportError('decoy {name}: a processor\\'s own package, not phaseflow\\'s')\n"
        )
    return Install(wheel=wheel, site=site, decoys=decoys)


def test_wheel_installs_only_the_phaseflow_name(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as archive:
        names = archive.namelist()
        dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        top_level = {name.split("/")[0] for name in names} - {dist_info}
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())

    assert top_level == {"phaseflow"}
    for package in PACKAGES:
        assert f"phaseflow/{package}/__init__.py" in names
        assert f"phaseflow/{package}/py.typed" in names
    assert "phaseflow/streams/pipeline.toml" in names
    # The Apache Kafka launcher is test/dev tooling (tests/support/): not in the wheel, and
    # neither is the fault proxy.
    assert not [name for name in names if "kafka-pom" in name or "apache_kafka" in name]
    assert not [name for name in names if "fault_proxy" in name]
    assert entry_points["console_scripts"]["phaseflow"] == "phaseflow.streams.cli:main"


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ (]", requirement, maxsplit=1)[0]


def test_the_local_services_packages_are_the_local_extra(install: Install) -> None:
    with zipfile.ZipFile(install.wheel) as archive:
        (metadata,) = (name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    requires = [line.removeprefix("Requires-Dist: ") for line in lines if "Requires-Dist:" in line]
    local = {_requirement_name(r) for r in requires if re.search(r"extra == .local.", r)}
    base = {_requirement_name(r) for r in requires if "extra ==" not in r}

    assert "Provides-Extra: local" in lines
    assert local == set(LOCAL_EXTRA_PACKAGES.values())
    assert base, "the wheel declares no dependencies"
    assert not base & local


def test_decoy_packages_do_not_shadow_phaseflow(install: Install, tmp_path: Path) -> None:
    # The decoys really come first: this is what `import models` finds.
    shadowed = install.run("-c", "import models", cwd=tmp_path)
    assert shadowed.returncode != 0
    assert "decoy models" in shadowed.stderr

    imported = install.run(
        "-c", "import phaseflow.streams.cli as c; print(c.__file__)", cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).is_relative_to(install.site)

    registry = install.site / "phaseflow" / "streams" / "pipeline.toml"
    check = install.run(
        "-m", "phaseflow.streams.cli", "registry", "check", str(registry), cwd=tmp_path
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip(), "registry check printed nothing"
    assert "Traceback" not in check.stderr


def test_demo_runs_with_decoy_packages_first(install: Install, tmp_path: Path) -> None:
    assert missing_local_packages() == [], "install the dev (or local) extra: make setup"
    demo = install.run("-m", "phaseflow.streams.cli", "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "phaseflow demo: game day" in demo.stdout
    assert "decoy" not in demo.stdout + demo.stderr
