"""The mesh on Apache Kafka with security on: SASL_SSL (SCRAM-SHA-512), a CA made here, and the
StandardAuthorizer allowing nothing no ACL allows. Every service of every example runs as its
own principal holding exactly the ACLs ``choreo acl`` prints for it; the broker's authorizer
log says what each principal did, so the test fails when a service is denied something (an
ACL missing) or holds an ACL it never used (a right too many).

One secured node for the module; it runs only where the session's broker is Apache Kafka (CI's
second pass), since the embedded broker has no SASL, TLS or ACLs, and only where Java and
Kafka's jars are present.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreo.cli.main import main
from choreo.client import Client
from choreo.errors import BrokerRefused
from choreo.kafka import acl
from choreo.kafka.broker import BrokerHandle, broker_kind, kafka_home
from choreo.kafka.clients import make_producer, read_topic
from choreo.kafka.secured import ADMIN, SecuredKafka
from choreo.kafka.security import KafkaSecurity, make_admin, start
from choreo.kafka.topics import ensure_topics
from choreo.observe.settings import Settings, get_settings
from choreo.schemas import Budget, DeadLetter, Task, TerminalResult, decode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.testing import Mesh
from tests.conftest import EXAMPLES
from tests.security.certs import make_tls

pytestmark = pytest.mark.integration

#: Tasks per example that between them reach every agent (triage routes each to one team).
TASKS = {
    "writer-editor": ["Write about event-driven systems."],
    "research": ["Should we move our batch jobs to event streams?"],
    "support-desk": ["My order 1042 arrived broken, can I get a refund?"],
    "triage": [
        "The app crashes when I upload a photo.",
        "I was charged twice for my subscription.",
        "Do you have an office in Lisbon?",
    ],
    "supervised-writing": ["Why do agents need shared, versioned state?"],
    "code-fix": [
        "Write slugify(title) in solution.py: lowercase words of letters and digits, "
        "joined by single hyphens, punctuation dropped."
    ],
}

#: Rights a run of a healthy task, a refused task and a bad event does not exercise, each
#: with the path that needs it (keyed by service kind, then the ACL's topic suffix).
RARE = {
    ("keeper", "WRITE", "conflicts"): "two steps writing one `replace` field at one version",
    ("watchdog", "WRITE", "control"): "a loop verdict (docs/WATCHDOG.md)",
    ("keeper", "WRITE", "blobs"): "a state value over CHOREO_BLOB_BYTES (docs/CONTRACT.md)",
    ("keeper", "READ", "blobs"): "a partition taken over whose state holds such a value",
    ("agent", "READ", "blobs"): "such a value, fetched before the step that reads it",
}


#: The editor of a writer-editor mesh granted all but its write of the outbox.
LACKING = "lacking-editor"


def principal_of(example: str, service: str) -> str:
    """A SCRAM user per service of each example (``research.agent-analyst``)."""
    return f"{example}.{service.replace(':', '-')}"


def spec_of(example: str) -> MeshSpec:
    return load_mesh(EXAMPLES / example / "mesh.yaml")


def prefix_of(example: str) -> str:
    return f"sec-{example}"


def services_of(example: str) -> list[str]:
    return list(acl.mesh_acls(spec_of(example), Topics(prefix_of(example))))


@pytest.fixture(scope="module")
def secured(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredKafka]:
    if broker_kind(broker.bootstrap) != "kafka":
        pytest.skip(
            "security runs once, on Apache Kafka: the embedded broker has no SASL, TLS or ACLs"
        )
    if shutil.which("java") is None or not any((kafka_home() / "libs").glob("kafka_2.13-*.jar")):
        pytest.skip("a secured Apache Kafka needs Java 17 and Kafka's jars (choreo broker --kafka)")
    folder = tmp_path_factory.mktemp("secured")
    users = {
        principal_of(example, service): secrets.token_urlsafe(12)
        for example in TASKS
        for service in services_of(example)
    }
    users["nobody"] = users[LACKING] = secrets.token_urlsafe(12)
    node = SecuredKafka(make_tls(folder / "tls"), users, secrets.token_urlsafe(12))
    node.log_path = str(folder / "kafka.log")
    node.start()
    try:
        yield node
    finally:
        node.stop()


def settings_of(node: SecuredKafka, user: str, prefix: str) -> Settings:
    security = node.security(user)
    return Settings(
        topic_prefix=prefix,
        security_protocol=security.protocol,
        sasl_mechanism=security.mechanism,
        sasl_username=security.username,
        sasl_password=security.password,
        ssl_cafile=security.cafile,
        session_timeout_ms=6000,
    )


def credentials(node: SecuredKafka, user: str) -> dict[str, object]:
    return {"sasl_username": user, "sasl_password": node.users[user]}


async def run_example(node: SecuredKafka, example: str) -> list[TerminalResult]:
    """Apply the example's ACLs, run it with each service as its own principal, and drive
    the paths its rights are for: a task to completion, one halted on its budget (an
    escalation), and bytes no one can decode on the tasks topic and every agent's input
    (dead letters). Returns the results on its results topic, read_committed."""
    spec, prefix = spec_of(example), prefix_of(example)
    topics = Topics(prefix)
    admin_settings = settings_of(node, ADMIN, prefix)
    admin_security = node.security(ADMIN)
    rules = acl.mesh_acls(spec, topics)
    admin = make_admin(node.bootstrap, admin_security)
    await start(admin, node.bootstrap, admin_security)
    try:
        principals = {s: f"User:{principal_of(example, s)}" for s in rules}
        await acl.apply(admin, principals, rules)
    finally:
        await admin.close()
    await ensure_topics(node.bootstrap, topics, spec, admin_security)
    per_service = {s: credentials(node, principal_of(example, s)) for s in rules}
    async with Mesh(
        spec,
        node.bootstrap,
        watchdog=True,
        settings=admin_settings,
        prefix=prefix,
        service_settings=per_service,
    ) as mesh:
        traces = [await mesh.client.submit(Task(input=text)) for text in TASKS[example]]
        first = TASKS[example][0]
        traces.append(await mesh.client.submit(Task(input=first, budget=Budget(max_hops=1))))
        for trace_id in traces:
            await mesh.client.wait(trace_id, timeout_s=180.0)
        # records nobody can decode: the keeper, every agent and the watchdog dead-letter them
        producer_topics = [topics.tasks, topics.hops] + [
            topics.event(t) for a in spec.agents for t in a.subscribe
        ]
        writer = make_producer(node.bootstrap, "choreo-test", security=admin_security)
        await writer.start()
        try:
            for topic in set(producer_topics):
                await writer.send_and_wait(topic, b"\xff not a record", key=b"bad")
        finally:
            await writer.stop()
        for _ in range(240):  # until each reader has dead-lettered its bad record
            letters = await read_topic(node.bootstrap, admin_settings, topics.dlq)
            if {r.value and decode(r.value, DeadLetter).topic for r in letters} >= set(
                producer_topics
            ):
                break
            await asyncio.sleep(0.5)
    records = await read_topic(node.bootstrap, admin_settings, topics.results)
    return [decode(r.value or b"", TerminalResult) for r in records]


async def run_examples(node: SecuredKafka) -> dict[str, list[TerminalResult]]:
    """Every example in turn (side by side, two cores would time out); each one's results."""
    return {example: await run_example(node, example) for example in TASKS}


