"""The largest record the mesh may produce, and the declared policy for records over it.

Kafka refuses a record over the topic's ``max.message.bytes`` (the producer refuses one over
its ``max_request_size`` first, 1 MiB by default). A service that tried would fail outside its
per-record handling and, restarted, fail on the same input again. So every service measures
what it is about to produce against one limit, known before the first record:

* the smallest ``max.message.bytes`` of the mesh's topics, where the broker answers a
  DescribeConfigs for them (Apache Kafka does; some Kafka-compatible brokers return nothing),
* else the ``CHOREO_MAX_RECORD_BYTES`` setting (default 1 MiB, the producer's own cap),

minus :data:`HEADROOM` for the key, the headers and the batch framing around the value.

What happens to a record over the limit is declared per kind in docs/CONTRACT.md ("Size
limits"); this module holds the measuring and the cutting shared by every service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from choreo.kafka.errors import RecordTooLarge
from choreo.kafka.security import KafkaSecurity, make_admin
from choreo.schemas import DeadLetter, encode

log = logging.getLogger(__name__)

#: The producer's default ``max_request_size`` and Kafka's default record limit, in bytes.
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
#: Bytes kept free for what surrounds a value on the wire: key, headers (a trace context is
#: ~70 bytes), record and batch framing.
HEADROOM = 16 * 1024
_TOPIC_LIMIT = "max.message.bytes"


@dataclass(frozen=True)
class RecordLimit:
    """The largest value (encoded bytes) a service may produce."""

    max_bytes: int = DEFAULT_MAX_RECORD_BYTES - HEADROOM

    def check(self, what: str, value: bytes) -> bytes:
        """Return ``value`` unchanged, or raise :class:`RecordTooLarge` if it is over."""
        if len(value) > self.max_bytes:
            raise RecordTooLarge(what, len(value), self.max_bytes)
        return value

    def fits(self, value: bytes) -> bool:
        return len(value) <= self.max_bytes

    def dead_letter(self, letter: DeadLetter) -> bytes:
        """The encoded dead letter, its ``original`` cut so the whole fits (policy: cut).

        The original bytes stay on their own topic at ``topic/partition/offset``; the letter
        keeps a prefix of them and says in its reason how many bytes were left out.
        """
        data = encode(letter)
        if self.fits(data):
            return data
        size = len(letter.original)
        overhead = len(data) - _base64_len(size) + 200  # the reason grows by one sentence
        keep = max(0, (self.max_bytes - overhead) * 3 // 4)
        cut = DeadLetter(
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            key=letter.key,
            reason=(
                f"{letter.reason} [original cut to its first {keep} of {size} bytes to fit "
                f"the record limit of {self.max_bytes} bytes]"
            ),
            consumer=letter.consumer,
            original=letter.original[:keep],
            created_at=letter.created_at,
        )
        return self.check("the dead letter", encode(cut))


def _base64_len(size: int) -> int:
    return 4 * ((size + 2) // 3)


async def broker_limit(
    bootstrap: str,
    topics: Iterable[str],
    setting: int = DEFAULT_MAX_RECORD_BYTES,
    security: KafkaSecurity | None = None,
) -> RecordLimit:
    """The mesh's limit: the smallest ``max.message.bytes`` of ``topics`` the broker reports,
    capped by ``setting``, minus :data:`HEADROOM`.

    A broker that reports nothing, or an admin request that fails, leaves ``setting``: the
    limit is then the setting's, and a log line says the broker did not answer.
    """
    found = await topic_limits(bootstrap, list(topics), security)
    limit = min([setting, *found])
    if not found:
        log.info(
            "broker reports no max.message.bytes; using the setting",
            extra={"max_record_bytes": setting},
        )
    return RecordLimit(max(1024, limit - HEADROOM))


async def topic_limits(
    bootstrap: str, topics: list[str], security: KafkaSecurity | None = None
) -> list[int]:
    """The ``max.message.bytes`` (bytes) the broker reports for each of ``topics``; empty
    when it reports none (the embedded broker) or the request fails."""
    admin = make_admin(bootstrap, security, request_timeout_ms=10_000)
    try:
        await admin.start()
        # all configs: naming the one wanted makes some Kafka-compatible brokers hang up
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    except Exception as exc:  # any failure leaves the setting, which is always safe to use
        log.warning(
            "could not read the topics' record limit",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )
        return []
    finally:
        await admin.close()
    values = []
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:  # (name, value, read_only, ...)
                if entry[0] == _TOPIC_LIMIT and entry[1] and str(entry[1]).isdigit():
                    values.append(int(entry[1]))
    return values
