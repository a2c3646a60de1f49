"""Apache Kafka's storage tool reads an argument starting with ``-`` as an option, so a
cluster id must never start with one (one random id in 64 did, and the broker then failed to
start)."""

from __future__ import annotations

import base64

from choreo.kafka.broker import cluster_id


def test_a_cluster_id_is_22_url_safe_characters_never_led_by_a_dash() -> None:
    ids = [cluster_id() for _ in range(2000)]  # a plain draw would lead with "-" ~31 times
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
