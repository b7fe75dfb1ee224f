"""Two models sharing one segmentation: each learns its own data partition, sees the
other's statistics, one refines over both samples and the other adopts what it found."""

from __future__ import annotations

import numpy as np

from streamseg.model import CustomerKMeans
from streamseg.model.learner import vector_check
from streamseg.model.sample import hash_of
from streamseg.model.stats import ClusterStats
from tests.unit.model._streams import Store, ari, blobs, ratio_to_batch


def _stats_of(store: Store, keys: set[str], k: int) -> ClusterStats:
    rows = [store[key] for key in keys if key in store]
    x = np.array([vector for vector, _ in rows])
    return ClusterStats.of(x, np.array([segment for _, segment in rows]), k)


def _sum(stats: dict[str, ClusterStats], k: int, dim: int) -> ClusterStats:
    total = ClusterStats.zeros(k, dim)
    for part in stats.values():
        total = total + part
    return total


def test_two_workers_make_one_segmentation() -> None:
    events, truth = blobs(seed=3, n_per_blob=200)
    params = {"n_clusters": 5, "warmup": 100, "reservoir_size": 2000, "refine_every": 0}
    workers = {"p0": CustomerKMeans(**params, seed=1), "p1": CustomerKMeans(**params, seed=2)}
    owner = {key: ("p0" if hash_of(key + "owner") < 0.5 else "p1") for key in truth}
    store: Store = {}
    refiner, other = workers["p0"], workers["p1"]

    def exchange() -> None:
        for name, model in workers.items():
            others = [m for n, m in workers.items() if n != name]
            model.set_others(_sum(others[0].partition_stats(), 5, 6))

    def refine() -> None:
        rows = other.to_state()["sample"]["rows"]
        keys = [key for key, _, _, segment in rows if segment >= 0]
        x = np.array([vector for _, _, vector, segment in rows if segment >= 0])
        segments = np.array([segment for _, _, _, segment in rows if segment >= 0])
        result = refiner.refine_shared((keys, x, segments))
        for a in result.moved:
            store[a.key] = (a.vector, a.segment)
        for key, (_segment, check) in result.relabels.items():
            assert check == vector_check(store[key][0])  # the vector it saw
        for a in other.adopt(refiner.version, refiner.centroids, refiner.sample_rate,
                             result.relabels):
            store[a.key] = (a.vector, a.segment)

    for step, (key, vector) in enumerate(events):
        model = workers[owner[key]]
        prev = store.get(key)
        out = model.update_customer(key, vector, None if prev is None else prev[0],
                                    None if prev is None else prev[1], partition=owner[key])
        for a in out:
            store[a.key] = (a.vector, a.segment)
        if refiner.ready and not other.ready:  # the refiner seeded: the other adopts
            for a in other.adopt(refiner.version, refiner.centroids, refiner.sample_rate, {}):
                store[a.key] = (a.vector, a.segment)
        if step % 50 == 0:
            exchange()
        if refiner.ready and step % 400 == 0:
            exchange()
            refine()
    exchange()
    refine()
    exchange()

    # Every customer counted once, in the segment its owner reported, by its owner.
    for name, model in workers.items():
        mine = {key for key, who in owner.items() if who == name}
        expected = _stats_of(store, mine, 5)
        got = _sum(model.partition_stats(), 5, 6)
        assert got.counts.tolist() == expected.counts.tolist(), name
        np.testing.assert_allclose(got.sums, expected.sums, atol=1e-6)
    # One segmentation: both see the same centroids, as good as one model's.
    np.testing.assert_allclose(refiner.centroids, other.centroids, atol=1e-9)
    assert ratio_to_batch(refiner, store, 5) <= 1.02
    assert ari(store, truth) >= 0.95
