"""Kafka TLS/SASL settings: checked at load with one line naming the variable; the password
never reaches a repr, a message, a log or the worker's output."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import errors as kafka_errors
from pydantic import ValidationError

from phaseflow.streams.cli_errors import BadInputError, load_settings
from phaseflow.streams.client import BrokerUnavailableError, ClientSettings, CompletionPublisher
from phaseflow.streams.core.kafka_clients import explain_connect_error, faust_broker_credentials
from phaseflow.streams.core.kafka_security import KafkaSecurity, KafkaSecurityError
from phaseflow.streams.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
#: Distinctive enough that finding it anywhere means it leaked.
PASSWORD = "pw-Zq7xK-never-print-me"  # noqa: S105 - a marker, not a credential
#: Nothing listens on port 1: connecting is refused at once.
NOBODY_LISTENS = "127.0.0.1:1"
SASL_ENV = {
    "PHASEFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "PHASEFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "PHASEFLOW_KAFKA_SASL_USERNAME": "svc-phaseflow",
    "PHASEFLOW_KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)


def test_sasl_settings_are_read_from_the_environment(sasl_env: None) -> None:
    security = Settings().kafka_security
    assert (security.protocol, security.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")
    assert security.sasl_username == "svc-phaseflow"
    assert security.aiokafka_options()["sasl_plain_password"] == PASSWORD
    assert ClientSettings().kafka_security == security  # the processors' client reads the same


def test_the_password_is_not_in_repr_or_description(sasl_env: None) -> None:
    settings = Settings()
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(settings.kafka_security),
    ]
    shown.append(settings.kafka_security.describe())
    shown.append(repr(faust_broker_credentials(settings.kafka_security)))
    assert not [text for text in shown if PASSWORD in text]
    assert settings.kafka_security.describe() == "SASL_PLAINTEXT SCRAM-SHA-256 as svc-phaseflow"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"PHASEFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            (
                "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs PHASEFLOW_KAFKA_SASL_USERNAME; "
                "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs PHASEFLOW_KAFKA_SASL_PASSWORD"
            ),
        ),
        (
            {"PHASEFLOW_KAFKA_SASL_USERNAME": "svc", "PHASEFLOW_KAFKA_SASL_PASSWORD": PASSWORD},
            (
                "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no SASL credentials, but "
                "PHASEFLOW_KAFKA_SASL_USERNAME or _PASSWORD is set; use SASL_SSL or "
                "SASL_PLAINTEXT, or unset them"
            ),
        ),
        (
            {
                "PHASEFLOW_KAFKA_SECURITY_PROTOCOL": "SSL",
                "PHASEFLOW_KAFKA_SSL_CAFILE": "/no/ca.pem",
            },
            "PHASEFLOW_KAFKA_SSL_CAFILE=/no/ca.pem: no such file",
        ),
        (
            {"PHASEFLOW_KAFKA_SSL_CAFILE": __file__},
            (
                "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS, but "
                "PHASEFLOW_KAFKA_SSL_CAFILE is set; use SSL or SASL_SSL, or unset it"
            ),
        ),
    ],
)
def test_unusable_security_settings_are_one_line_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BadInputError) as caught:
        load_settings()
    message = str(caught.value)
    assert message == f"{problem}; fix the variables (README: Settings)"
    assert PASSWORD not in message


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_variable_set_to_nothing_is_unset(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    """A compose file's ``PHASEFLOW_KAFKA_SSL_CAFILE:`` line (or a blanked secret) means unset:
    the system's CAs, no client certificate; not the working directory as a CA file."""
    monkeypatch.setenv("PHASEFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    for name in ("CAFILE", "CERTFILE", "KEYFILE"):
        monkeypatch.setenv(f"PHASEFLOW_KAFKA_SSL_{name}", blank)
    monkeypatch.setenv("PHASEFLOW_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("PHASEFLOW_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = load_settings()
    security = settings.kafka_security
    assert (security.ssl_cafile, security.ssl_certfile, security.ssl_keyfile) == (None,) * 3
    assert ClientSettings().kafka_ssl_cafile is None
    # A blank password is a missing one, named as such.
    monkeypatch.setenv("PHASEFLOW_KAFKA_SASL_PASSWORD", blank)
    with pytest.raises(BadInputError) as caught:
        load_settings()
    assert str(caught.value) == (
        "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs PHASEFLOW_KAFKA_SASL_PASSWORD; "
        "fix the variables (README: Settings)"
    )


def test_a_validation_error_does_not_quote_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_KAFKA_SASL_PASSWORD", PASSWORD)  # without SASL: an error
    with pytest.raises(ValidationError) as caught:
        ClientSettings()
    assert "sends no SASL credentials" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_unknown_mechanism_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHASEFLOW_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(BadInputError, match=r"^PHASEFLOW_KAFKA_SASL_MECHANISM='GSSAPI': Input"):
        load_settings()


def test_a_ca_file_that_is_not_pem_names_the_variable(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    security = KafkaSecurity(protocol="SSL", ssl_cafile=bogus)
    with pytest.raises(KafkaSecurityError, match=rf"^PHASEFLOW_KAFKA_SSL_CAFILE={bogus}: not a"):
        security.ssl_context()


def test_tls_context_verifies_and_checks_hostnames_unless_told_not_to() -> None:
    checked = KafkaSecurity(protocol="SASL_SSL").ssl_context()
    unchecked = KafkaSecurity(protocol="SSL", ssl_check_hostname=False).ssl_context()
    assert checked is not None
    assert unchecked is not None
    assert checked.verify_mode == ssl.CERT_REQUIRED
    assert checked.check_hostname
    assert unchecked.verify_mode == ssl.CERT_REQUIRED
    assert not unchecked.check_hostname
    assert KafkaSecurity().ssl_context() is None


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, message)
    error.verify_code, error.verify_message = code, message
    return error


@pytest.mark.parametrize(
    ("error", "names"),
    [
        (_verify_error(20, "unable to get local issuer certificate"), "PHASEFLOW_KAFKA_SSL_CAFILE"),
        (_verify_error(62, "Hostname mismatch"), "PHASEFLOW_KAFKA_SSL_CHECK_HOSTNAME=false"),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]"),
            "PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (kafka_errors.SaslAuthenticationFailed("bad"), "PHASEFLOW_KAFKA_SASL_PASSWORD"),
        (kafka_errors.UnsupportedSaslMechanismError("no"), "PHASEFLOW_KAFKA_SASL_MECHANISM="),
        (ConnectionRefusedError(111, "Connection refused"), "PHASEFLOW_BROKER_URL"),
        (TimeoutError(), "no answer to a Kafka request within 3 s"),
    ],
)
def test_each_connect_failure_names_the_setting_to_check(error: BaseException, names: str) -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_username="svc",
        sasl_password=ClientSettings.model_fields["kafka_sasl_password"].annotation.__args__[0](
            PASSWORD
        ),  # type: ignore[union-attr]
    )
    line = explain_connect_error("broker:9093", security, error, 3.0)
    assert line.startswith("broker:9093: ")
    assert names in line
    assert "\n" not in line
    assert PASSWORD not in line


