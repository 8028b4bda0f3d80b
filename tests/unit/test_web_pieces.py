"""The HTTP API's pieces without a broker: keys, rate limits, audit records, metrics, OpenAPI."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from phaseflow.agents.readiness_state import PhaseState, ProcessorRecord, TriggerLedgerEntry
from phaseflow.models.audit import AuditRecord, audit_record
from phaseflow.models.codec import decode, encode
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.web.auth import ApiKeys, key_id, presented_key
from phaseflow.streams.web.health import BrokerUnreachableError, ReadinessCheck
from phaseflow.streams.web.openapi import openapi_document
from phaseflow.streams.web.phase_status import phase_status
from phaseflow.streams.web.ratelimit import RateLimiter
from phaseflow.streams.web.responses import field_of
from phaseflow.streams.web.views import ROUTES

NOW = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)


# --- keys -----------------------------------------------------------------------------------


def test_every_configured_key_is_valid_and_identified_by_its_id() -> None:
    keys = ApiKeys([SecretStr("old-key"), SecretStr("new-key"), SecretStr("")])
    assert len(keys) == 2  # empty entries are not keys
    assert keys.identify("old-key") == key_id("old-key")
    assert keys.identify("new-key") == key_id("new-key")
    assert keys.identify("other") is None
    assert keys.identify("") is None
    assert keys.identify(None) is None
    assert keys.identify("old-key ") is None


def test_key_id_is_a_short_digest_prefix_never_the_key() -> None:
    identity = key_id("s3cret-value")
    assert identity == "key-" + hashlib.sha256(b"s3cret-value").hexdigest()[:12]
    assert "s3cret" not in identity
    assert key_id("a") != key_id("b")


def test_no_configured_keys_means_nothing_is_accepted() -> None:
    assert ApiKeys([]).identify("anything") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"Authorization": "bearer  abc "}, "abc"),
        ({"X-API-Key": "abc"}, "abc"),
        ({"Authorization": "Basic abc"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"X-API-Key": " "}, None),
        ({}, None),
        ({"Authorization": "Bearer abc", "X-API-Key": "def"}, "abc"),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


# --- rate limits ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_asks_to_wait_and_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)  # one token a second
    assert all(limiter.acquire("a") == 0 for _ in range(60))
    assert limiter.acquire("a") == 1
    clock.now += 0.5
    assert limiter.acquire("a") == 1  # half a token is not a call
    clock.now += 0.5
    assert limiter.acquire("a") == 0
    assert limiter.acquire("b") == 0  # per key


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)  # one token every 30 s
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") == 30
    clock.now += 29.5
    assert limiter.acquire("k") == 1
    clock.now += 0.5
    assert limiter.acquire("k") == 0


def test_bucket_never_holds_more_than_its_capacity() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    clock.now += 3600
    assert [limiter.acquire("k") for _ in range(4)][-1] > 0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(0)


# --- audit ----------------------------------------------------------------------------------


def test_audit_record_keeps_a_digest_of_the_body_and_round_trips() -> None:
    body = b'{"game_date": "2026-01-15"}'
    record = audit_record(
        key_id=key_id("k"),
        action="POST /reruns",
        body=body,
        client="10.0.0.7",
        at=NOW,
        summary={"game_date": "2026-01-15"},
    )
    assert record.body_sha256 == hashlib.sha256(body).hexdigest()
    assert record.key == key_id("k")
    assert decode(AuditRecord, encode(record)) == record
    assert b"game_date\\" not in encode(record)  # the body itself is not copied


def test_audit_record_without_a_peer_address_says_so() -> None:
    record = audit_record(key_id="key-x", action="POST /x", body=b"", client=None, at=NOW)
    assert record.client == "unknown"


# --- metrics --------------------------------------------------------------------------------


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" if shared
    first.events_in.labels(topic="t").inc(3)
    assert b"phaseflow_events_in_total" in first.render()
    assert b'topic="t"' not in second.render()


def test_lag_gauge_is_set_from_the_provider_at_each_scrape() -> None:
    metrics = Metrics()
    snapshot = {("c", 0): 5, ("c", 1): 7}
    metrics.set_lag_source(lambda: snapshot)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = {
        s.labels["partition"]: s.value for s in families["phaseflow_consumer_lag_messages"].samples
    }
    assert samples == {"0": 5.0, "1": 7.0}
    snapshot = {("c", 1): 2}
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = {
        s.labels["partition"]: s.value for s in families["phaseflow_consumer_lag_messages"].samples
    }
    assert samples == {"1": 2.0}  # partition 0 moved away: its series is gone


# --- readiness ------------------------------------------------------------------------------


class Probe:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise BrokerUnreachableError("127.0.0.1:9: ConnectionRefusedError")


async def test_ready_combines_broker_partitions_and_lag_and_caches_the_probe() -> None:
    clock, probe = FakeClock(), Probe()
    assigned = [4]
    lag: dict[tuple[str, int], int] | None = None

    check = ReadinessCheck(
        probe=probe,
        assigned_partitions=lambda: assigned[0],
        recovery_pending=lambda: None,
        lag=lambda: lag,
        max_lag_messages=100,
        clock=clock,
    )
    assert (await check.report()).ready
    assert (await check.report()).ready
    assert probe.calls == 1  # cached for a second
    probe.down = True
    assert (await check.report()).ready  # still the cached answer
    clock.now += 1.0
    report = await check.report()
    assert not report.ready
    assert report.reasons[0].startswith("broker unreachable")
    probe.down = False
    clock.now += 1.0
    assigned[0] = 0
    lag = {("t", 0): 60, ("t", 1): 41}
    report = await check.report()
    assert [r.split(" ")[0] for r in report.reasons] == ["no", "consumer"]
    assert report.total_lag == 101


# --- views' pure parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "field"),
    [
        ("processor_name: required field is missing", "processor_name"),
        ("metadata.x[0]: bad", "metadata.x[0]"),
        ("not valid JSON: unexpected end", None),
        ("expected a JSON object, got list", None),
    ],
)
def test_field_of_a_codec_reason(reason: str, field: str | None) -> None:
    assert field_of(reason) == field


class StoredStates:
    """The readiness states the status views read, without a processor."""

    def __init__(self, states: list[PhaseState]) -> None:
        self._states = {(state.game_date, state.phase): state for state in states}

    def state(self, game_date: date, phase: int) -> PhaseState | None:
        return self._states.get((game_date, phase))


def test_phase_status_shows_done_missing_trigger_and_deadline() -> None:
    registry = load_registry(None)
    game_date = date(2026, 1, 10)
    first = NOW - timedelta(hours=1)
    state = PhaseState(
        game_date=game_date,
        phase=2,
        processors={
            "p2_odds_game_lines": ProcessorRecord(
                status="success",
                record_count=1,
                first_completed_at=first,
                last_completed_at=first,
                last_execution_id="e1",
            ),
            "p2_nbacom_boxscores": ProcessorRecord(
                status="failed",
                record_count=0,
                first_completed_at=first,
                last_completed_at=first,
                last_execution_id="e2",
            ),
        },
        first_completion_at=first,
        trigger=TriggerLedgerEntry(trigger_id="t", reason="ready", rule="r", triggered_at=NOW),
    )
    served = phase_status(registry, StoredStates([state]), game_date, date(2026, 1, 16))
    orjson.dumps(served)  # JSON-able as served
    phases = {p["phase"]: p for p in served}
    assert set(phases) == {spec.phase for spec in registry.phases}
    two = phases[2]
    assert two["done"] == ["p2_odds_game_lines"]
    assert "p2_nbacom_boxscores" in two["missing"]
    assert two["processors"]["p2_nbacom_boxscores"] == "failed"
    assert two["trigger"]["trigger_id"] == "t"
    spec = registry.phase(2)
    assert two["deadline"] == (
        (first + spec.max_wait).isoformat() if spec.max_wait is not None else None
    )
    assert phases[3]["done"] == []
    assert phases[3]["trigger"] is None


# --- OpenAPI --------------------------------------------------------------------------------


def test_openapi_document_lists_every_route_and_is_json() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {path for path, _ in ROUTES}
    for path in ("/completions", "/reruns", "/coordinator/start", "/coordinator/complete"):
        operation = document["paths"][path]["post"]
        assert {"401", "429", "400"} <= set(operation["responses"]), path
        assert operation["security"]
    assert "Retry-After" in document["paths"]["/reruns"]["post"]["responses"]["429"]["headers"]
    schema = document["components"]["schemas"]["PhaseCompletion"]
    assert set(schema["required"]) >= {"processor_name", "game_date", "phase", "status"}
    text = orjson.dumps(document).decode()
    assert "$defs" not in text
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        name = ref.removeprefix("#/components/schemas/")
        assert name in document["components"]["schemas"], ref
