"""The online update (streamseg.model.clustering): exact means, one customer or a mini-batch."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.model import CustomerKMeans
from streamseg.model.clustering import Clustering
from streamseg.model.stats import ClusterStats
from tests.unit.model._streams import (
    Batch,
    assert_exact_means,
    blobs,
    drive,
    drive_batches,
    population_batches,
)


def test_centroids_are_exact_means_of_the_stored_customers() -> None:
    events, _ = blobs(seed=4, n_per_blob=120)
    model = CustomerKMeans(
        n_clusters=5, warmup=100, reservoir_size=150, refine_every=97, hysteresis=0.1, seed=5
    )
    store = drive(model, events)
    assert model.version > 3  # refinements happened
    assert_exact_means(model, store)
    # A forced re-seed reassigns sampled customers; storing them keeps the means exact.
    for a in model.reseed():
        store[a.key] = (a.vector, a.segment)
    assert_exact_means(model, store)


def test_batched_updates_keep_counts_exact_with_a_sample() -> None:
    """More customers than the sample holds: the sample thins (customers leave it), some
    in the same batch, while refinements re-assign the sample. The model's counts and sums
    must still be those of the segments it reported."""
    rng = np.random.default_rng(0)
    model = CustomerKMeans(
        n_clusters=5, warmup=60, reservoir_size=100, refine_every=50, n_init=2,
        hysteresis=0.2, seed=0,
    )
    store = drive_batches(model, population_batches(rng, 600, 80, 40), {})
    assert 50 < model.n_sampled <= 100 < len(store)
    assert model.version > 20  # refinements happened
    for a in model.flush():
        store[a.key] = (a.vector, a.segment)
    assert_exact_means(model, store)


def test_the_batch_that_seeds_keeps_counts_exact_for_evicted_warmup_customers() -> None:
    """The batch that completes warm-up goes one customer at a time. Warm-up customers are
    assigned at seeding, then newcomers of the same batch thin the sample and refinements
    move others; when such a customer's own row comes, the caller's values predate the
    batch (``None``: it was never assigned). It must leave the segment the model gave it,
    not be counted a second time."""
    rng = np.random.default_rng(1)
    [(early_keys, early), (late_keys, late)] = population_batches(rng, 500, 2, 30)
    newcomers = [f"new{i}" for i in range(300)]
    batches: list[Batch] = [
        (early_keys, early),  # buffered: warm-up needs 40
        (newcomers + early_keys, np.vstack([rng.normal(0, 3.0, (300, 4)), early + 0.5])),
        (late_keys, late),
    ]
    model = CustomerKMeans(
        n_clusters=5, warmup=40, reservoir_size=60, refine_every=25, n_init=1, seed=1
    )
    store = drive_batches(model, batches, {})
    assert set(early_keys) <= set(store) and 30 < model.n_sampled <= 60



def _clustering() -> Clustering:
    x = np.array([[0.0], [1.0], [9.0], [10.0]])
    return Clustering.seeded(["a", "b", "c", "d"], ["p"] * 4, x, np.array([0, 0, 1, 1]), 2,
                             10)


def test_place_one_trusts_the_callers_record_of_a_customer_outside_the_sample() -> None:
    sampled = _clustering().sample
    # The sums also count "e", in segment 1 at 9.5, which the sample does not hold.
    x = np.array([[0.0], [1.0], [9.0], [10.0], [9.5]])
    stats = ClusterStats.of(x, np.array([0, 0, 1, 1, 1]), 2)
    part = Clustering({"p": stats}, stats.centroids(np.zeros((2, 1))), sampled)
    assert part.place_one("e", "p", np.array([0.5]), np.array([9.5]), 1, 0.0) == 0
    assert part.stats.counts.tolist() == [3, 2]
    assert part.centroids[:, 0].tolist() == [0.5, 9.5]
    assert "e" not in part.sample.index  # not new: it is not offered to the sample


def test_place_one_ignores_a_previous_segment_that_is_empty_and_checks_its_range() -> None:
    part = _clustering()
    part.place_one("c", "p", np.array([1.0]), None, None, 0.0)
    part.place_one("d", "p", np.array([1.0]), None, None, 0.0)
    assert part.stats.counts.tolist() == [4, 0]
    # Segment 1 is empty: the caller's record cannot be taken out of it.
    part.place_one("x", "p", np.array([0.5]), np.array([9.0]), 1, 0.0)
    assert part.stats.counts.tolist() == [5, 0]
    with pytest.raises(ValueError, match="not in range"):
        part.place_one("y", "p", np.array([0.5]), np.array([9.0]), 2, 0.0)


def test_place_many_changes_nothing_when_keys_repeat_or_records_disagree() -> None:
    part = _clustering()
    before = (part.stats.copy(), part.centroids.copy(), part.sample.segments.copy())
    x = np.array([[5.0], [6.0]])
    assert part.place_many(["a", "a"], ["p", "p"], x, [None, None], [None, None], 0.0) is None
    # Three callers' records in segment 0 beyond the sample's: more than it holds.
    prev = [np.array([0.0]), np.array([0.0]), np.array([0.0])]
    assert part.place_many(["p", "q", "r"], ["p"] * 3, np.zeros((3, 1)), prev, [0, 0, 0],
                           0.0) is None
    assert part.stats.counts.tolist() == before[0].counts.tolist()
    assert part.centroids.tolist() == before[1].tolist()
    assert part.sample.segments.tolist() == before[2].tolist()


def test_other_workers_customers_count_in_the_centroids_and_nowhere_else() -> None:
    part = _clustering()
    part.set_others(ClusterStats.of(np.array([[3.0], [20.0]]), np.array([0, 1]), 2))
    assert part.centroids[:, 0].tolist() == [(0 + 1 + 3) / 3, (9 + 10 + 20) / 3]
    assert part.stats.counts.tolist() == [2, 2]
    part.place_one("e", "p", np.array([2.0]), None, None, 0.0)
    assert part.stats.counts.tolist() == [3, 2] and part.total().counts.tolist() == [4, 3]
