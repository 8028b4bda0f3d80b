"""scripts/move_modules.py: what it rewrites, what it leaves, that it runs twice to the same text,
and that the repository is in the state it produces."""

# move_modules: skip (shows old module names on purpose)

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "move_modules", ROOT / "scripts" / "move_modules.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


move_modules = load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "from phaseflow.streams.settings import Settings",
            "from phaseflow.streams.core.settings import Settings",
        ),
        ("import phaseflow.streams.clock as c", "import phaseflow.streams.core.clock as c"),
        (
            "from phaseflow.streams import topic_names",
            "from phaseflow.streams.core import topic_names",
        ),
        (
            'monkeypatch.setattr("phaseflow.streams.topics.AIOKafkaConsumer", x)',
            'monkeypatch.setattr("phaseflow.streams.core.topics.AIOKafkaConsumer", x)',
        ),
        (
            "see :class:`phaseflow.streams.registry.Registry` in streams/registry.py",
            "see :class:`phaseflow.streams.core.registry.Registry` in streams/core/registry.py",
        ),
        (
            "from phaseflow.streams.web.audit import AuditRecord",
            "from phaseflow.models.audit import AuditRecord",
        ),
        (
            "from phaseflow.sinks.bigquery_client import make_bigquery_client",
            "from phaseflow.streams.core.bigquery_client import make_bigquery_client",
        ),
        (
            "from phaseflow.streams import kafka_clients, topic_names",
            (
                "from phaseflow.streams.core import kafka_clients\n"
                "from phaseflow.streams.core import topic_names"
            ),
        ),
        (
            "from phaseflow.streams.kafka_clients import consumer",
            "from phaseflow.streams.core.kafka_clients import consumer",
        ),
    ],
)
def test_rewrites_every_kind_of_reference(text: str, expected: str) -> None:
    assert move_modules.rewrite(text) == expected
    assert move_modules.rewrite(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "from phaseflow.streams.registry_check import check",  # only starts like registry
        "from phaseflow.streams.web.metrics_extra import x",
        "tests/streams/settings.py",
        "other.phaseflow.streams.settings",
        "from phaseflow.streams import app",
    ],
)
def test_leaves_other_names_alone(text: str) -> None:
    assert move_modules.rewrite(text) == text


def test_module_paths_follow_the_top_level_folders() -> None:
    assert move_modules.module_path("phaseflow.streams.web.metrics") == Path(
        "streams/web/metrics.py"
    )
    assert move_modules.module_path("phaseflow.models.audit") == Path("models/audit.py")


def test_every_new_module_is_below_an_existing_package() -> None:
    for new in move_modules.MOVES.values():
        assert (ROOT / move_modules.module_path(new).parent / "__init__.py").exists(), new


def test_the_repository_is_as_the_script_leaves_it() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "move_modules.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
