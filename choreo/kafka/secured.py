"""Apache Kafka with security on, as production clusters run it: for tests and trials.

:class:`SecuredKafka` is a :class:`choreo.kafka.broker.ApacheKafka` whose only client listener
speaks SASL_SSL (SCRAM-SHA-512 users created when its storage is formatted, a server
certificate signed by the caller's CA) and whose StandardAuthorizer allows nothing that no ACL
allows (``allow.everyone.if.no.acl.found=false``). The node's own traffic goes over the same
listener as the super user ``admin``; the controller listener (loopback, plaintext, used by
the node alone) is the other super user, ``User:ANONYMOUS``, since KRaft's controller requests
carry no SASL identity there.

The authorizer logs every decision (``kafka.authorizer.logger`` at DEBUG, which names the ACL
that allowed a request) to ``authorizer.log`` in the storage folder, read by
:meth:`SecuredKafka.decisions`: what each principal was allowed or denied, and by which rule.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from choreo.kafka.broker import ApacheKafka, free_port
from choreo.kafka.security import KafkaSecurity

MECHANISM = "SCRAM-SHA-512"
#: The super user the node itself and ``choreo acl --apply`` authenticate as.
ADMIN = "admin"

_AUTHORIZER_LOG4J = """
appender.auth.type = File
appender.auth.name = auth
appender.auth.fileName = {path}
appender.auth.layout.type = PatternLayout
appender.auth.layout.pattern = %m%n
logger.auth.name = kafka.authorizer.logger
logger.auth.level = DEBUG
logger.auth.additivity = false
logger.auth.appenderRef.auth.ref = auth
"""

# "Principal = User:keeper is Allowed operation = READ from host = 127.0.0.1 on resource =
# Topic:LITERAL:m.tasks for request = Fetch with resourceRefCount = 1 based on rule
# MatchingAcl(acl=StandardAcl(resourceType=TOPIC, resourceName=m.tasks, patternType=LITERAL,
# principal=User:keeper, host=*, operation=READ, permissionType=ALLOW))"
_DECISION = re.compile(
    r"Principal = (?P<principal>\S+) is (?P<verdict>Allowed|Denied) operation = "
    r"(?P<operation>\S+) .*? on resource = (?P<resource>[^:]+):(?P<pattern>[^:]+):"
    r"(?P<name>.*?) for request = (?P<request>\S+)(?P<rest>.*)$"
)
_RULE = re.compile(
    r"resourceType=(?P<resource>\w+), resourceName=(?P<name>[^,]*), patternType=(?P<pattern>\w+),"
    r" principal=(?P<principal>[^,]+), host=[^,]*, operation=(?P<operation>\w+), "
    r"permissionType=ALLOW"
)


@dataclass(frozen=True)
class Decision:
    """One authorization the broker made: who, allowed or not, what on which resource, and
    for an allowed one the ACL that allowed it (``rule``: resource type, pattern, name,
    operation; ``None`` for a super user or a denial)."""

    principal: str
    allowed: bool
    operation: str
    resource: str
    name: str
    request: str
    rule: tuple[str, str, str, str] | None


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files a secured node needs: the CA clients trust, and the node's certificate
    chain with its unencrypted PKCS#8 key in one file (Kafka's PEM key store)."""

    ca: Path
    server: Path


class SecuredKafka(ApacheKafka):
    """A single Apache Kafka node with one SASL_SSL listener and ACLs enforced.

    ``users`` maps SCRAM-SHA-512 user names to passwords (``admin`` is added, a super user,
    with ``admin_password``). ``bootstrap`` is the SASL_SSL address, for the host name
    ``localhost`` the server certificate must name.
    """

    def __init__(
        self,
        tls: TlsFiles,
        users: Mapping[str, str],
        admin_password: str,
        log_path: str | None = None,
    ) -> None:
        super().__init__(port=free_port(), log_path=log_path)
        self.tls = tls
        self.users = {**users, ADMIN: admin_password}

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    def security(self, user: str) -> KafkaSecurity:
        """The client security of ``user``: SASL_SSL, SCRAM-SHA-512, trusting the CA."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=MECHANISM,
            username=user,
            password=self.users[user],
            cafile=str(self.tls.ca),
        )

    def _config(self, folder: Path) -> dict[str, str]:
        listener = "listener.name.sasl_ssl"
        admin = self.users[ADMIN]
        return {
            "listeners": f"SASL_SSL://localhost:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_SSL://localhost:{self.port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"{listener}.{MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="{admin}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.server),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
            # topics exist only when an administrator creates them, as on a managed cluster
            "auto.create.topics.enable": "false",
        }

    def _format_args(self) -> list[str]:
        return [
            arg
            for user, password in self.users.items()
            for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
        ]

    def _probe(self) -> ssl.SSLContext | None:
        return self.security(ADMIN).ssl_context()

    def _write_config(self) -> Path:
        path = super()._write_config()
        assert self._folder is not None
        log4j = self._folder / "log4j2.properties"
        authorizer = _AUTHORIZER_LOG4J.format(path=self._folder / "authorizer.log")
        log4j.write_text(log4j.read_text() + authorizer)
        return path

    def decisions(self) -> list[Decision]:
        """Every authorization logged since the node started, in order (empty when stopped)."""
        if self._folder is None or not (self._folder / "authorizer.log").exists():
            return []
        found = []
        for line in (self._folder / "authorizer.log").read_text().splitlines():
            if (match := _DECISION.search(line)) is None:
                continue
            rule = _RULE.search(match["rest"])
            found.append(
                Decision(
                    principal=match["principal"],
                    allowed=match["verdict"] == "Allowed",
                    operation=match["operation"],
                    resource=match["resource"],
                    name=match["name"],
                    request=match["request"],
                    rule=(rule["resource"], rule["pattern"], rule["name"], rule["operation"])
                    if rule
                    else None,
                )
            )
        return found
