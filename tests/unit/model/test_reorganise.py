"""Reorganisation: a better restart judged on the sample, its centroids held (pinned)
until the caller placed every customer again (streamseg.model.refinement, clustering)."""

from __future__ import annotations

import json

import numpy as np

from streamseg.model import CustomerKMeans
from streamseg.model.clustering import Clustering
from streamseg.model.refinement import refine
from streamseg.model.stats import ClusterStats


def _late_change(seed: int = 0) -> tuple[np.ndarray, np.ndarray, ClusterStats, np.ndarray]:
    """The old solution had segments at -1, +1 and 15; now the sample's 300 customers
    sit at 0 (split by the old segments), 10 and 20, while the 3,000 customers outside
    the sample are still counted where they were (-1, +1, 15) with their old labels."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, 0.5, size=(100, 1)) for c in (0.0, 10.0, 20.0)])
    labels = np.where(x[:, 0] > 5.0, 2, np.where(x[:, 0] > 0.0, 1, 0)).astype(np.int64)
    outside = np.concatenate([rng.normal(c, 0.2, size=(n, 1))
                              for c, n in ((-1.0, 500), (1.0, 500), (15.0, 2000))])
    outside_labels = np.repeat([0, 1, 2], [500, 500, 2000])
    stats = ClusterStats.of(outside, outside_labels, 3) + ClusterStats.of(x, labels, 3)
    return x, labels, stats, stats.centroids(np.zeros((3, 1)))


def test_without_reorganise_the_fixed_customers_hold_the_old_solution() -> None:
    x, labels, stats, centroids = _late_change()
    refined = refine(x, labels, stats, centroids, lloyd_iterations=10, hysteresis=0.0,
                     n_init=5, rng=np.random.default_rng(1), full_search=True)
    assert not refined.reorganised
    # the sample's three groups are not found: 10 and 20 still share a segment
    assert refined.labels[100] == refined.labels[200]


def test_reorganise_judges_on_the_sample_and_returns_its_centroids() -> None:
    x, labels, stats, centroids = _late_change()
    refined = refine(x, labels, stats, centroids, lloyd_iterations=10, hysteresis=0.0,
                     n_init=5, rng=np.random.default_rng(1), full_search=True,
                     reorganise=True)
    assert refined.reorganised
    assert len(set(refined.labels[[0, 100, 200]].tolist())) == 3
    assert sorted(np.round(refined.centroids[:, 0]).tolist()) == [0.0, 10.0, 20.0]
    # the statistics stay exact: the customers outside the sample at their old labels
    assert refined.stats.counts.sum() == 3300


def test_reorganise_keeps_a_solution_the_sample_does_not_beat() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(c, 0.5, size=(100, 1)) for c in (0.0, 10.0, 20.0)])
    labels = np.repeat([0, 1, 2], 100)
    outside = np.concatenate([rng.normal(c, 0.5, size=(1000, 1)) for c in (0.0, 10.0, 20.0)])
    stats = ClusterStats.of(outside, np.repeat([0, 1, 2], 1000), 3) + ClusterStats.of(x, labels, 3)
    refined = refine(x, labels, stats, stats.centroids(np.zeros((3, 1))), lloyd_iterations=10,
                     hysteresis=0.0, n_init=5, rng=np.random.default_rng(1),
                     full_search=True, reorganise=True)
    assert not refined.reorganised
    assert refined.labels.tolist() == labels.tolist()


def test_pinned_centroids_do_not_follow_the_statistics() -> None:
    x = np.array([[0.0], [1.0], [9.0], [10.0]])
    clustering = Clustering.seeded(["a", "b", "c", "d"], ["p"] * 4, x,
                                   np.array([0, 0, 1, 1]), 2, 10)
    clustering.pin(np.array([[3.0], [7.0]]))
    clustering.place_one("e", "p", np.array([2.0]), None, None, hysteresis=0.0)
    assert clustering.centroids[:, 0].tolist() == [3.0, 7.0]
    assert clustering.stats.counts.tolist() == [3, 2]  # the statistics stay exact
    clustering.unpin()
    assert clustering.centroids[:, 0].tolist() == [1.0, 9.5]


def _pinned_model() -> CustomerKMeans:
    """A model whose reservoir (300) holds a tenth of its 3,000 customers, after the
    behaviour of the customers of its third segment split in two."""
    model = CustomerKMeans(n_clusters=3, warmup=50, reservoir_size=300, refine_every=0,
                           n_init=5, seed=3)
    model.reorganise = True
    rng = np.random.default_rng(4)
    centres = np.array([-1.0, 1.0, 15.0, 15.0])
    previous: dict[str, tuple[np.ndarray, int]] = {}

    def learn(key: str, v: np.ndarray) -> None:
        for a in model.update_customer(key, v, *previous.get(key, (None, None))):
            previous[a.key] = (a.vector, a.segment)

    for i in range(3000):
        learn(f"c{i}", centres[i % 4] + rng.normal(0.0, 0.2, 1))
    model.refine()
    assert not model.pinned
    for i in range(2, 3000, 4):  # half of the 15-group moves to 10, the other to 20
        learn(f"c{i}", np.array([10.0]) + rng.normal(0.0, 0.2, 1))
        learn(f"c{i + 1}", np.array([20.0]) + rng.normal(0.0, 0.2, 1))
    for _ in range(5):
        model.refine()
    return model


def test_a_pinned_model_waits_for_unpin_and_keeps_it_across_a_restart() -> None:
    model = _pinned_model()
    assert model.pinned
    version, centroids = model.version, model.centroids
    assert model.refine() == [] and model.flush() == []  # no refinement while pinned
    assert model.version == version
    state = json.loads(json.dumps(model.to_state()))
    assert state["pinned"] is True
    restored = CustomerKMeans.from_state(state)
    assert restored.pinned and restored.centroids.tolist() == centroids.tolist()
    restored.unpin()
    assert not restored.pinned and restored.version == version + 1
    assert "pinned" not in restored.to_state()  # the stored format, unchanged otherwise
