"""Topic names: one place that knows every topic of a mesh (creation is in choreo.kafka.topics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """The system topics under one prefix, so several meshes can share a cluster."""

    prefix: str = "choreo"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}.tasks"

    @property
    def outbox(self) -> str:
        return f"{self.prefix}.outbox"

    @property
    def state(self) -> str:
        return f"{self.prefix}.state"

    @property
    def blobs(self) -> str:
        """Big state values' chunks, keyed by SHA-256 (choreo.schemas.blobs)."""
        return f"{self.prefix}.blobs"

    @property
    def hops(self) -> str:
        return f"{self.prefix}.hops"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def escalations(self) -> str:
        return f"{self.prefix}.escalations"

    @property
    def conflicts(self) -> str:
        return f"{self.prefix}.conflicts"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    def event(self, event_type: str) -> str:
        """The topic an event type travels on: under the prefix, so meshes never cross."""
        return f"{self.prefix}.events.{event_type}"

    @property
    def keeper_group(self) -> str:
        """The keepers' consumer group, also the prefix of their transactional ids."""
        return f"{self.prefix}.keeper"

    def agent_group(self, agent: str) -> str:
        """The consumer group of ``agent``'s replicas, also their transactional ids' prefix."""
        return f"{self.prefix}.agent.{agent}"

    def system(self) -> list[str]:
        return [
            self.tasks,
            self.outbox,
            self.state,
            self.blobs,
            self.hops,
            self.control,
            self.results,
            self.escalations,
            self.conflicts,
            self.dlq,
        ]

    def configs(self, topic: str) -> dict[str, str]:
        """Per-topic configs: the state topic keeps only the latest snapshot per trace, the
        blob topic one record per chunk (content-addressed, so a repeat is the same bytes); the
        outbox is stamped by the broker when appended (the keeper's clock for a trace), so its
        record times follow log order even when producers' clocks or send delays differ (Apache
        Kafka; the embedded broker keeps the producer's time)."""
        if topic in (self.state, self.blobs):
            return {"cleanup.policy": "compact"}
        if topic == self.outbox:
            return {"message.timestamp.type": "LogAppendTime"}
        return {}
