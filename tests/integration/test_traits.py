"""Predictive traits on the real services: Redis keeps them (read by SegmentReader, in
the versioned record), and risk-band changes reach the real change topic, once each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer

from streamseg.app import Application
from streamseg.config import load_settings
from streamseg.store.redis import RedisStore, SegmentReader
from streamseg.store.redis.keys import _public_field, bucket_of
from streamseg.traits.bands import RiskBands
from streamseg_bench.simulate import write_stream

pytestmark = pytest.mark.integration

RISK = "io.streamseg.risk.changed"


def _run(settings: Any, **kwargs: Any) -> Any:
    app = Application(settings)
    try:
        return app.run(**kwargs)
    finally:
        app.close()


def _topic(servers: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=5000)
    try:
        return list(consumer)
    finally:
        consumer.close()


def test_traits_in_redis_and_risk_changes_on_the_topic_once(
        tmp_path: Path, redis_url: str, redis_prefix: str, kafka_servers: str,
        new_topic: Any) -> None:
    events = tmp_path / "e.jsonl"
    write_stream(events, customers=300, seed=5)
    topic = new_topic("traits", partitions=1)
    settings = load_settings(overrides={
        "source": {"uri": str(events), "batch_size": 200},
        "store": {"uri": redis_url, "redis_prefix": redis_prefix, "redis_buckets": 64},
        "sinks": {"changes": f"kafka://{kafka_servers}/{topic}",
                  "dead_letter": str(tmp_path / "dead.jsonl")},
        "model": {"warmup": 100},
        "traits": {"risk_min_examples": 50},
    })
    for _ in range(3):  # stopped in the middle and restarted: outboxes republished
        _run(settings, max_batches=4)
    _run(settings)

    records = _topic(kafka_servers, topic)
    risk = [(r.key.decode(), json.loads(r.value)) for r in records
            if json.loads(r.value)["type"] == RISK]
    assert risk, "customers' risk bands changed as they lapsed"
    assert all(key == event["subject"] for key, event in risk)  # keyed by customer
    assert all(dict(r.headers) == {"content-type": b"application/cloudevents+json"}
               for r in records)
    unique: dict[str, dict[str, Any]] = {}
    for _, event in risk:
        unique.setdefault(event["id"], event)
    chains: dict[str, list[dict[str, Any]]] = {}
    for event in unique.values():
        chains.setdefault(event["subject"], []).append(event["data"])

    store = RedisStore.from_uri(redis_url, prefix=redis_prefix)
    reader = SegmentReader(redis_url, prefix=redis_prefix)
    try:
        states = {s.customer_id: s for s in store.iter_customers()}
        names = list(settings.traits.risk_bands)
        bands = RiskBands(settings.traits.risk_bands, settings.traits.risk_hysteresis)
        for customer, chain in chains.items():
            for before, after in zip(chain, chain[1:], strict=False):
                assert after["from_band"] == before["to_band"], customer  # none twice
            state = states[customer]
            band = bands.current(state.risk_band, state.traits)
            assert band is not None and chain[-1]["to_band"] == names[band]
        some = next(iter(states))
        record = reader.segment_of(some)
        assert record is not None and record["segment"] == states[some].segment
        traits = states[some].traits
        assert traits is not None
        assert record["traits"] == {"purchase_probability": traits[0],
                                    "expected_spend": traits[1], "horizon_days": 90.0}
        client = redis.Redis.from_url(redis_url)
        raw = client.hget(f"{redis_prefix}:c:{bucket_of(some, 64)}",
                          _public_field(some.encode()))
        client.close()
        assert raw is not None and raw.startswith(b"v2|")  # the versioned record
    finally:
        reader.close()
        store.close()
