"""``choreo acl`` and ``choreo doctor``: least privilege per service, and whether a cluster
gives the mesh what it needs.

``choreo acl MESH.yaml`` prints every ACL each service needs (choreo.kafka.acl.mesh_acls);
with ``--apply`` it creates them for the principals named by ``--principal SERVICE=PRINCIPAL``
(choreo.client.Client.grant). ``choreo doctor MESH.yaml`` prints one table: authentication,
topics, ACLs, transactions, record size, replication (choreo.client.Client.doctor).
"""

from __future__ import annotations

import argparse

from choreo.cli.common import AddCommand, UsageError, with_client
from choreo.observe.settings import Settings
from choreo.spec.mesh import load_mesh


def _principals(pairs: list[str]) -> dict[str, str]:
    """``SERVICE=PRINCIPAL`` arguments as a dict; a usage error for one without ``=``."""
    named = {}
    for pair in pairs:
        service, sep, principal = pair.partition("=")
        if not sep or not service or not principal:
            raise UsageError(f"--principal {pair!r}: give SERVICE=PRINCIPAL (keeper=User:keeper)")
        named[service] = principal
    return named


def cmd_acl(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.kafka.acl import mesh_acls
    from choreo.observe import terminal as output
    from choreo.schemas.topics import Topics

    spec = load_mesh(args.mesh)
    named = _principals(args.principal)
    rules = mesh_acls(spec, Topics(settings.topic_prefix), watchdog=not args.no_watchdog)
    if unknown := sorted(set(named) - set(rules)):
        raise UsageError(
            f"--principal: no service {', '.join(unknown)} (services: {', '.join(rules)})"
        )
    if args.apply:
        if not named:
            raise UsageError("--apply needs at least one --principal SERVICE=PRINCIPAL")
        created = with_client(
            settings, lambda client: client.grant(spec, named, watchdog=not args.no_watchdog)
        )
        output.say(f"{created} ACLs created for {', '.join(sorted(named))}")
        return 0
    sheet = output.Sheet(
        ["service", "principal", "operation", "resource", "pattern", "name"],
        title=f"ACLs of mesh {spec.name} under prefix {settings.topic_prefix}",
    )
    for service, service_rules in rules.items():
        for rule in service_rules:
            sheet.add(
                service,
                named.get(service, "-"),
                rule.operation,
                rule.resource,
                rule.pattern,
                rule.name,
            )
    output.show_sheet(sheet)
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka.errors import KafkaConnectionError

    from choreo.kafka.errors import BrokerRefused
    from choreo.observe import terminal as output

    spec = load_mesh(args.mesh)
    sheet = output.Sheet(["check", "verdict", "found"], title=f"mesh {spec.name} on the cluster")
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    try:
        named = _principals(args.principal)
        checks = with_client(settings, lambda client: client.doctor(spec, named))
    except (BrokerRefused, KafkaConnectionError) as exc:  # the cause, in one line
        sheet.add("authentication", output.line(("fail", "red")), str(exc))
        output.show_sheet(sheet)
        return 1
    sheet.add(
        "authentication",
        output.line(("ok", "green")),
        f"as {settings.sasl_username or 'the configured identity'}",
    )
    for check in checks:
        sheet.add(check.name, output.line((check.verdict, style[check.verdict])), check.found)
    output.show_sheet(sheet)
    return 1 if any(check.verdict == "fail" for check in checks) else 0


def register(add: AddCommand) -> None:
    p = add("acl", cmd_acl, "print (or --apply) the Kafka ACLs each service of a mesh needs")
    p.add_argument("mesh", help="the mesh spec (YAML)")
    p.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="SERVICE=PRINCIPAL",
        help="the principal a service runs as (keeper=User:keeper, agent:writer=User:writer); "
        "repeat per service (default: none)",
    )
    p.add_argument(
        "--apply",
        action="store_true",
        help="create the ACLs of the named services through the admin API (default: print)",
    )
    p.add_argument(
        "--no-watchdog", action="store_true", help="the mesh runs no watchdog (default: it does)"
    )

    p = add("doctor", cmd_doctor, "check that the cluster gives a mesh what it needs, in one table")
    p.add_argument("mesh", help="the mesh spec (YAML)")
    p.add_argument(
        "--principal",
        action="append",
        default=[],
        metavar="SERVICE=PRINCIPAL",
        help="check the ACLs this service's principal holds (keeper=User:keeper); repeat per "
        "service (default: not checked)",
    )
