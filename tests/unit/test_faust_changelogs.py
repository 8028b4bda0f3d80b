"""Changelog topics exist before the worker joins (streams/faust_changelogs.py), and why.

The second test replays, through faust-streaming's own assignor, what made a worker restarted
under static membership crash: an assignment computed while a changelog topic was not in the
cluster metadata leaves that topic out of its topic groups, and the first table write to it
raises ``KeyError`` in ``group_for_topic``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from faust.assignor.partition_assignor import PartitionAssignor

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.faust_changelogs import changelog_topics

PARTITIONS = 3


def app_for(tmp_path: Path) -> Any:
    settings = Settings(
        topic_prefix="pf", app_id="pf-app", data_dir=tmp_path, kafka_topic_partitions=PARTITIONS
    )
    return build_app(settings).app


def test_every_tables_changelog_is_declared_compacted_with_the_tables_partitions(
    tmp_path: Path,
) -> None:
    app = app_for(tmp_path)
    topics = {topic.name: topic for topic in changelog_topics(app)}
    assert set(topics) == set(app.tables.changelog_topics)
    assert "pf-app-prediction_batch_players-changelog" in topics
    for topic in topics.values():
        assert topic.num_partitions == PARTITIONS
        assert topic.replication_factor == app.conf.topic_replication_factor
        assert topic.topic_configs["cleanup.policy"] == "compact"


class Cluster:
    """The cluster metadata the group leader assigns from: the topics it knows, by name."""

    def __init__(self, topics: set[str]) -> None:
        self._topics = topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(PARTITIONS)) if topic in self._topics else None


def assign_and_receive(app: Any, subscription: list[str], known: set[str]) -> PartitionAssignor:
    """One member: the leader's assignment computed from ``known``, received by the member."""
    assignor = PartitionAssignor(app)
    metadata = ConsumerProtocolMemberMetadata(
        assignor.version, subscription, assignor._metadata.dumps()
    )
    assignments = assignor.assign(Cluster(known), {"member-1": metadata})  # type: ignore[arg-type]
    assignor.on_assignment(assignments["member-1"])
    return assignor


@pytest.mark.parametrize("in_metadata", [False, True])
def test_a_changelog_missing_from_the_leaders_metadata_is_missing_from_the_topic_groups(
    tmp_path: Path, in_metadata: bool
) -> None:
    app = app_for(tmp_path)
    changelog = "pf-app-prediction_batch_players-changelog"
    source = "pf." + TopicName.PREDICTION_PROGRESS.value
    subscription = [source, changelog]
    known = {source, changelog} if in_metadata else {source}
    assignor = assign_and_receive(app, subscription, known)
    if in_metadata:
        # Created before the join (what the worker now does): in the groups, and assigned.
        assert assignor.group_for_topic(changelog) == assignor.group_for_topic(source)
        assert {tp.topic for tp in assignor.assigned_actives()} == {source, changelog}
    else:
        # Faust's TransactionManager.send asks this for every table write to the changelog.
        with pytest.raises(KeyError, match=changelog):
            assignor.group_for_topic(changelog)
        assert {tp.topic for tp in assignor.assigned_actives()} == {source}
