"""Process settings from the environment (``CHOREO_*``), shared by every service and the CLI."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo.observe.errors import SettingsError


def _kafka(name: str) -> AliasChoices:
    """A Kafka client setting's two variable names: ``KAFKA_<name>`` and ``CHOREO_<name>``
    (and the field name, for settings built in code)."""
    return AliasChoices(f"KAFKA_{name}", f"CHOREO_{name}", name.lower())


class Settings(BaseSettings):
    """Runtime knobs. The mesh spec says *what* runs; these say *where* and *how fast*."""

    # populate_by_name: settings re-validated with a field changed (the topic prefix a
    # ``choreo up`` announces, a client's own broker) keep ``bootstrap_servers``, which the
    # environment sets through its aliases
    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS")
    )
    # How every Kafka client authenticates and encrypts (choreo.kafka.security): aiokafka's own
    # parameter names, read as KAFKA_<NAME> (what users of KAFKA_BOOTSTRAP_SERVERS expect) or
    # CHOREO_<NAME>.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_kafka("SECURITY_PROTOCOL")
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(None, validation_alias=_kafka("SASL_MECHANISM"))
    )
    sasl_username: str | None = Field(None, validation_alias=_kafka("SASL_USERNAME"))
    #: Never logged, put in a span or shown by ``repr`` (SecretStr); or read from the file.
    sasl_password: SecretStr | None = Field(None, validation_alias=_kafka("SASL_PASSWORD"))
    sasl_password_file: FilePath | None = Field(None, validation_alias=_kafka("SASL_PASSWORD_FILE"))
    #: ``module:name`` of a callable returning an ``aiokafka.abc.AbstractTokenProvider``
    #: (OAUTHBEARER: MSK IAM, Confluent Cloud OAuth, ...), called once per client.
    sasl_oauth_token_provider: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        validation_alias=_kafka("SASL_OAUTH_TOKEN_PROVIDER"),
    )
    ssl_cafile: FilePath | None = Field(None, validation_alias=_kafka("SSL_CAFILE"))
    ssl_certfile: FilePath | None = Field(None, validation_alias=_kafka("SSL_CERTFILE"))
    ssl_keyfile: FilePath | None = Field(None, validation_alias=_kafka("SSL_KEYFILE"))
    ssl_check_hostname: bool = Field(True, validation_alias=_kafka("SSL_CHECK_HOSTNAME"))
    topic_prefix: str = Field("choreo", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    #: Which broker's tuning to use; ``auto`` asks the broker (``choreo.kafka.broker.broker_kind``).
    broker_kind: Literal["auto", "kafka", "embedded"] = "auto"
    #: ``auto``: on a broker with transactions (Apache Kafka) the keeper and agents write each
    #: batch's outputs and input offsets in one transaction (exactly-once for read_committed
    #: readers); ``off``: at-least-once with idempotent apply, as on the embedded broker.
    exactly_once: Literal["auto", "off"] = "auto"
    #: The fetch wait while records flow on the embedded broker, whose waiting fetches are
    #: not woken by new data (latency follows this wait).
    fetch_max_wait_ms: int = Field(10, ge=1, le=5000)
    #: On the embedded broker, the ceiling an idle consumer's fetch wait backs off to: the
    #: first record after a quiet spell waits up to this long, a quiet mesh costs ~no CPU.
    #: (Apache Kafka's fetches are woken by data and keep Kafka's own 500 ms wait.)
    fetch_idle_wait_ms: int = Field(500, ge=1, le=5000)
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(1_000, ge=100)
    max_in_flight: int = Field(8, ge=1, le=1024)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    #: ``INFO``: lifecycle and verdicts; ``DEBUG``: one line per step too (choreo.observe.logs).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: ``json``, or ``keyvalue`` lines (``console`` is the same).
    log_format: Literal["json", "keyvalue", "console"] = "json"
    shutdown_grace_s: float = Field(30.0, gt=0)
    #: Where agents mark the records whose steps run (choreo.agent.markers); default: a
    #: ``choreo-steps`` folder in the system's temporary folder.
    markers_dir: Path | None = None
    #: The largest record value a service produces, in bytes, when the broker does not report
    #: its topics' ``max.message.bytes`` (see choreo.kafka.limits); at most the producer's
    #: own 1 MiB request cap.
    max_record_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=1024 * 1024)
    #: A state value whose JSON is over this many bytes travels by reference, in chunks of
    #: this size on the blob topic (choreo.schemas.blobs); the keeper takes at most half the
    #: record limit.
    blob_bytes: int = Field(64 * 1024, ge=1024, le=512 * 1024)
    #: How long a service keeps retrying a broker that does not answer (produce or commit
    #: timeouts, no leader, connection refused) before it exits and says why, in seconds: the
    #: keeper rebuilds and re-reads, an agent sends its step's records again.
    broker_outage_s: float = Field(300.0, gt=0)
    #: How often the keeper looks for running traces past their deadline, in seconds.
    deadline_sweep_s: float = Field(1.0, gt=0)
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description=(
            "longest gap between two polls before a consumer leaves its group; agents poll while "
            "their steps run, so a slow step never outlives it, but a rebalance waits at most "
            "this long for revoked steps to finish"
        ),
    )
    max_reply_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description=(
            "bytes of model text one step keeps; a longer reply is cut and the cut noted, so a "
            "step record stays well under the broker's record size limit"
        ),
    )

    @field_validator("log_level", "security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def markers_folder(self) -> Path:
        """``markers_dir``, else ``choreo-steps`` in the system's temporary folder."""
        return self.markers_dir or Path(tempfile.gettempdir()) / "choreo-steps"

    @model_validator(mode="after")
    def _security_complete(self) -> Self:
        """Refuse a security configuration no client could use, naming what is missing."""
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM"
            )
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                f"KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                "uses no SASL (SASL_SSL or SASL_PLAINTEXT)"
            )
        if self.sasl_mechanism == "OAUTHBEARER":
            if self.sasl_oauth_token_provider is None:
                raise ValueError(
                    "KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SASL_OAUTH_TOKEN_PROVIDER"
                )
        elif self.sasl_mechanism is not None and (
            self.sasl_username is None or self.password() is None
        ):
            raise ValueError(
                f"KAFKA_SASL_MECHANISM={self.sasl_mechanism} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
            )
        if self.sasl_password is not None and self.sasl_password_file is not None:
            raise ValueError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "a client certificate needs both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
            )
        return self

    def password(self) -> str | None:
        """The SASL password, from ``KAFKA_SASL_PASSWORD`` or the first line of the file
        ``KAFKA_SASL_PASSWORD_FILE`` names (as a mounted secret holds it)."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            lines = Path(self.sasl_password_file).read_text().splitlines()
            return lines[0] if lines else ""
        return None


def settings_error(exc: ValidationError) -> str:
    """One line per bad variable: its name, what it is set to, and what it must be."""
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a check across variables: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
            continue
        name = str(error["loc"][0])
        variable = name if name.isupper() else f"CHOREO_{name.upper()}"
        shown = "***" if "PASSWORD" in variable.upper() else error.get("input")
        lines.append(f"{variable}={shown!s}: {error['msg']}")
    return "bad environment: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """This process's settings, read from the environment once.

    Raises ``SettingsError`` naming every bad variable, its value and what it must be.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(settings_error(exc)) from None
