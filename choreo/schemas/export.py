"""Publish the wire contract: one JSON Schema per record and one AsyncAPI 3.0 document.

The Structs in :mod:`choreo.schemas.records` are the source of truth. This module renders them into
files that any Kafka client in any language can use, byte-for-byte deterministic (sorted keys,
cleaned docstrings, ``\\n`` newlines), so a test can tell when the published files lag the code.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from choreo.schemas.records import RECORDS, SCHEMA_VERSION, Record
from choreo.schemas.topics import Topics

#: Where the published files live in a checkout (and where ``choreo schema export`` writes).
DEFAULT_OUT = Path("schemas") / "json"
ASYNCAPI_FILE = "asyncapi.yaml"
SCHEMA_SUFFIX = ".schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"

# A schema, not ``true``, so the published file says *why* extra fields are allowed.
_KEPT = {
    "description": "Unknown fields are allowed, and kept by every service that passes "
    "this record on."
}
_NOT_KEPT = {"description": "Unknown fields are accepted but not kept inside this object."}
_SCHEMA_VERSION = {
    "description": "Version of this record's wire format. The mesh always writes it; "
    "producers may omit it. Additive changes keep the version.",
}
_EXTENSIONS = {
    "type": "object",
    "description": "Reserved name: do not send. Put extra fields at the top level, "
    "where services keep them.",
}

_TRACE_KEY = {"type": "string", "description": "The trace id (UTF-8); one trace, one partition."}
_DELTA_KEY = {
    "type": "string",
    "description": "`<trace id>/<version>`: the version the delta brings the trace to. Written "
    "to the trace's own partition (that of the trace id), not the key's; a null value (a "
    "tombstone) follows once a newer snapshot replaces the delta.",
}
#: The blob topic's one message: bytes, not a record (choreo.schemas.blobs).
BLOB_CHUNK = "BlobChunk"
_BLOB_CHUNK = (
    "A chunk of a big state value's JSON encoding, as it is: the value is its chunks joined "
    "in the order its reference lists them.",
    "application/octet-stream",
    {"type": "string", "contentEncoding": "binary"},
)
_SHA_KEY = {
    "type": "string",
    "description": "The chunk's SHA-256, hex; written to the partition of the trace whose "
    "state holds it.",
}
_ORIGINAL_KEY = {
    "type": ["string", "null"],
    "description": "The original record's key, unchanged (usually its trace id).",
}

#: Who takes part in the mesh; operations are tagged with these.
SERVICES: dict[str, str] = {
    "client": "Any Kafka client in any language, `choreo submit` included.",
    "keeper": "The state keeper: admits tasks, folds deltas, forwards events, ends traces.",
    "agent": "A worker agent: consumes its event-type topics, writes its steps to the outbox.",
    "watchdog": "Enforces budgets and stops loops with control verdicts and escalations.",
    "operator": "A person or tool using the `choreo` CLI.",
}


@dataclass(frozen=True)
class Channel:
    """One topic of the contract: its record, its key and who sends and receives it."""

    record: str
    description: str
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    key: dict[str, Any]
    #: Other records on the topic, each with its key.
    more: tuple[tuple[str, dict[str, Any]], ...] = ()

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Every record on the topic, with its key: ``record`` first."""
        return [(self.record, self.key), *self.more]


