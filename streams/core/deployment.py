"""The deployment identity: what a worker creates or joins on the cluster, and under which name.

Everything a deployment owns on a shared cluster is named from two settings: topics from
``PHASEFLOW_TOPIC_PREFIX``, everything else (consumer groups, Faust's changelog, leader and
repartition topics, transactional ids, the broker probe's transactional id) from
``PHASEFLOW_APP_ID``, which defaults to the topic prefix. Two deployments with different
prefixes therefore share no state on one cluster.
"""

from __future__ import annotations

from phaseflow.streams.core.settings import Settings, env_var


def identity_source(settings: Settings) -> str:
    """Where the app id came from: set explicitly, or derived from the topic prefix."""
    if "app_id" in settings.model_fields_set:
        return f"set by {env_var('app_id')}"
    return f"derived from {env_var('topic_prefix')}"


def identity_line(settings: Settings) -> str:
    """The one line a worker logs at start: its identity and the names derived from it."""
    app_id = settings.app_id
    return (
        f"deployment identity {app_id!r} ({identity_source(settings)}): topics "
        f"{settings.topic_prefix}.*; consumer groups, changelog/leader topics and transactional "
        f"ids {app_id} and {app_id}[.-]*"
    )


def identity_summary(settings: Settings) -> dict[str, str]:
    """The identity as ``GET /status`` shows it."""
    return {
        "app_id": settings.app_id,
        "app_id_source": identity_source(settings),
        "topic_prefix": settings.topic_prefix,
    }
