"""Refinement and re-seeding (streamseg.model.refinement): ids keep their meaning."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.model import CustomerKMeans, refinement
from streamseg.model.batch import lloyd
from streamseg.model.stats import ClusterStats
from tests.unit.model._streams import Store, blobs, drive


def _seeded_blob_model() -> tuple[CustomerKMeans, Store]:
    events, _ = blobs(seed=6, n_per_blob=100)
    model = CustomerKMeans(n_clusters=5, warmup=100, refine_every=200, seed=11)
    return model, drive(model, events)


def test_reseed_keeps_each_id_where_it_was() -> None:
    model, store = _seeded_blob_model()
    before = model.centroids
    version = model.version
    changed = model.reseed()
    assert model.version == version + 1
    shift = np.sqrt(((model.centroids - before) ** 2).sum(axis=1))
    gap = np.sqrt(((before[:, None] - before[None]) ** 2).sum(-1))[np.triu_indices(5, 1)]
    assert shift.max() < 0.05 * gap.min()
    assert changed == []


def test_reseed_without_matching_would_rename_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shows that the test above can fail: k-means++ finds the clusters in another order."""
    model, _ = _seeded_blob_model()
    before = model.centroids
    monkeypatch.setattr(refinement, "match_ids", lambda old, new: np.arange(old.shape[0]))
    changed = model.reseed()
    shift = np.sqrt(((model.centroids - before) ** 2).sum(axis=1))
    assert shift.max() > 1.0
    assert changed  # reservoir customers were renamed



def _state(x: np.ndarray, labels: np.ndarray) -> tuple[ClusterStats, np.ndarray]:
    stats = ClusterStats.of(x, labels, 3)
    return stats, stats.centroids(np.zeros((3, x.shape[1])))


def test_without_restarts_it_is_lloyd_and_draws_nothing() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(m, 0.5, size=(40, 2)) for m in (0.0, 5.0, 10.0)])
    labels = rng.integers(3, size=120)
    stats, centroids = _state(x, labels)
    draws = np.random.default_rng(9)
    before = draws.bit_generator.state
    got = refinement.refine(x, labels, stats, centroids, lloyd_iterations=10, hysteresis=0.0,
                            n_init=0, rng=draws)
    assert draws.bit_generator.state == before
    fixed = stats - ClusterStats.of(x, labels, 3)
    want = lloyd(x, labels, fixed, centroids, 10)
    assert got[0].tolist() == want[0].tolist()
    np.testing.assert_array_equal(got[2], want[2])


def test_a_forced_restart_is_adopted_with_matched_ids() -> None:
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(m, 0.5, size=(40, 2)) for m in (0.0, 5.0, 10.0)])
    truth = np.repeat(np.arange(3), 40)
    stats, centroids = _state(x, truth)
    labels, new_stats, new_centroids, reorganised = refinement.refine(
        x, truth, stats, centroids, lloyd_iterations=10, hysteresis=0.0, n_init=3,
        rng=np.random.default_rng(2), force_restart=True,
    )
    assert labels.tolist() == truth.tolist() and not reorganised  # same clusters, same ids
    np.testing.assert_allclose(new_centroids, centroids, atol=1e-9)
    assert new_stats.counts.tolist() == [40, 40, 40]


def test_restart_pool_samples_only_large_reservoirs() -> None:
    rng = np.random.default_rng(0)
    small = np.arange(10.0)[:, None]
    assert refinement.restart_pool(small, rng) is small
    big = np.arange(float(refinement.RESTART_SAMPLE_SIZE + 500))[:, None]
    pool = refinement.restart_pool(big, rng)
    assert pool.shape == (refinement.RESTART_SAMPLE_SIZE, 1)
    assert (np.diff(pool[:, 0]) > 0).all()  # rows keep their order