#: Every system topic, by its attribute on :class:`~choreo.schemas.topics.Topics`.
SYSTEM_CHANNELS: dict[str, Channel] = {
    "tasks": Channel(
        "Task",
        "Submitted tasks; the keeper admits each one as a trace.",
        ("client",),
        ("keeper",),
        _TRACE_KEY,
    ),
    "outbox": Channel(
        "Envelope",
        "Every agent step: its event, its state delta and the event type it emits.",
        ("agent",),
        ("keeper",),
        _TRACE_KEY,
    ),
    "state": Channel(
        "Snapshot",
        "The state log (compacted): each trace's latest full snapshot, keyed by its trace "
        "id, and the deltas written after it, each keyed `<trace id>/<version>` on the "
        "trace's partition; a reader folds the deltas after the snapshot "
        "(docs/ARCHITECTURE.md, Long traces).",
        ("keeper",),
        ("keeper", "watchdog", "operator"),
        _TRACE_KEY,
        more=(("StateDelta", _DELTA_KEY),),
    ),
    "blobs": Channel(
        BLOB_CHUNK,
        "State values over the blob threshold, in chunks (compacted, content-addressed). In "
        "an event, a snapshot or a delta such a value is an object "
        '`{"$blob": {"sha256", "size", "topic", "chunks": [[sha256, partition, offset], ...]}}`'
        ": fetch each chunk at its partition and offset, check its key and hash, join them, "
        "check the whole's hash and decode the JSON (docs/CONTRACT.md, Size limits).",
        ("keeper",),
        ("keeper", "agent", "operator"),
        _SHA_KEY,
    ),
    "hops": Channel(
        "HopRecord",
        "One record per applied step, with the trace's running totals.",
        ("keeper",),
        ("watchdog", "operator"),
        _TRACE_KEY,
    ),
    "control": Channel(
        "ControlVerdict",
        "Halts and persona shifts for one trace.",
        ("watchdog", "operator"),
        ("keeper", "agent"),
        _TRACE_KEY,
    ),
    "results": Channel(
        "TerminalResult",
        "Exactly one terminal record per trace.",
        ("keeper",),
        ("client", "keeper"),
        _TRACE_KEY,
    ),
    "escalations": Channel(
        "Escalation",
        "Halted traces handed to a human, with the evidence.",
        ("watchdog", "agent"),
        ("operator",),
        _TRACE_KEY,
    ),
    "conflicts": Channel(
        "StateConflict",
        "Concurrent writes to one `replace` state field and how they were resolved.",
        ("keeper",),
        ("operator",),
        _TRACE_KEY,
    ),
    "dlq": Channel(
        "DeadLetter",
        "Records a consumer could not accept, with their exact bytes.",
        ("keeper", "agent", "watchdog"),
        ("operator",),
        _ORIGINAL_KEY,
    ),
}

AGENT_CHANNEL_ID = "agentEvent"
AGENT_CHANNEL = Channel(
    "Envelope",
    "One topic per event type of the mesh spec (its `entry` and every route's `emit`), named "
    "`<prefix>.events.<type>`. Each event carries the state its cause produced.",
    ("keeper",),
    ("agent",),
    _TRACE_KEY,
)


def _doc(text: str | None) -> str | None:
    """Docstrings keep their indentation before Python 3.13; clean them so output is stable."""
    return inspect.cleandoc(text) if text else None


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    if "description" in schema:
        schema["description"] = _doc(schema["description"])
    return schema


def record_schema(name: str, record_type: type[Record]) -> dict[str, Any]:
    """The JSON Schema of one record, self-contained: the record at the root, parts in $defs."""
    _, defs = msgspec.json.schema_components([record_type], ref_template="#/$defs/{name}")
    root = _clean(defs.pop(record_type.__name__))
    props = root["properties"]
    props["schema_version"] = {**props["schema_version"], **_SCHEMA_VERSION}
    props["extensions"] = dict(_EXTENSIONS)
    root.setdefault("additionalProperties", _KEPT)
    for part in defs.values():
        _clean(part)
        if part.get("type") == "object" and "properties" in part:
            # msgspec ignores unknown fields of nested structs; only the top level keeps them.
            part.setdefault("additionalProperties", _NOT_KEPT)
    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"urn:choreo-mesh:schema:{name}:{SCHEMA_VERSION}",
        **root,
        "title": name,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _message(name: str, key: dict[str, Any]) -> dict[str, Any]:
    if name == BLOB_CHUNK:
        summary, content, payload = _BLOB_CHUNK
    else:
        summary = (_doc(RECORDS[name].__doc__) or name).splitlines()[0]
        content, payload = "application/json", {"$ref": f"./{name}{SCHEMA_SUFFIX}"}
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": content,
        "payload": payload,
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _config_value(name: str, value: str) -> Any:
    """Kafka topic configs are strings; the AsyncAPI Kafka binding types them."""
    if name == "cleanup.policy":
        return value.split(",")
    return int(value) if value.isdigit() else value