async def test_a_failed_sasl_connect_leaks_the_password_nowhere(
    sasl_env: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ClientSettings(broker_url=NOBODY_LISTENS, kafka_producer_idempotence=False)
    with pytest.raises(BrokerUnavailableError) as caught:
        await CompletionPublisher(settings, connect_timeout=3).start()
    captured = capsys.readouterr()
    assert "PHASEFLOW_BROKER_URL" in str(caught.value)
    everything = "\n".join([str(caught.value), caplog.text, captured.out, captured.err])
    assert caplog.records  # the failure was logged, so the search below searched something
    assert PASSWORD not in everything


def test_the_worker_exits_1_with_one_line_and_no_password() -> None:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("PHASEFLOW_")}
    env = {**clean, **SASL_ENV, "PHASEFLOW_BROKER_URL": NOBODY_LISTENS}
    done = subprocess.run(
        [sys.executable, "-m", "phaseflow.streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("phaseflow: error: cannot reach the broker at 127.0.0.1:1")
    assert "PHASEFLOW_BROKER_URL" in lines[-1]
    # Only phaseflow's line says it: not aiokafka's "Unable connect to ..." before it.
    assert not [line for line in lines if "ERROR" in line or "aiokafka" in line], lines
    assert PASSWORD not in done.stdout + done.stderr