def unused(node: SecuredKafka, example: str) -> dict[str, list[str]]:
    """Each service's granted ACLs that no allowed request of its principal matched."""
    spec, topics = spec_of(example), Topics(prefix_of(example))
    used: dict[str, set[tuple[str, str, str, str]]] = {}
    for decision in node.decisions():
        if decision.allowed and decision.rule is not None:
            used.setdefault(decision.principal, set()).add(decision.rule)
    found = {}
    for service, rules in acl.mesh_acls(spec, topics).items():
        if service == "client":
            continue  # an operator's rights: each command reads its own topics
        matched = used.get(f"User:{principal_of(example, service)}", set())
        kind = service.partition(":")[0]
        left = [
            str(rule)
            for rule in rules
            if (rule.resource, rule.pattern, rule.name, rule.operation) not in matched
            and (kind, rule.operation, rule.name.rpartition(".")[2]) not in RARE
        ]
        if left:
            found[service] = left
    return found


@pytest.mark.timeout(900)
def test_every_example_runs_exactly_once_with_each_service_holding_only_the_acls_it_uses(
    secured: SecuredKafka,
) -> None:
    ran = asyncio.run(run_examples(secured))
    for example, results in ran.items():
        tasks = len(TASKS[example]) + 1
        assert len({r.trace_id for r in results}) == len(results) == tasks, (example, results)
        assert sorted(r.status for r in results) == ["completed"] * (tasks - 1) + ["halted"]
    services = {f"User:{principal_of(e, s)}" for e in TASKS for s in services_of(e)}
    denied = sorted(
        {
            (d.principal, d.operation, d.resource, d.name)
            for d in secured.decisions()
            if not d.allowed and d.principal in services
        }
    )
    assert denied == [], "a service was refused what it needed: " + repr(denied)
    too_many = {example: unused(secured, example) for example in TASKS}
    assert not any(too_many.values()), f"rights granted but never used: {too_many}"


