"""How every Kafka client of the mesh authenticates and encrypts: one object, from the settings.

:class:`KafkaSecurity` holds the security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
the SASL mechanism (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER through a token provider), the CA,
the client certificate and key (mTLS) and hostname verification, read from the ``KAFKA_*`` /
``CHOREO_*`` variables of ``choreo.observe.settings``. Producers, consumers and admin clients
take :meth:`KafkaSecurity.client_options`, the watchdog's faust app :meth:`KafkaSecurity.faust`,
and the broker probe (``choreo.kafka.broker.api_versions``) :meth:`KafkaSecurity.ssl_context`.

The password lives only in the settings' ``SecretStr`` and in the clients' own options: this
object's ``repr`` hides it, and nothing here logs it.

:func:`diagnose` turns a client's failed start, which aiokafka reports only as "Unable to
bootstrap", into one line naming the cause (wrong credentials, an untrusted certificate, TLS
spoken to a plain port or the reverse) as :class:`BrokerRefused`.
"""

from __future__ import annotations

import importlib
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from choreo.kafka.errors import BrokerRefused
from choreo.observe.settings import Settings, get_settings

if TYPE_CHECKING:
    from aiokafka.abc import AbstractTokenProvider

#: The broker's answers that mean "this principal may not": never retried, they name an ACL.
NOT_ALLOWED: tuple[type[KafkaError], ...] = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