def _channel(address: str, channel: Channel, configs: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "address": address,
        "description": channel.description,
        "messages": {
            name: {"$ref": f"#/components/messages/{name}"} for name, _ in channel.messages()
        },
    }
    if configs:
        body["bindings"] = {
            "kafka": {
                "topicConfiguration": {k: _config_value(k, v) for k, v in configs.items()},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        }
    return body


def _operations(channel_id: str, channel: Channel, address: str) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for action, services in (("send", channel.senders), ("receive", channel.receivers)):
        for service in services:
            verb = "sends to" if action == "send" else "receives from"
            ops[f"{service}-{action}-{channel_id}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [
                    {"$ref": f"#/channels/{channel_id}/messages/{name}"}
                    for name, _ in channel.messages()
                ],
                "summary": f"{service} {verb} {address}",
                "tags": [{"$ref": f"#/components/tags/{service}"}],
            }
    return ops


def asyncapi(topics: Topics | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic under ``topics`` (default prefix ``choreo``)."""
    topics = topics or Topics("choreo")
    by_name = {getattr(topics, attr): attr for attr in SYSTEM_CHANNELS}
    unmapped = sorted(set(topics.system()) - set(by_name))
    if unmapped:
        raise RuntimeError(f"topics without a record in SYSTEM_CHANNELS: {unmapped}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for address in topics.system():
        channel_id = by_name[address]
        channel = SYSTEM_CHANNELS[channel_id]
        channels[channel_id] = _channel(address, channel, topics.configs(address))
        operations.update(_operations(channel_id, channel, address))
        for name, key in channel.messages():
            messages[name] = _message(name, key)
    agent = _channel(topics.event("{eventType}"), AGENT_CHANNEL, {})
    agent["parameters"] = {
        "eventType": {
            "description": "An event type declared by the mesh spec.",
            "examples": ["draft.requested"],
        }
    }
    channels[AGENT_CHANNEL_ID] = agent
    operations.update(_operations(AGENT_CHANNEL_ID, AGENT_CHANNEL, "each agent topic"))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Choreo Mesh",
            "version": str(SCHEMA_VERSION),
            "description": (
                "The Kafka contract of a Choreo Mesh. Every record is a JSON object with a "
                "`schema_version`; unknown top-level fields are kept. Topic names carry a "
                f"configurable prefix (`{topics.prefix}` here), agent topics included."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "tags": {name: {"name": name, "description": text} for name, text in SERVICES.items()},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks and repeats shared values (no anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def render() -> dict[str, bytes]:
    """Every published file by name, with its exact content."""
    files = {
        f"{name}{SCHEMA_SUFFIX}": _json(record_schema(name, record_type))
        for name, record_type in RECORDS.items()
    }
    files[ASYNCAPI_FILE] = yaml.dump(
        asyncapi(),
        Dumper=_Dumper,
        sort_keys=True,
        allow_unicode=True,
        width=100,
    ).encode()
    return dict(sorted(files.items()))


def _owned(out_dir: Path) -> set[str]:
    """Files in ``out_dir`` this module is responsible for (others there are left alone)."""
    if not out_dir.is_dir():
        return set()
    return {
        p.name
        for p in out_dir.iterdir()
        if p.is_file() and (p.name.endswith(SCHEMA_SUFFIX) or p.name == ASYNCAPI_FILE)
    }


def write(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write every file, remove published files no record backs any more; return the paths."""
    files = render()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _owned(out_dir) - files.keys():
        (out_dir / name).unlink()
    paths = []
    for name, content in files.items():
        path = out_dir / name
        path.write_bytes(content)
        paths.append(path)
    return paths


def stale(out_dir: Path = DEFAULT_OUT) -> list[str]:
    """Names of files that are missing, different, or no longer published; empty when current."""
    files = render()
    wrong = {
        name
        for name, content in files.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != content
    }
    return sorted(wrong | (_owned(out_dir) - files.keys()))