def test_wrong_credentials_fail_with_one_line_naming_them(secured: SecuredKafka) -> None:
    wrong = dataclasses.replace(secured.security("nobody"), password="not the password")
    with pytest.raises(BrokerRefused, match="credentials") as refused:
        asyncio.run(_open_client(secured, wrong))
    assert "\n" not in str(refused.value) and "not the password" not in str(refused.value)


def test_an_untrusted_certificate_fails_with_one_line_naming_it(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    other_ca = make_tls(tmp_path / "other", name="another-ca").ca
    untrusting = dataclasses.replace(secured.security("nobody"), cafile=str(other_ca))
    with pytest.raises(BrokerRefused, match="does not trust") as refused:
        asyncio.run(_open_client(secured, untrusting))
    assert "\n" not in str(refused.value)


async def _open_client(node: SecuredKafka, security: KafkaSecurity) -> None:
    settings = settings_of(node, "nobody", "sec-nobody").model_copy(
        update={"sasl_password": security.password, "ssl_cafile": security.cafile}
    )
    async with Client(node.bootstrap, settings=settings):
        pass


@pytest.mark.timeout(420)
def test_an_agent_lacking_an_acl_exits_with_one_line_and_its_step_waits_for_the_grant(
    secured: SecuredKafka,
) -> None:
    """Run as a process (its exit and its last log line are what an operator sees); the
    keeper and the writer run in this process."""
    example, prefix = "writer-editor", "sec-lacking"
    spec, topics = spec_of(example), Topics(prefix)
    rules = acl.mesh_acls(spec, topics, watchdog=False)
    missing = acl.Acl("TOPIC", "LITERAL", topics.outbox, "WRITE")
    rules["agent:editor"] = [r for r in rules["agent:editor"] if r != missing]
    principals = {s: f"User:{principal_of(example, s)}" for s in rules}
    principals["agent:editor"] = f"User:{LACKING}"
    admin_security = secured.security(ADMIN)
    admin_settings = settings_of(secured, ADMIN, prefix)
    mesh_file = EXAMPLES / example / "mesh.yaml"

    async def grant(given: dict[str, list[acl.Acl]]) -> None:
        admin = make_admin(secured.bootstrap, admin_security)
        await start(admin, secured.bootstrap, admin_security)
        try:
            await acl.apply(admin, {s: principals[s] for s in given}, given)
        finally:
            await admin.close()

    async def editor(env: dict[str, str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "choreo"),
            *("run", "agent", "--mesh", str(mesh_file), "--agent", "editor"),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    async def scenario() -> tuple[int, list[str], TerminalResult | None, TerminalResult]:
        await grant(rules)
        await ensure_topics(secured.bootstrap, topics, spec, admin_security)
        service_settings = {
            s: credentials(secured, principal_of(example, s)) for s in ("keeper", "agent:writer")
        }
        async with Mesh(
            spec,
            secured.bootstrap,
            agents=["writer"],
            settings=admin_settings,
            prefix=prefix,
            service_settings=service_settings,
        ) as mesh:
            security = secured.security(LACKING)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": secured.bootstrap,
                "KAFKA_SECURITY_PROTOCOL": security.protocol,
                "KAFKA_SASL_MECHANISM": security.mechanism or "",
                "KAFKA_SASL_USERNAME": LACKING,
                "KAFKA_SASL_PASSWORD": security.password or "",
                "KAFKA_SSL_CAFILE": security.cafile or "",
                "CHOREO_TOPIC_PREFIX": prefix,
                "CHOREO_MODEL_SCRIPTED_BASE_URL": mesh.model_url("scripted"),
                "CHOREO_LOG_FORMAT": "keyvalue",
            }
            trace_id = await mesh.client.submit(Task(input=TASKS[example][0]))
            refused = await editor(env)
            _, stderr = await asyncio.wait_for(refused.communicate(), 180)
            lines = stderr.decode(errors="replace").splitlines()
            waiting = await mesh.client.result(trace_id)
            await grant({"agent:editor": [missing]})
            granted = await editor(env)
            try:
                result = await mesh.client.wait(trace_id, timeout_s=180.0)
            finally:
                granted.terminate()
                await granted.wait()
        return refused.returncode or 0, lines, waiting, result

    code, lines, waiting, result = asyncio.run(scenario())
    assert code == 1
    last = lines[-1]
    assert "the broker refused this service" in last, lines[-5:]
    assert f"User:{LACKING}" in last and "TopicAuthorizationFailedError" in last
    assert "Traceback" not in "\n".join(lines)
    assert waiting is None  # the step was not lost nor dead-lettered: it waited
    assert result.status == "completed"


def test_choreo_acl_applies_and_choreo_doctor_tells_which_acl_a_service_lacks(
    secured: SecuredKafka,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example, prefix = "writer-editor", "sec-doctor"
    spec, mesh = spec_of(example), str(EXAMPLES / example / "mesh.yaml")
    keeper, writer = (f"User:{principal_of(example, s)}" for s in ("keeper", "agent:writer"))
    admin = secured.security(ADMIN)
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": secured.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": admin.protocol,
        "KAFKA_SASL_MECHANISM": admin.mechanism or "",
        "KAFKA_SASL_USERNAME": ADMIN,
        "KAFKA_SASL_PASSWORD": admin.password or "",
        "KAFKA_SSL_CAFILE": admin.cafile or "",
        "CHOREO_TOPIC_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    asyncio.run(ensure_topics(secured.bootstrap, Topics(prefix), spec, admin))
    try:
        # the keeper granted its ACLs, the writer none
        assert main(["acl", mesh, "--apply", "--principal", f"keeper={keeper}"]) == 0
        assert "ACLs created for keeper" in capsys.readouterr().out
        principals = ["--principal", f"keeper={keeper}", "--principal", f"agent:writer={writer}"]
        assert main(["doctor", mesh, *principals]) == 1
    finally:
        get_settings.cache_clear()
    rows = {
        cells[0]: cells[1:]
        for line in capsys.readouterr().out.splitlines()
        if len(cells := line.split("\t")) == 3
    }
    for check in ("authentication", "broker", "topics", "transactions"):
        assert rows[check][0] == "ok", rows
    verdict, found = rows["acls"]
    assert verdict == "fail" and "agent:writer" in found and f"keeper ({keeper})" not in found
    assert rows["replication"][0] == "warn"  # one node: one replica


def test_tls_spoken_to_a_plain_listener_fails_with_one_line_naming_the_protocol(
    secured: SecuredKafka, broker: BrokerHandle
) -> None:
    tls = KafkaSecurity(protocol="SSL", cafile=secured.security(ADMIN).cafile)
    settings = Settings(security_protocol="SSL", ssl_cafile=tls.cafile, topic_prefix="sec-tls")

    async def open_client() -> None:
        async with Client(broker.bootstrap, settings=settings):
            pass

    with pytest.raises(BrokerRefused, match="KAFKA_SECURITY_PROTOCOL=SSL") as refused:
        asyncio.run(open_client())
    assert "\n" not in str(refused.value)
