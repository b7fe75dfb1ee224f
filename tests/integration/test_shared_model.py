"""Several workers, one model, on the real broker and Redis.

* Two workers on one group and prefix make one segmentation: every customer is stored
  once, the sizes in the store are the model's, the model's sums are the sums over the
  stored customers, and the quality is a single worker's.
* One of two workers SIGKILLed at random points several times and restarted: every
  customer's features equal a clean single-worker run's; the model's sums are the
  stored customers'; the last change event of each customer names its stored segment.
* A third worker joining mid-stream changes nothing in the end state's features, and
  quality holds.
* The refiner killed in the middle of a refinement (a fail point, before it publishes):
  another worker takes the lease over and refines, and no customer carries a version
  that was never published.
* Inactivity with two workers: a customer who stops buying is moved to a lapsed segment
  once, by the worker that owns it.

Every wait is bounded; nothing is asserted on durations.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamseg.config import StoreSettings
from streamseg.core.state import CustomerState
from streamseg.store import Store, open_store
from streamseg_bench.measures import batch_kmeans_inertia, inertia
from streamseg_bench.simulate import simulate_stream
from tests.integration._service import (
    SIXTY_DAYS,
    STREAM_END,
    Feeder,
    Service,
    assert_model_matches_store,
    end_offsets,
    free_port,
    last_changes,
    produce,
    quiet,
    read_topic,
    service_config,
    stream_positions,
    wait_until,
)

pytestmark = pytest.mark.integration


def _config(kafka: str, redis_url: str, topic: str, prefix: str, changes: str,
            new_topic: Callable[..., str], **sections: Any) -> dict[str, Any]:
    return service_config(
        kafka=kafka, redis_url=redis_url, topic=topic, prefix=prefix, group=prefix,
        changes_topic=changes, dlq_topic=new_topic("s-dlq"),
        consumer={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        model={"n_clusters": 5, "refine_interval_s": 0.5, **sections.pop("model", {})},
        pipeline={"lease_ttl_s": 3, **sections.pop("pipeline", {})}, **sections)


def _store(redis_url: str, prefix: str) -> Store:
    return open_store(StoreSettings(uri=redis_url, redis_prefix=prefix))


def _progress(store: Store, topic: str) -> int:
    return sum(stream_positions(store.positions(), topic).values())


def _settle(services: list[Service], store: Store, topic: str, total: int) -> None:
    wait_until(lambda: _progress(store, topic) == total, "the end of the topic",
               services=services)
    wait_until(quiet(services), "the workers to settle", services=services, interval=0.5)


def _stop(services: list[Service]) -> None:
    for service in services:
        service.terminate()
    for service in services:
        assert service.wait(60) == 0, service.log_tail()


def _states(store: Store, events: list[dict[str, Any]], topic: str,
            ends: dict[int, int], label: str) -> dict[str, CustomerState]:
    """Every event applied once, every customer stored once; the states."""
    states = {s.customer_id: s for s in store.iter_customers()}
    purchases = Counter(e["customer_id"] for e in events if e["type"] == "purchase")
    assert {c: s.features.orders for c, s in states.items() if s.features.orders} == \
        dict(purchases), label
    assert stream_positions(store.positions(), topic) == ends, label
    assert store.count() == len(states), label
    segments = Counter(s.segment for s in states.values() if s.segment is not None)
    assert store.segment_sizes() == dict(segments), f"{label}: sizes != stored segments"
    return states


def _assert_model_is_the_stored_customers(config: Path, store: Store, label: str) -> None:
    """Sizes, sums and standardiser of the model (the sum of the partitions' shares)
    are those of the stored customers, partition by partition."""
    assert_model_matches_store(config, store, label)
    states = list(store.iter_customers())
    for name, partition in store.read_partitions().items():
        share = partition.model
        assert share is not None and share["stats"] is not None, (label, name)
        mine = [s for s in states if s.partition == name and s.segment is not None]
        counts = Counter(s.segment for s in mine)
        assert share["stats"]["counts"] == [counts.get(k, 0) for k in range(5)], (label, name)
        for k in range(5):
            vectors = [s.vector for s in mine if s.segment == k]
            expected = np.sum(vectors, axis=0) if vectors else np.zeros(6)
            np.testing.assert_allclose(share["stats"]["sums"][k], expected, atol=1e-6,
                                       err_msg=f"{label}: {name} segment {k}")


def _quality(states: dict[str, CustomerState], store: Store,
             truth: dict[str, str] | None = None) -> tuple[float, float]:
    """Inertia over batch k-means' (the model's centroids), and the ARI against truth."""
    from sklearn.metrics import adjusted_rand_score

    checkpoint = store.load_model() or {}
    centroids = np.array(checkpoint["model"]["centroids"])
    x = np.array([s.vector for s in states.values() if s.vector is not None])
    ratio = inertia(x, centroids) / batch_kmeans_inertia(x, k=5, seed=0)
    if truth is None:
        return ratio, 1.0
    ids = sorted(truth)
    ari = adjusted_rand_score([truth[i] for i in ids],
                              [states[i].segment if i in states else -1 for i in ids])
    return ratio, ari


def _same_features(run: dict[str, CustomerState], clean: dict[str, CustomerState],
                   label: str) -> None:
    assert set(run) == set(clean), label
    for cid, state in run.items():
        assert state.features.to_dict() == pytest.approx(clean[cid].features.to_dict(),
                                                         rel=1e-9, abs=1e-9), (label, cid)


@pytest.mark.parametrize("reservoir", [1500, 300], ids=["half-sampled", "tenth-sampled"])
def test_two_workers_make_one_segmentation(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]], reservoir: int,
) -> None:
    """Half the customers outside the sample: the issue's bars (inertia within 1.10 of
    batch k-means', ARI at least 0.9). A tenth sampled: a restart found on the sample
    must reorganise the customers of both workers; there the inertia bar is what tells
    it happened (before reorganisations: 1.99 in one of two runs, against 1.0006-1.008
    with them), and the ARI, measured at 0.87-0.96 with them, is not held to 0.9: a
    tenth of the customers is a small sample, and the others sit in their segments with
    hysteresis (one worker replaying the same stream from a file: 0.918 stored against
    0.943 at the nearest centroid, batch k-means 0.958; tests/unit/bench/test_quality.py
    holds a replay with few customers sampled to 0.9)."""
    spawned, prefixes = cleanup
    events, truth = simulate_stream(customers=3000, seed=21, archetypes=SIXTY_DAYS,
                                    end=STREAM_END)
    topic = new_topic("s-two")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    prefix = f"it-s2-{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    config = _config(kafka_servers, redis_url, topic, prefix, new_topic("s-chg"), new_topic,
                     model={"reservoir_size": reservoir})
    workers = [Service(tmp_path, name, config, metrics_port=free_port()).start()
               for name in ("one", "two")]
    spawned += workers
    store = _store(redis_url, prefix)
    _settle(workers, store, topic, sum(ends.values()))
    refiners = [w.metric("streamseg_refiner") for w in workers]
    assert sorted(refiners) == [0.0, 1.0], refiners  # one refiner, one other
    for worker in workers:  # both wrote customers of their own partitions
        assert sum(v for k, v in (worker.metrics() or {}).items()
                   if k.startswith("streamseg_customers{")) > 0, worker.log_tail()
    _stop(workers)
    states = _states(store, events, topic, ends, "two workers")
    _assert_model_is_the_stored_customers(workers[0].config_path, store, "two workers")
    ratio, ari = _quality(states, store, truth)
    print(f"reservoir {reservoir}: inertia {ratio:.4f} x batch, ARI {ari:.3f}")
    assert ratio <= 1.10, (ratio, ari)
    if reservoir >= 1500:
        assert ari >= 0.9, (ratio, ari)
    assert "pinned" not in (store.load_model() or {})["model"]  # no reorganisation half-done


def test_a_worker_killed_again_and_again_changes_nothing_in_the_end(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, _ = simulate_stream(customers=1500, seed=22, archetypes=SIXTY_DAYS,
                                end=STREAM_END)
    topic = new_topic("s-kill")
    changes = new_topic("s-chg")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    total = sum(ends.values())
    runs: dict[str, Store] = {}
    configs: dict[str, dict[str, Any]] = {}
    for label in ("clean", "killed"):
        prefix = f"it-sk-{label}-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        runs[label] = _store(redis_url, prefix)
        configs[label] = _config(kafka_servers, redis_url, topic, prefix,
                                 changes if label == "killed" else new_topic("s-chg"),
                                 new_topic, batch_size=200)
    clean = Service(tmp_path, "clean", configs["clean"], metrics_port=free_port()).start()
    steady = Service(tmp_path, "steady", configs["killed"], metrics_port=free_port()).start()
    victim = Service(tmp_path, "victim", configs["killed"], metrics_port=free_port()).start()
    spawned += [clean, steady, victim]
    store = runs["killed"]
    rng = random.Random(7)
    for round_ in range(3):
        target = total * (round_ + 1) // 5 + rng.randrange(total // 10)
        wait_until(lambda t=target: _progress(store, topic) >= min(t, total),  # type: ignore[misc]
                   f"progress before kill {round_ + 1}", services=[steady, victim])
        victim.kill()
        victim.start()
    _settle([steady, victim], store, topic, total)
    _settle([clean], runs["clean"], topic, total)
    _stop([steady, victim, clean])
    killed = _states(store, events, topic, ends, "killed")
    reference = _states(runs["clean"], events, topic, ends, "clean")
    _same_features(killed, reference, "killed")
    _assert_model_is_the_stored_customers(victim.config_path, store, "killed")
    last = last_changes(read_topic(kafka_servers, changes))
    assert {cid: change["to_segment"] for cid, change in last.items()} == \
        {cid: s.segment for cid, s in killed.items() if s.segment is not None}


def test_a_third_worker_joining_mid_stream_changes_nothing_in_the_end(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, truth = simulate_stream(customers=1500, seed=23, archetypes=SIXTY_DAYS,
                                    end=STREAM_END)
    topic = new_topic("s-join", partitions=6)
    feeder = Feeder(kafka_servers, topic, events, per_second=4000)
    runs: dict[str, Store] = {}
    configs: dict[str, dict[str, Any]] = {}
    for label in ("clean", "joined"):
        prefix = f"it-sj-{label}-{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        runs[label] = _store(redis_url, prefix)
        configs[label] = _config(kafka_servers, redis_url, topic, prefix,
                                 new_topic("s-chg"), new_topic, batch_size=200)
    clean = Service(tmp_path, "clean", configs["clean"], metrics_port=free_port()).start()
    first = [Service(tmp_path, name, configs["joined"], metrics_port=free_port()).start()
             for name in ("a", "b")]
    third = Service(tmp_path, "c", configs["joined"], metrics_port=free_port())
    spawned += [clean, *first, third]
    feeder.start()
    store = runs["joined"]
    wait_until(lambda: _progress(store, topic) >= len(events) // 3,
               "a third of the stream", services=first)
    third.start()
    feeder.finish()
    ends = end_offsets(kafka_servers, topic)
    total = sum(ends.values())
    workers = [*first, third]
    _settle(workers, store, topic, total)
    _settle([clean], runs["clean"], topic, total)
    assert third.metric("streamseg_events_processed_total"), third.log_tail()  # it worked
    _stop([*workers, clean])
    joined = _states(store, events, topic, ends, "joined")
    _same_features(joined, _states(runs["clean"], events, topic, ends, "clean"), "joined")
    _assert_model_is_the_stored_customers(third.config_path, store, "joined")
    ratio, ari = _quality(joined, store, truth)
    assert ratio <= 1.10 and ari >= 0.9, (ratio, ari)


def test_a_refiner_killed_mid_refinement_publishes_nothing_and_another_takes_over(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, _ = simulate_stream(customers=2000, seed=24, archetypes=SIXTY_DAYS,
                                end=STREAM_END)
    topic = new_topic("s-refiner")
    produce(kafka_servers, topic, events)
    ends = end_offsets(kafka_servers, topic)
    prefix = f"it-sr-{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    config = _config(kafka_servers, redis_url, topic, prefix, new_topic("s-chg"), new_topic,
                     batch_size=200)
    store = _store(redis_url, prefix)
    # The first worker holds the lease, and dies inside its third refinement, after
    # computing it and before anything of it is written.
    doomed = Service(tmp_path, "doomed", config, metrics_port=free_port())
    doomed.env = {"STREAMSEG_FAILPOINT": "refiner.before_publish:3"}
    doomed.start()
    wait_until(lambda: doomed.metric("streamseg_refiner") == 1.0, "the first to refine",
               services=[doomed])
    heir = Service(tmp_path, "heir", config, metrics_port=free_port()).start()
    spawned += [doomed, heir]
    assert doomed.wait() != 0
    assert "fail point refiner.before_publish" in doomed.log_text(), doomed.log_tail()
    published = (store.load_model() or {})["model"]["version"]
    states = {s.customer_id: s for s in store.iter_customers()}
    assert max(s.model_version or 0 for s in states.values()) <= published
    _settle([heir], store, topic, sum(ends.values()))
    assert heir.metric("streamseg_refiner") == 1.0, heir.log_tail()
    assert (store.load_model() or {})["model"]["version"] > published
    _stop([heir])
    states = _states(store, events, topic, ends, "after the takeover")
    assert max(s.model_version or 0 for s in states.values()) <= \
        (store.load_model() or {})["model"]["version"]
    _assert_model_is_the_stored_customers(heir.config_path, store, "after the takeover")


def _one_event_per_partition(servers: str, topic: str, when: datetime) -> int:
    """A purchase by a new customer in every partition of ``topic`` at ``when``: every
    partition's clock, and so the service clock, moves to ``when``."""
    from kafka import KafkaProducer

    partitions = len(end_offsets(servers, topic))
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    covered: set[int] = set()
    try:
        for n in range(10_000):
            if len(covered) == partitions:
                break
            event = {"event_id": f"tick-{n}", "customer_id": f"tick-{n:05d}",
                     "timestamp": when.isoformat(), "amount": 10.0, "type": "purchase"}
            sent = producer.send(topic, key=event["customer_id"].encode(),
                                 value=json.dumps(event).encode()).get(timeout=30)
            covered.add(sent.partition)
    finally:
        producer.close(timeout=10)
    return len(covered)


