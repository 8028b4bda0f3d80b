"""Start-up check: no other live worker of this deployment uses this worker's ``worker_id``.

Kafka's static membership lets a member with a known ``group.instance.id`` take over that
member's place at once, and *fences* the one it replaced. Two live workers with one id would
fence each other in turn, each restarted by its supervisor, forever. So before it joins, a worker
looks at its app's consumer group (DescribeGroups): Apache Kafka names a static member
``{group.instance.id}-{uuid}``. A member with our id is our own predecessor (killed, session not
yet timed out: the case static membership is for) when it connected from our address and
advertised our web URL in Faust's member metadata; two live workers on one host cannot share a
web port, so then it is not running. Anything else is another worker, and this one stops.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaError

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

#: ``-`` and a UUID's 36 characters, after the instance id in a static member's id.
_UUID_SUFFIX = 37


@dataclass(frozen=True)
class Member:
    """A member of the app's group as DescribeGroups shows it."""

    member_id: str
    client_host: str  # as the broker saw it, e.g. "/10.0.0.5"
    metadata: bytes

    @property
    def instance_id(self) -> str | None:
        if len(self.member_id) <= _UUID_SUFFIX or self.member_id[-_UUID_SUFFIX] != "-":
            return None
        return self.member_id[:-_UUID_SUFFIX]

    @property
    def web_url(self) -> str | None:
        """The URL Faust's assignor advertises for this member, if its metadata has one."""
        try:
            user_data = ConsumerProtocolMemberMetadata.decode(self.metadata).user_data
            url = orjson.loads(user_data).get("url")
        except Exception:  # noqa: BLE001 - not Faust's metadata: no URL to compare
            return None
        return url if isinstance(url, str) else None


def worker_url(settings: Settings) -> str:
    """The web URL Faust advertises for this worker (its ``canonical_url``)."""
    return f"http://{settings.web_host}:{settings.web_port}"


def conflict(settings: Settings, members: Iterable[Member], own_host: str) -> str | None:
    """One line naming the setting when a member of ``members`` is another worker with our id."""
    for member in members:
        if member.instance_id != settings.worker_id:
            continue
        host = member.client_host.lstrip("/")
        url = member.web_url
        if host == own_host and url in {None, worker_url(settings)}:
            continue  # our predecessor: it cannot be running while we hold its address and port
        return (
            f"PHASEFLOW_WORKER_ID={settings.worker_id} is already used by a running worker "
            f"({url or 'web URL unknown'} from {host}); give every worker its own id"
        )
    return None


async def group_members(settings: Settings) -> list[Member]:
    """The members of the app's consumer group (none if it has none)."""
    admin = await kafka_clients.started(kafka_clients.admin(settings))
    try:
        responses: list[Any] = await admin.describe_consumer_groups([settings.app_id])
    finally:
        await admin.close()
    return [
        Member(member[0], member[2], member[3])
        for response in responses
        for group in response.groups
        for member in group[5]
    ]


def own_address(settings: Settings) -> str:
    """Our address as the broker sees it: the local end of a connection to it."""
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as connection:
        address: str = connection.getsockname()[0]
    return address


async def worker_id_problem(
    settings: Settings,
    *,
    members: Callable[[Settings], Awaitable[list[Member]]] = group_members,
) -> str | None:
    """None when no other live worker uses ``settings.worker_id``, else one line saying so."""
    try:
        found = await members(settings)
        if not any(m.instance_id == settings.worker_id for m in found):
            return None
        own_host = await asyncio.to_thread(own_address, settings)
    except (KafkaError, OSError) as error:
        # The broker answered the probe a moment ago; a broker that cannot describe groups
        # (or a blip) must not keep the worker from starting: say so and go on.
        log.warning("could not check that PHASEFLOW_WORKER_ID is unused (%s)", error)
        return None
    return conflict(settings, found, own_host)
