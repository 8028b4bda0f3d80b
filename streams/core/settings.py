"""The one settings object. Every field is read from ``PHASEFLOW_<FIELD>`` and nowhere else.

Longer than ~400 lines on purpose: it is the single declaration of every setting, each with
its description (docs/settings.md is generated from it); splitting it by group would make two
places to look for one frozen object."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

from phaseflow.streams.core.broker_connection import (
    ENV_PREFIX,
    BrokerConnectionSettings,
    Idempotence,
)


class Settings(BrokerConnectionSettings):
    """Frozen, typed service configuration (docs/settings.md).

    ``broker_url``, ``topic_prefix`` and the ``kafka_*`` security fields (the first ones) come
    from :class:`BrokerConnectionSettings`, which the processors' client shares.
    """

    app_id: str = Field(
        default_factory=lambda data: data["topic_prefix"],
        description=(
            "Deployment identity: the Faust app id, i.e. the consumer groups and the prefix of "
            "changelog, leader and repartition topics and of transactional ids. Unset: the topic "
            "prefix, so two deployments with different prefixes share nothing on one cluster."
        ),
    )
    registry_path: Path | None = Field(
        None, description="Pipeline registry (TOML). Unset: the default registry shipped inside."
    )
    web_host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    web_port: int = Field(6066, ge=0, le=65535, description="Port of the HTTP API.")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Comma-separated API keys; several may be valid at once (rotation)."
    )
    web_rate_limit_per_minute: int = Field(
        60, ge=1, description="Mutating HTTP calls allowed per API key per minute (token bucket)."
    )
    lag_ready_max_messages: int = Field(
        10_000, ge=0, description="`GET /ready` answers 503 when consumer lag exceeds this."
    )
    lag_burrow_cluster: str = Field(
        "local",
        min_length=1,
        description=(
            "Cluster name of the Burrow-compatible endpoints (`/v3/kafka/{cluster}/...`); "
            "Burrow's own example config calls its cluster `local`."
        ),
    )
    bigquery_project: str = Field("phaseflow-local", description="BigQuery project id.")
    bigquery_dataset: str = Field("nba_predictions", description="BigQuery dataset.")
    bigquery_endpoint: str | None = Field(
        None, description="BigQuery API endpoint (the emulator's URL); unset means Google's."
    )
    bigquery_write_endpoint: str | None = Field(
        None,
        description=(
            "Storage Write API gRPC endpoint as `host:port` (the emulator's gRPC port; plaintext, "
            "no credentials). Unset: Google's. Needed with `PHASEFLOW_BIGQUERY_ENDPOINT` when "
            "`PHASEFLOW_SINK_STAGING` is `storage_write` or `storage_write_arrow`."
        ),
    )
    bigquery_timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of every BigQuery job and request."
    )
    bigquery_requests_per_second: int = Field(
        20, ge=1, description="BigQuery sink: at most this many API requests per second."
    )
    bigquery_location: str | None = Field(
        None,
        description=(
            "BigQuery location (`US`, `EU`, `europe-west1`...) of query jobs and of the dataset "
            "when phaseflow creates it. Unset: BigQuery's default (the tables' location)."
        ),
    )
    bigquery_retry_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "How long one BigQuery call retries transient errors (5xx, 429, rate limits, "
            "connection errors, timeouts) with jittered backoff before it fails."
        ),
    )
    bigquery_create_tables: bool = Field(
        default=True,
        description=(
            "Create the sinks' dataset, tables and view when missing (needs "
            "`bigquery.datasets.create`, `bigquery.tables.create`). `false`: they must exist."
        ),
    )
    sink_batch_rows: int = Field(
        500, ge=1, description="BigQuery sink: flush when this many rows are buffered."
    )
    sink_flush_seconds: float = Field(
        1.0, gt=0, description="BigQuery sink: flush when the oldest buffered row is this old."
    )
    sink_max_buffer_rows: int = Field(
        10_000,
        ge=1,
        description="BigQuery sink: buffer limit; beyond it the consumer pauses (backpressure).",
    )
    sink_staging: Literal["insert_all", "storage_write", "storage_write_arrow"] = Field(
        default_factory=lambda data: _default_staging(
            data["bigquery_endpoint"], data["bigquery_write_endpoint"]
        ),
        description=(
            "How the prediction sink stages a flush before its MERGE: `storage_write_arrow` (one "
            "PENDING Storage Write stream per flush, committed before the MERGE, rows as Arrow "
            "record batches; checked at sink setup), `storage_write` (the same, rows as "
            "protobuf) or `insert_all` (streaming inserts); docs/bigquery-sink.md. Unset: "
            "`storage_write_arrow`, except `insert_all` when `PHASEFLOW_BIGQUERY_ENDPOINT` names "
            "an emulator and `PHASEFLOW_BIGQUERY_WRITE_ENDPOINT` does not give its gRPC port."
        ),
    )
    sink_enabled: bool | None = Field(
        None,
        description=(
            "Run the BigQuery prediction sink in the worker. Unset: only when "
            "`PHASEFLOW_BIGQUERY_ENDPOINT` is set (no credential lookup on dev/CI machines); "
            "`true` against Google's API (Application Default Credentials)."
        ),
    )
    store: str = Field(
        "memory://",
        description="Faust table store URL; tables are rebuilt from their changelog topics.",
    )
    data_dir: Path = Field(Path(".phaseflow-data"), description="Faust's working directory.")
    worker_id: str = Field(
        default_factory=lambda data: default_worker_id(data["data_dir"]),
        min_length=1,
        description=(
            "This worker's static consumer-group membership id (Kafka `group.instance.id`): a "
            "worker restarted within the session timeout gets its partitions back without a "
            "rebalance. Unique per worker of a deployment (a second worker with the same id "
            "stops, exit 2). Unset: the host name and a hash of the absolute `data_dir`. Not used "
            "with `PHASEFLOW_KAFKA_STATIC_MEMBERSHIP=false`."
        ),
    )
    kafka_static_membership: bool = Field(
        default=True,
        description=(
            "Join every consumer group as a static member with `PHASEFLOW_WORKER_ID` (no "
            "rebalance when a worker restarts within the session timeout). `false`: dynamic "
            "members (every restart is a rebalance of the whole group)."
        ),
    )
    kafka_topic_partitions: int = Field(
        4, ge=1, description="Partitions of topics phaseflow creates (and of their changelogs)."
    )
    kafka_topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics phaseflow creates."
    )
    processing_guarantee: Literal["auto", "at_least_once", "exactly_once"] = Field(
        "auto",
        description=(
            "`auto`: the worker asks the broker at start and runs `exactly_once` (Kafka "
            "transactions) where transactions work, `at_least_once` otherwise (Tansu). An "
            "explicit `exactly_once` on a broker without transactions stops the worker (exit 2)."
        ),
    )
    kafka_producer_idempotence: Idempotence = Field(
        "auto",
        description=(
            "Idempotent producers. `auto`: the worker uses them where the broker has them "
            "(Apache Kafka, not Tansu); `true` on a broker without them stops the worker (exit 2)."
        ),
    )
    kafka_session_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "Consumer-group session timeout: how long a killed worker's partitions wait before "
            "another worker takes them (Kafka's minimum is 6). Tansu holds every join for half "
            "of it (use 3 there)."
        ),
    )
    kafka_heartbeat_interval_seconds: float = Field(
        2.0, gt=0, description="Consumer-group heartbeat interval (Tansu: 0.5)."
    )
    kafka_fetch_wait_seconds: float = Field(
        0.1,
        gt=0,
        description=(
            "Longest a worker's fetch waits at the broker for new records (Faust fixes 1.5 s). "
            "Brokers that hold every empty fetch this long (Tansu) add up to it to each trigger."
        ),
    )
    kafka_commit_interval_seconds: float = Field(
        0.1,
        gt=0,
        description=(
            "How often consumed offsets (exactly_once: transactions) are committed; under "
            "exactly_once a trigger becomes readable only then, unless "
            "PHASEFLOW_KAFKA_COMMIT_AFTER_OUTPUTS commits it sooner."
        ),
    )
    kafka_commit_after_outputs: bool = Field(
        default=True,
        description=(
            "exactly_once: commit right after a readiness batch that sent a trigger, rerun "
            "request, alert or dead letter when nothing else waits to be handled, instead of "
            "at the next periodic commit (the trigger is readable one commit round trip later). "
            "A backlog and batches that send nothing keep the periodic commit."
        ),
    )
    readiness_tick_seconds: float = Field(
        1.0, gt=0, description="How often deadlines, due reruns and cleanup are checked."
    )
    readiness_batch_size: int = Field(
        500,
        ge=1,
        description=(
            "Most records the readiness agent handles as one batch (it takes what is ready, "
            "never waits for more): each table key a batch touches is written once, at its end."
        ),
    )
    future_timestamp_tolerance_seconds: float = Field(
        300.0,
        ge=0,
        description=(
            "A completion stamped further than this ahead of when it was received is clamped to "
            "its receive time (logged, counted); deadlines never use the publisher's timestamp."
        ),
    )
    max_message_bytes: int = Field(
        1_048_576, gt=0, description="Larger event payloads are dead-lettered as oversized."
    )
    clock_speed: float = Field(
        1.0,
        gt=0,
        description=(
            "How fast the service's clock runs against wall time: 1 in production; soak runs and "
            "simulations use e.g. 720 (a day in two minutes) to exercise date rollover."
        ),
    )
    pipeline_timezone: str = Field(
        "America/New_York", description="Time zone that decides 'today' for a game date."
    )
    lag_sample_interval_seconds: float = Field(
        5.0, gt=0, description="Consumer-lag monitor: seconds between two lag samples."
    )
    lag_window_seconds: float = Field(
        120.0,
        gt=0,
        description="Consumer-lag monitor: sliding window of samples; STOP = stuck for longer.",
    )
    lag_alert_messages: int = Field(
        1000, ge=1, description="Consumer-lag monitor: WARN when a partition's lag reaches this."
    )
    lag_groups: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated consumer groups to watch besides `APP_ID`'s own."
    )
    lag_include: str = Field(
        ".*",
        description=(
            "Consumer-lag monitor: regex (full match) of discovered groups to watch; "
            "the deployment's own groups are always watched."
        ),
    )
    lag_exclude: str = Field(
        "",
        description="Consumer-lag monitor: regex (full match) of discovered groups not to watch.",
    )
    prediction_batch_size: int = Field(
        100, ge=1, description="Prediction workers take up to this many requests per history query."
    )
    prediction_batch_wait_seconds: float = Field(
        0.5,
        gt=0,
        description=(
            "How long a prediction worker waits to fill a batch after its first request (not "
            "for a backlog: every request partition read to its end and the oldest request "
            "published longer ago than this)."
        ),
    )
    prediction_history_games: int = Field(
        60, ge=1, description="Past games loaded per player for the prediction systems."
    )
    prediction_cache_ttl_seconds: float = Field(
        900.0, gt=0, description="How long a worker keeps loaded player history in memory."
    )
    prediction_coordinator_tick_seconds: float = Field(
        5.0, gt=0, description="How often the prediction coordinator looks for stalled batches."
    )
    prediction_batch_deadline_seconds: float = Field(
        7200.0,
        gt=0,
        description=(
            "A running prediction batch ends this long after its start: partial at or above "
            "phase 5's min_coverage_pct, otherwise failed; then a new batch may start."
        ),
    )
    notify_webhook_url: SecretStr | None = Field(
        None, description="Notifier route `webhook`: POST each alert as JSON to this URL."
    )
    notify_slack_url: SecretStr | None = Field(
        None, description="Notifier route `slack`: a Slack incoming-webhook URL."
    )
    notify_pagerduty_routing_key: SecretStr | None = Field(
        None, description="Notifier route `pagerduty`: the Events API v2 integration key."
    )
    notify_pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        description="Where the `pagerduty` route sends its Events API v2 events.",
    )
    notify_smtp_url: SecretStr | None = Field(
        None,
        description=(
            "Notifier route `email`: `smtp://[user:password@]host[:port]` (`smtps://` for "
            "TLS from the start; `smtp://` uses STARTTLS when the server offers it)."
        ),
    )
    notify_email_from: str = Field("phaseflow@localhost", description="Sender of alert mails.")
    notify_email_to: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated recipients of alert mails (the `email` route needs one)."
    )
    notify_routes: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description=(
            "What goes where, comma-separated `route=min_severity[:kind+kind...]`, e.g. "
            "`pagerduty=critical:phase_timeout+consumer_lag,slack=warning`. A configured route "
            "not named here gets `warning` and every kind."
        ),
    )
    notify_quiet_hours: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description=(
            "Quiet hours per route, comma-separated `route=HH:MM-HH:MM` in `pipeline_timezone`, "
            "e.g. `slack=22:00-07:00`: alerts below `critical` are held and sent when they end."
        ),
    )
    notify_repeat_after_seconds: float = Field(
        3600.0,
        gt=0,
        description="A route sends the same alert key again only after this long (or when its "
        "severity rises).",
    )
    notify_max_per_hour: int = Field(
        30,
        ge=1,
        description="Per route: at most this many messages an hour; the rest are counted and "
        "sent as one summary when the route has room again.",
    )
    notify_retry_attempts: int = Field(
        5,
        ge=1,
        description="Deliveries tried per alert (5xx, timeouts) before it is dead-lettered.",
    )
    notify_retry_backoff_seconds: float = Field(
        1.0, gt=0, description="First pause between two delivery attempts; doubles each time."
    )
    notify_timeout_seconds: float = Field(
        10.0, gt=0, description="Timeout of one delivery attempt (HTTP request or SMTP session)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_repeat_window_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "Warnings and errors of the Kafka and Faust libraries that repeat (the same message "
            "template, e.g. every client's retry while the broker is away) are shown once per "
            "this many seconds, with how many were left out; 0 shows every one."
        ),
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(SecretStr(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("lag_include", "lag_exclude")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from error
        return value

    @field_validator(
        "lag_groups", "notify_email_to", "notify_routes", "notify_quiet_hours", mode="before"
    )
    @classmethod
    def _split_groups(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def idempotent_producer(self) -> bool:
        """Whether producers ask for idempotence. The worker resolves ``auto`` from the broker
        before it makes a producer (phaseflow.streams.delivery), the completion client
        (phaseflow.streams.client) when it starts; a command that does not ask the broker (``dlq
        replay``) treats ``auto`` as off, which every broker accepts."""
        return self.kafka_producer_idempotence is True

    @property
    def faust_processing_guarantee(self) -> Literal["at_least_once", "exactly_once"]:
        """The guarantee the Faust app runs. The worker resolves ``auto`` from the broker before
        it builds the app; an app built without that (in-process tests) gets at_least_once,
        the guarantee every broker gives."""
        if self.processing_guarantee == "exactly_once":
            return "exactly_once"
        return "at_least_once"

    @property
    def group_instance_id(self) -> str | None:
        """Kafka ``group.instance.id`` of this worker's consumers: its id under static
        membership, else None (dynamic members)."""
        return self.worker_id if self.kafka_static_membership else None

    @property
    def prediction_workers_group(self) -> str:
        """The prediction workers' consumer group (agents/predictions/request_consumer.py)."""
        return f"{self.app_id}.prediction-workers"