def test_an_idle_customer_is_moved_to_lapsed_once_by_its_owner(
    kafka_servers: str, redis_url: str, new_topic: Callable[..., str], tmp_path: Path,
    cleanup: tuple[list[Service], list[str]],
) -> None:
    spawned, prefixes = cleanup
    events, _ = simulate_stream(customers=2000, seed=25, archetypes=SIXTY_DAYS,
                                end=STREAM_END)
    topic = new_topic("s-idle")
    changes = new_topic("s-chg")
    produce(kafka_servers, topic, events)
    prefix = f"it-si-{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    config = _config(kafka_servers, redis_url, topic, prefix, changes, new_topic)
    workers = [Service(tmp_path, name, config, metrics_port=free_port()).start()
               for name in ("one", "two")]
    spawned += workers
    store = _store(redis_url, prefix)
    _settle(workers, store, topic, sum(end_offsets(kafka_servers, topic).values()))
    before = {s.customer_id: s.segment for s in store.iter_customers()}
    rescored = [w.metric("streamseg_inactivity_rescored_total") or 0.0 for w in workers]
    seen_changes = sum(end_offsets(kafka_servers, changes).values())
    # Sixty days later, nobody of the stream has bought again: every one of them is
    # overdue now, and their owners' inactivity timers re-score them.
    ticks = _one_event_per_partition(kafka_servers, topic, STREAM_END + timedelta(days=60))
    _settle(workers, store, topic, sum(end_offsets(kafka_servers, topic).values()))
    after = [w.metric("streamseg_inactivity_rescored_total") or 0.0 for w in workers]
    _stop(workers)
    assert ticks == 4 and all(b > a for a, b in zip(rescored, after, strict=True)), \
        (rescored, after)  # both workers re-scored their own idle customers
    states = {s.customer_id: s for s in store.iter_customers()}
    messages = read_topic(kafka_servers, changes)
    ids: set[str] = set()
    moves: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        event = json.loads(message.value)
        if event["type"] != "io.streamseg.segment.changed":
            continue  # a risk band's change
        if event["id"] in ids:
            continue  # the same change published again (at least once)
        ids.add(event["id"])
        moves.setdefault(event["data"]["customer_id"], []).append(event["data"])
    assert len(ids) > seen_changes  # (some were published before the ticks)
    moved_by_inactivity = 0
    for cid in before:
        late = [c for c in moves.get(cid, [])
                if c["event_time"] >= (STREAM_END + timedelta(days=59)).isoformat()]
        by_inactivity = [c for c in late if c["reason"] == "inactivity"]
        # Moved once, by one worker: not once per worker, nor back and forth.
        assert len(by_inactivity) <= 1, (cid, late)
        assert all(c["reason"] in ("inactivity", "model_update") for c in late), (cid, late)
        moved_by_inactivity += len(by_inactivity)
    # Every idle customer was re-scored after the ticks, some moved by it (how many
    # depends on the refinements that follow), and every customer's last change names
    # the segment stored.
    assert sum(after) - sum(rescored) >= len(before), (rescored, after)
    assert moved_by_inactivity > 0
    assert {cid: c["to_segment"] for cid, c in last_changes(messages).items()} == \
        {cid: s.segment for cid, s in states.items() if s.segment is not None}
