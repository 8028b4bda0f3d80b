"""Every module reference names the installed ``phaseflow.*`` namespace, and the script that
rewrites old-layout references (scripts/namespace_imports.py) changes only module names."""

# namespace_imports: skip (shows old module names on purpose)

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "namespace_imports", ROOT / "scripts" / "namespace_imports.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


namespace_imports = _load_script()
PATTERN = namespace_imports._module_pattern(ROOT)


def test_no_file_names_a_module_outside_the_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert namespace_imports.main(["--check"]) == 0, capsys.readouterr().out


def test_check_lists_a_stale_file_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "__init__.py").write_text("")
    (tmp_path / "streams" / "settings.py").write_text("")
    (tmp_path / "tool.py").write_text("from streams.settings import Settings\n")
    (tmp_path / "shown.md").write_text("<!-- namespace_imports: skip -->\n`streams.settings`\n")

    assert namespace_imports.main(["--check", "--repo", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "tool.py: names a module outside the phaseflow namespace" in out
    assert "shown.md" not in out
    assert (tmp_path / "tool.py").read_text() == "from streams.settings import Settings\n"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "from streams.settings import Settings",
            "from phaseflow.streams.settings import Settings",
        ),
        ("from models import events", "from phaseflow.models import events"),
        (
            "    from agents.predictions.bq import x",
            "    from phaseflow.agents.predictions.bq import x",
        ),
        ("import sinks.merge_sql", "import phaseflow.sinks.merge_sql"),
        (
            'logger="agents.predictions.coordinator"',
            'logger="phaseflow.agents.predictions.coordinator"',
        ),
        (
            '[sys.executable, "-m", "streams.cli"]',
            '[sys.executable, "-m", "phaseflow.streams.cli"]',
        ),
        (
            'exec "$python" -m streams.local.apache_kafka',
            'exec "$python" -m phaseflow.streams.local.apache_kafka',
        ),
        ('resources.files("streams")', 'resources.files("phaseflow.streams")'),
        ("see :mod:`sinks.merge_sql`.", "see :mod:`phaseflow.sinks.merge_sql`."),
    ],
)
def test_rewrites_module_names(old: str, new: str) -> None:
    assert namespace_imports.rewrite(old, PATTERN) == new
    assert namespace_imports.rewrite(new, PATTERN) == new  # a second run changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "Path(ROOT) / 'streams' / 'pipeline.toml'",
        "`streams/local/tansu.py`",
        "ctx.agents.readiness",
        "writes to the sinks. Then the models.",
        'components["sinks"]',
        "from phaseflow.streams.settings import Settings",
        "streams.no_such_module",
    ],
)
def test_leaves_paths_prose_and_attributes_alone(text: str) -> None:
    assert namespace_imports.rewrite(text, PATTERN) == text


def test_wraps_a_comment_the_longer_name_pushed_past_the_limit() -> None:
    line = "    # " + "word " * 17 + "(see phaseflow.streams.side_producer) and more"
    wrapped = namespace_imports.wrap_long_lines(line).split("\n")

    assert len(wrapped) == 2
    assert all(len(part) <= namespace_imports.LINE_LIMIT for part in wrapped)
    assert all(part.startswith("    # ") for part in wrapped)
    assert " ".join(part.removeprefix("    # ") for part in wrapped) == line.removeprefix("    # ")