def default_worker_id(data_dir: Path) -> str:
    """The host name and the worker's data directory: stable across restarts of one worker,
    different for two workers on one host (they cannot share a data directory)."""
    where = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{where}"


def _default_staging(
    endpoint: str | None, write_endpoint: str | None
) -> Literal["insert_all", "storage_write_arrow"]:
    """Storage Write with Arrow rows (the fastest staging, docs/bigquery-sink.md) wherever its
    endpoint is known: Google's, or an emulator's gRPC port given with its REST endpoint."""
    return "insert_all" if endpoint and not write_endpoint else "storage_write_arrow"


def env_var(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return f"{ENV_PREFIX}{field_name.upper()}"


#: The settings' groups, by prefix of the field (and so of the variable), in the order
#: docs/settings.md shows them; a field of no group is a general one, shown first.
SETTING_GROUPS: Final = (
    ("kafka_", "Kafka: connection, topics phaseflow creates, consumer groups, producers"),
    ("web_", "HTTP API"),
    ("bigquery_", "BigQuery"),
    ("sink_", "BigQuery sinks"),
    ("lag_", "Consumer lag"),
    ("prediction_", "Predictions"),
    ("notify_", "Alert notifications"),
)
GENERAL_GROUP: Final = "General"


def setting_group(field_name: str) -> str:
    """The title of the group ``field_name`` belongs to (:data:`SETTING_GROUPS`)."""
    for prefix, title in SETTING_GROUPS:
        if field_name.startswith(prefix):
            return title
    return GENERAL_GROUP


def settings_table() -> str:
    """docs/settings.md's settings tables, one per group, generated from the model so the
    two cannot drift. A group without settings (yet) has no table."""
    titles = [GENERAL_GROUP, *(title for _, title in SETTING_GROUPS)]
    sections = []
    for title in titles:
        rows = [
            _table_row(name, field)
            for name, field in Settings.model_fields.items()
            if setting_group(name) == title
        ]
        if rows:
            header = [f"### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
            sections.append("\n".join([*header, *rows]))
    return "\n\n".join(sections)


def _table_row(name: str, field: FieldInfo) -> str:
    default = field.default
    if field.default_factory is not None:
        shown = "(derived)"
    elif isinstance(default, tuple) and not default:
        shown = "(none)"
    elif default is None:
        shown = "(unset)"
    else:
        shown = f"`{default}`"
    return f"| `{env_var(name)}` | {shown} | {field.description} |"


def settings_to_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process (``phaseflow worker``) load ``settings``."""
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if field.default_factory is not None and name not in settings.model_fields_set:
            continue  # derived (app_id from the prefix): the child derives it the same way
        if isinstance(value, tuple):
            text = ",".join(
                item.get_secret_value() if isinstance(item, SecretStr) else str(item)
                for item in value
            )
        elif isinstance(value, SecretStr):
            text = value.get_secret_value()
        else:
            text = str(value)
        env[env_var(name)] = text
    return env
