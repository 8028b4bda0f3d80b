"""scripts/rename_settings.py: what it rewrites, what it leaves, that it runs twice to the same
text, and that the repository is in the state it produces.

rename_settings: skip (shows old setting names on purpose)
"""

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
        "rename_settings", ROOT / "scripts" / "rename_settings.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rename_settings = load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n = settings.topic_partitions\n", "n = settings.kafka_topic_partitions\n"),
        (
            "n = self._settings.ctx.producer_idempotence\n",
            "n = self._settings.ctx.kafka_producer_idempotence\n",
        ),
        ("s = Settings(topic_partitions=2)\n", "s = Settings(kafka_topic_partitions=2)\n"),
        # A setting another branch is adding is renamed once merged.
        (
            "s = Settings(consumer_fetch_wait_seconds=0.05)\n",
            "s = Settings(kafka_fetch_wait_seconds=0.05)\n",
        ),
        (
            "s = make_settings(api_keys=k, rate_limit_per_minute=3)\n",
            "s = make_settings(api_keys=k, web_rate_limit_per_minute=3)\n",
        ),
        (
            's.model_copy(update={"producer_idempotence": False})\n',
            's.model_copy(update={"kafka_producer_idempotence": False})\n',
        ),
        (
            "name = env_var('commit_interval_seconds')\n",
            "name = env_var('kafka_commit_interval_seconds')\n",
        ),
        (
            "x = f\"{env_var('producer_idempotence')}=true\"\n",
            "x = f\"{env_var('kafka_producer_idempotence')}=true\"\n",
        ),
        (
            'names = ("BROKER_URL", "PRODUCER_IDEMPOTENCE")\n',
            'names = ("BROKER_URL", "KAFKA_PRODUCER_IDEMPOTENCE")\n',
        ),
        (
            'monkeypatch.setenv("PHASEFLOW_TOPIC_PARTITIONS", "4")\n',
            'monkeypatch.setenv("PHASEFLOW_KAFKA_TOPIC_PARTITIONS", "4")\n',
        ),
        (
            "class S(BaseSettings):\n    coordinator_tick_seconds: float = 5.0\n",
            "class S(BaseSettings):\n    prediction_coordinator_tick_seconds: float = 5.0\n",
        ),
        (
            "class P(Protocol):\n    @property\n    def producer_idempotence(self) -> bool: ...\n",
            (
                "class P(Protocol):\n    @property\n"
                "    def kafka_producer_idempotence(self) -> bool: ...\n"
            ),
        ),
        (
            "x = 1  # see Settings.topic_partitions\n",
            "x = 1  # see Settings.kafka_topic_partitions\n",
        ),
        (
            'def f() -> None:\n    """``producer_idempotence=true`` fails."""\n',
            'def f() -> None:\n    """``kafka_producer_idempotence=true`` fails."""\n',
        ),
    ],
)
def test_rewrites_every_kind_of_use_in_python(text: str, expected: str) -> None:
    assert rename_settings.rewrite_python(text) == expected
    assert rename_settings.rewrite_python(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        # Faust's own App settings of the same name: only the value is ours.
        "app = faust.App('x', topic_partitions=settings.kafka_topic_partitions)\n",
        "n = app.conf.topic_partitions\n",
        # A parameter of the same name is another thing (and its callers' keywords follow it).
        "def split(topic_partitions: int) -> None:\n    return None\n",
        # Names that only contain an old one.
        "x = settings.kafka_topic_partitions + max_topic_partitions_seen\n",
        'y = "PHASEFLOW_KAFKA_TOPIC_PARTITIONS"\n',
        "z = settings.max_message_bytes\n",
    ],
)
def test_leaves_other_names_alone(text: str) -> None:
    assert rename_settings.rewrite_python(text) == text


def test_text_files_get_the_variables_and_markdown_the_words(tmp_path: Path) -> None:
    compose = "  PHASEFLOW_TOPIC_PARTITIONS: '12'\n  PHASEFLOW_KAFKA_TOPIC_PARTITIONS_X: 1\n"
    assert rename_settings.rewrite(tmp_path / "c.yml", compose) == (
        "  PHASEFLOW_KAFKA_TOPIC_PARTITIONS: '12'\n  PHASEFLOW_KAFKA_TOPIC_PARTITIONS_X: 1\n"
    )
    doc = "`PHASEFLOW_COORDINATOR_TICK_SECONDS` (`coordinator_tick_seconds`)\n"
    assert rename_settings.rewrite(tmp_path / "d.md", doc) == (
        "`PHASEFLOW_PREDICTION_COORDINATOR_TICK_SECONDS` (`prediction_coordinator_tick_seconds`)\n"
    )


def test_check_reports_an_old_name_it_cannot_rewrite(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f(producer_idempotence: bool) -> None: ...\n")
    (tmp_path / "b.toml").write_text('value = "PHASEFLOW_KAFKA_TOPIC_PARTITIONS"\n')
    left = list(rename_settings.leftovers(tmp_path))
    assert [(path.name, number) for path, number, _ in left] == [("a.py", 1)]
    assert rename_settings.main(["--check", "--repo", str(tmp_path)]) == 1


def test_the_repository_is_as_the_script_leaves_it() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "rename_settings.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
