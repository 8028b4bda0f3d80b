"""``phaseflow rerun``, run for real as a subprocess on the broker, leaves its audit record on the
audit topic (what the audit sink copies into BigQuery); its dry run leaves none."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from phaseflow.models.audit import AuditRecord
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.simulation import TopicReader
from tests.integration.test_cli_failures import DAY, base_env, phaseflow

pytestmark = pytest.mark.integration


async def test_a_rerun_leaves_one_audit_record_and_its_dry_run_none(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    env = base_env() | settings_to_env(settings)
    rerun = ["rerun", "--date", DAY, "--phase", "4", "--actor", "alice"]
    dry = phaseflow(*rerun, "--dry-run", env=env)
    assert dry.code == 0, dry
    sent = phaseflow(*rerun, env=env)
    assert sent.code == 0, sent
    assert "audit record" not in sent.stderr
    async with TopicReader(settings, TopicName.AUDIT, AuditRecord) as reader:
        found = await reader.read_until(lambda got: len(got) >= 1, give_up_after=60, quiet_for=1)
    [record] = found
    assert (record.key_id, record.action, record.client) == (
        "cli:alice",
        "cli rerun",
        socket.gethostname(),
    )
    assert record.summary == {
        "game_date": DAY,
        "phase": "4",
        "attempt": "1",
        "outcome": "ok",
    }
