"""The delivery rule: which guarantee and producer idempotence a worker runs on its broker.

``auto`` (the default of both settings) takes what the broker supports: exactly_once where
transactions work, idempotent producers where they work. An explicit ``exactly_once`` or
``kafka_producer_idempotence=true`` the broker cannot honour is a configuration error: the worker
must not quietly run a weaker guarantee than the one asked for, nor start producers that fail
on their first send.
"""

from __future__ import annotations

from dataclasses import dataclass

from phaseflow.streams.broker_probe import BrokerCapabilities
from phaseflow.streams.core.settings import Settings, env_var


class DeliverySettingError(Exception):
    """A setting asks for something the broker does not support; the message is one line."""


@dataclass(frozen=True)
class Delivery:
    """The resolved choice and why it was made (logged once, shown on ``GET /status``)."""

    settings: Settings
    reason: str

    @property
    def summary(self) -> dict[str, object]:
        return {
            "processing_guarantee": self.settings.processing_guarantee,
            "kafka_producer_idempotence": self.settings.kafka_producer_idempotence,
            "reason": self.reason,
        }


def resolve_delivery(settings: Settings, broker: BrokerCapabilities) -> Delivery:
    """``settings`` with both ``auto`` values replaced by what ``broker`` supports."""
    transactions, idempotence = broker.transactions, broker.idempotent_producer
    if settings.processing_guarantee == "exactly_once" and not transactions.supported:
        raise DeliverySettingError(
            f"{env_var('processing_guarantee')}=exactly_once needs Kafka transactions, which "
            f"the broker at {settings.bootstrap_servers} does not support "
            f"({transactions.detail}); set it to auto or at_least_once"
        )
    if settings.kafka_producer_idempotence is True and not idempotence.supported:
        raise DeliverySettingError(
            f"{env_var('kafka_producer_idempotence')}=true needs idempotent producers, which the "
            f"broker at {settings.bootstrap_servers} does not support ({idempotence.detail}); "
            "set it to auto or false"
        )
    reasons: list[str] = []
    guarantee = settings.processing_guarantee
    if guarantee == "auto":
        guarantee = "exactly_once" if transactions.supported else "at_least_once"
        reasons.append(
            "auto: the broker supports transactions"
            if transactions.supported
            else f"auto: the broker has no transactions ({transactions.detail})"
        )
    else:
        reasons.append(f"{env_var('processing_guarantee')}={guarantee}")
    idempotent = settings.kafka_producer_idempotence
    if idempotent == "auto":
        idempotent = idempotence.supported
        reasons.append(
            "idempotent producers: auto, "
            + ("supported" if idempotence.supported else f"not supported ({idempotence.detail})")
        )
    else:
        reasons.append(f"{env_var('kafka_producer_idempotence')}={str(idempotent).lower()}")
    resolved = settings.model_copy(
        update={"processing_guarantee": guarantee, "kafka_producer_idempotence": idempotent}
    )
    return Delivery(settings=resolved, reason="; ".join(reasons))
