"""One security configuration for every Kafka client, from the ``KAFKA_*`` variables: a bad one
is refused in one line, and the password shows nowhere but in the clients' own options."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo.kafka.security import KafkaSecurity, security_of
from choreo.observe.errors import SettingsError
from choreo.observe.settings import Settings, get_settings

SCRAM = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "keeper",
}


def read(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return get_settings()
    finally:
        get_settings.cache_clear()


# "pw:" and what follows: a password that cannot occur in a repr by chance
@given(password=st.text(min_size=1).map(lambda text: f"pw:{text}"))
def test_the_password_is_in_no_repr_of_settings_or_security(password: str) -> None:
    settings = Settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="keeper",
        sasl_password=password,
    )
    security = security_of(settings)
    assert security.client_options()["sasl_plain_password"] == password
    assert password not in repr(settings) and password not in repr(security)


def test_kafka_and_choreo_names_both_configure_the_clients(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = read(
        monkeypatch,
        CHOREO_SECURITY_PROTOCOL="sasl_ssl",
        CHOREO_SASL_MECHANISM="scram-sha-256",
        KAFKA_SASL_USERNAME="agent",
        KAFKA_SASL_PASSWORD_FILE=str(secret),
        KAFKA_SSL_CHECK_HOSTNAME="false",
    )
    options = security_of(settings).client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == "from-a-file"
    assert options["ssl_context"].check_hostname is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        ({**SCRAM}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "KAFKA_SASL_OAUTH_TOKEN_PROVIDER",
        ),
    ],
)
def test_a_bad_security_setting_is_refused_in_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        read(monkeypatch, **env)
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_a_refused_password_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as refused:
        read(monkeypatch, **SCRAM, KAFKA_SASL_PASSWORD="hunter2", KAFKA_SSL_KEYFILE="/nope")
    assert "hunter2" not in str(refused.value)


def test_plaintext_is_the_default_and_adds_no_tls() -> None:
    assert KafkaSecurity().client_options() == {"security_protocol": "PLAINTEXT"}
    assert KafkaSecurity().ssl_context() is None