@dataclass(frozen=True)
class KafkaSecurity:
    """One client identity: protocol, SASL mechanism and credentials, TLS files.

    Build it with :meth:`from_settings`; the default is PLAINTEXT with no SASL, what the
    embedded broker and a local Apache Kafka speak.
    """

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token_provider: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """The security the settings describe (they were checked whole when read)."""

        def path(value: object) -> str | None:
            return None if value is None else str(value)

        return cls(
            protocol=settings.security_protocol,
            mechanism=settings.sasl_mechanism,
            username=settings.sasl_username,
            password=settings.password(),
            token_provider=settings.sasl_oauth_token_provider,
            cafile=path(settings.ssl_cafile),
            certfile=path(settings.ssl_certfile),
            keyfile=path(settings.ssl_keyfile),
            check_hostname=settings.ssl_check_hostname,
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def principal(self) -> str:
        """Who the broker sees, for messages: ``User:name``, or what the protocol implies."""
        if self.username:
            return f"User:{self.username}"
        if self.mechanism == "OAUTHBEARER":
            return "the token provider's principal"
        if self.certfile:
            return "the client certificate's subject"
        return "User:ANONYMOUS"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting ``cafile`` (else the system's CAs) and presenting the client
        certificate when one is set; ``None`` for a protocol without TLS."""
        if not self.tls:
            return None
        context = create_ssl_context(
            cafile=self.cafile, certfile=self.certfile, keyfile=self.keyfile
        )
        context.check_hostname = self.check_hostname
        return context

    def _oauth(self) -> AbstractTokenProvider:
        assert self.token_provider is not None
        module, _, name = self.token_provider.partition(":")
        try:
            provider: AbstractTokenProvider = getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError) as exc:
            raise BrokerRefused(
                f"KAFKA_SASL_OAUTH_TOKEN_PROVIDER={self.token_provider} names nothing "
                f"importable: {exc}"
            ) from None
        return provider

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.mechanism is not None:
            options["sasl_mechanism"] = self.mechanism
            if self.mechanism == "OAUTHBEARER":
                options["sasl_oauth_token_provider"] = self._oauth()
            else:
                options["sasl_plain_username"] = self.username
                options["sasl_plain_password"] = self.password
        return options

    def faust(self) -> dict[str, Any]:
        """Keyword arguments for a ``faust.App``: its ``broker_credentials`` (or, for TLS
        alone, ``ssl_context``), mapped by faust onto the same aiokafka options."""
        from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if self.mechanism == "OAUTHBEARER":
            return {
                "broker_credentials": OAuthCredentials(oauth_cb=self._oauth(), ssl_context=context)
            }
        if self.mechanism is not None:
            return {
                "broker_credentials": SASLCredentials(
                    username=self.username,
                    password=self.password,
                    ssl_context=context,
                    mechanism=self.mechanism,
                )
            }
        if context is not None:
            return {"broker_credentials": SSLCredentials(context)}
        return {}


def security_of(settings: Settings) -> KafkaSecurity:
    """The security of ``settings`` (a shorthand for :meth:`KafkaSecurity.from_settings`)."""
    return KafkaSecurity.from_settings(settings)


def not_allowed(exc: BaseException, security: KafkaSecurity, what: str) -> BrokerRefused | None:
    """A :class:`BrokerRefused` naming the missing ACL when ``exc`` is the broker refusing
    ``security``'s principal an operation; ``None`` for any other error. ``what`` says what
    was being done (``"the keeper's commit"``)."""
    if not isinstance(exc, NOT_ALLOWED):
        return None
    return BrokerRefused(
        f"{what}: the broker denies {security.principal} ({type(exc).__name__}: {exc}); "
        "grant the ACLs `choreo acl` prints for this service"
    )


async def diagnose(
    bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0
) -> BrokerRefused | None:
    """Why no client could start on ``bootstrap``: one connection is made to each address
    the way the clients make it, and the first failure that is not "nothing listens" is
    returned as a one-line :class:`BrokerRefused` (wrong credentials, an unknown mechanism,
    an untrusted or mismatched certificate, TLS against a plain listener); ``None`` when
    nothing answers or a connection succeeds (the failure was elsewhere)."""
    options = security.client_options()
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            conn = await create_conn(
                host.strip("[]"),
                int(port),
                request_timeout_ms=int(timeout_s * 1000),
                **options,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
            return BrokerRefused(
                f"the broker at {address} refused {security.principal}'s credentials "
                f"({security.mechanism}): {exc} — check KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        except UnsupportedSaslMechanismError as exc:
            return BrokerRefused(f"the broker at {address} refused KAFKA_SASL_MECHANISM: {exc}")
        except ssl.SSLCertVerificationError as exc:
            return BrokerRefused(
                f"the broker at {address} presented a certificate this client does not trust "
                f"({exc.verify_message}) — check KAFKA_SSL_CAFILE"
                + (" and KAFKA_SSL_CHECK_HOSTNAME" if security.check_hostname else "")
            )
        except ssl.SSLError as exc:
            return BrokerRefused(
                f"TLS with the broker at {address} failed ({exc.reason or exc}) — is "
                f"KAFKA_SECURITY_PROTOCOL={security.protocol} what this listener speaks?"
            )
        except (TimeoutError, OSError, KafkaError, ValueError) as exc:
            if isinstance(exc, ConnectionRefusedError | socket.gaierror):
                continue  # nothing listens here: "no broker answers" is the right message
            return BrokerRefused(
                f"the broker at {address} took the connection but ended it before answering "
                f"({type(exc).__name__}): does the listener speak KAFKA_SECURITY_PROTOCOL="
                f"{security.protocol} (TLS where it has none, or none where it has TLS)?"
            )
        conn.close()
        return None
    return None


def current() -> KafkaSecurity:
    """This process's security, from its environment (``choreo.observe.settings``); what a
    client gets when its maker is given none."""
    return security_of(get_settings())


def make_admin(
    bootstrap: str, security: KafkaSecurity | None = None, **options: Any
) -> AIOKafkaAdminClient:
    """An aiokafka admin client on ``bootstrap`` with ``security`` (else :func:`current`)."""
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **(security or current()).client_options(), **options
    )


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start(client: _Startable, bootstrap: str, security: KafkaSecurity | None) -> None:
    """Start an aiokafka client; when it cannot reach the cluster, raise what
    :func:`diagnose` finds (wrong credentials, untrusted certificate, ...) in place of
    aiokafka's "Unable to bootstrap", which names no cause.

    Raises:
        BrokerRefused: the broker answered and refused this client, the message says why.
        aiokafka.errors.KafkaConnectionError: nothing answers at ``bootstrap``.
    """
    try:
        await client.start()
    except KafkaConnectionError:
        if (cause := await diagnose(bootstrap, security or current())) is not None:
            raise cause from None
        raise
