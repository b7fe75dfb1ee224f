"""Tests of streamseg.model: quality bars, customer bookkeeping, ids, persistence."""

from __future__ import annotations

import csv
import doctest
import json
import math
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import streamseg.model as model_pkg
from streamseg.bench import measures as quality
from streamseg.bench.measures import batch_kmeans_inertia, inertia
from streamseg.config import SAMPLE_PATH
from streamseg.model import (
    Assignment,
    CustomerKMeans,
    RiverKMeansModel,
    SegmentModel,
    build_model,
    model_from_state,
    refinement,
    river_kmeans,
)
from streamseg.model import base as model_base
from streamseg.model import customer_kmeans as ck
from streamseg.model.batch import lloyd, match_ids
from streamseg.model.rng import rng_to_state
from streamseg.model.stats import ClusterStats

Store = dict[str, tuple[np.ndarray, int]]
Event = tuple[str, np.ndarray]

REPO = Path(__file__).resolve().parents[3]

# ------------------------------------------------------------------------- helpers


def customer_stream(
    rng: np.random.Generator,
    centres: np.ndarray,
    sizes: Iterable[int],
    transforms: list[np.ndarray] | None = None,
    noise: float = 1.5,
) -> tuple[list[Event], dict[str, int]]:
    """Customers whose vector moves towards a final position over 3-7 updates.

    Each customer's updates are spread over a random window, so customers interleave;
    the noise halves at each update and the last update is the final position.
    """
    timed: list[tuple[float, str, np.ndarray]] = []
    truth: dict[str, int] = {}
    for blob, size in enumerate(sizes):
        for _ in range(size):
            z = rng.normal(size=centres.shape[1])
            final = centres[blob] + (transforms[blob] @ z if transforms is not None else z)
            key = f"c{len(truth)}"
            truth[key] = blob
            m = int(rng.integers(3, 8))
            start = rng.uniform(0.0, 1.0)
            for u, t in enumerate(np.sort(rng.uniform(start, start + 1.0, size=m))):
                scale = noise * 0.5**u if u < m - 1 else 0.0
                timed.append((float(t), key, final + rng.normal(scale=scale, size=final.shape)))
    timed.sort(key=lambda e: e[0])
    return [(key, vec) for _, key, vec in timed], truth


def separated_centres(rng: np.random.Generator, k: int, dim: int, min_gap: float) -> np.ndarray:
    while True:
        c = rng.uniform(-10.0, 10.0, size=(k, dim))
        gaps = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))[np.triu_indices(k, 1)]
        if gaps.min() >= min_gap:
            return c


def blobs(seed: int = 0, n_per_blob: int = 300) -> tuple[list[Event], dict[str, int]]:
    rng = np.random.default_rng(seed)
    return customer_stream(rng, separated_centres(rng, 5, 6, 8.0), [n_per_blob] * 5)


def drive(model: SegmentModel, events: Iterable[Event], store: Store | None = None) -> Store:
    """Play the engine: pass stored values back, store every returned assignment."""
    store = {} if store is None else store
    for key, vector in events:
        prev = store.get(key)
        out = model.update_customer(
            key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
        )
        assert len({a.key for a in out}) == len(out), "a key appears twice in one answer"
        for a in out:
            store[a.key] = (a.vector, a.segment)
    for a in model.flush():
        store[a.key] = (a.vector, a.segment)
    return store


def ratio_to_batch(model: SegmentModel, store: Store, k: int) -> float:
    vectors = np.array([store[key][0] for key in sorted(store)])
    return inertia(vectors, model.centroids) / batch_kmeans_inertia(vectors, k, seed=0)


def ari(store: Store, truth: dict[str, int]) -> float:
    keys = sorted(store)
    return float(adjusted_rand_score([truth[k] for k in keys], [store[k][1] for k in keys]))


def cdnow_events(path: Path) -> list[Event]:
    """RFM-like vectors per event, in date order, standardised on the final data."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["date"], i))
    acc: dict[str, tuple[date, int, float]] = {}
    raw: list[Event] = []
    for i in order:
        row = rows[i]
        day = date(int(row["date"][:4]), int(row["date"][4:6]), int(row["date"][6:]))
        first, count, spend = acc.get(row["customer_id"], (day, 0, 0.0))
        count, spend = count + 1, spend + float(row["amount"])
        acc[row["customer_id"]] = (first, count, spend)
        raw.append(
            (
                row["customer_id"],
                np.array(
                    [
                        0.0,  # log1p(days since last purchase): 0 at a purchase
                        math.log1p(count),
                        math.log1p(spend),
                        math.log1p(spend / count),
                        math.log1p((day - first).days),
                    ]
                ),
            )
        )
    final = np.array(list({key: vec for key, vec in raw}.values()))
    mean, std = final.mean(axis=0), final.std(axis=0)
    std[std == 0.0] = 1.0
    return [(key, (vec - mean) / std) for key, vec in raw]


# ----------------------------------------------------------------- quality bars


def test_blobs_inertia_and_ari_meet_the_bars() -> None:
    events, truth = blobs(seed=0)
    model = CustomerKMeans(n_clusters=5, warmup=200, refine_every=500, seed=3)
    store = drive(model, events)
    assert len(store) == len(truth)
    assert ratio_to_batch(model, store, 5) <= 1.10
    assert ari(store, truth) >= 0.9


def test_blobs_with_a_reservoir_smaller_than_the_population() -> None:
    events, truth = blobs(seed=1)
    model = CustomerKMeans(n_clusters=5, warmup=200, reservoir_size=250, refine_every=300)
    store = drive(model, events)
    assert model.n_sampled == 250 < len(store)
    assert ratio_to_batch(model, store, 5) <= 1.10
    assert ari(store, truth) >= 0.9


def test_anisotropic_unequal_blobs_inertia() -> None:
    rng = np.random.default_rng(2)
    centres = separated_centres(rng, 5, 6, 6.0)
    transforms = []
    for _ in range(5):
        q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
        transforms.append(q @ np.diag([3.0, 1.5, 0.6, 0.4, 0.3, 0.3]))
    events, _ = customer_stream(rng, centres, [700, 350, 150, 60, 25], transforms)
    model = CustomerKMeans(n_clusters=5, warmup=200, refine_every=500)
    store = drive(model, events)
    assert ratio_to_batch(model, store, 5) <= 1.10


def test_cdnow_rfm_inertia() -> None:
    path = SAMPLE_PATH  # bundled with the package
    events = cdnow_events(path)
    model = CustomerKMeans(n_clusters=5)
    store = drive(model, events)
    assert len(store) == 2357
    assert ratio_to_batch(model, store, 5) <= 1.10


def test_restarts_are_what_escape_a_poor_start_on_cdnow() -> None:
    """The bar above is not met by sequential updates alone (so the test can fail)."""
    path = SAMPLE_PATH  # bundled with the package
    events = cdnow_events(path)
    model = CustomerKMeans(n_clusters=5, refine_every=0)
    store = drive(model, events)
    assert ratio_to_batch(model, store, 5) > 1.10


@pytest.mark.parametrize("n_init", [10, 0])
def test_restarts_escape_a_warmup_that_saw_only_two_blobs(n_init: int) -> None:
    """Warm-up customers all come from 2 of 5 blobs; k-means++ splits those two, and the
    3 blobs arriving later would share clusters without restarts (Lloyd alone is stuck)."""
    rng = np.random.default_rng(3)
    centres = separated_centres(rng, 5, 6, 8.0)
    early, _ = customer_stream(rng, centres[:2], [150, 150])
    late, _ = customer_stream(rng, centres[2:], [150, 150, 150])
    events = early + [(f"late-{key}", vector) for key, vector in late]
    model = CustomerKMeans(n_clusters=5, warmup=200, refine_every=300, n_init=n_init)
    ratio = ratio_to_batch(model, drive(model, events), 5)
    if n_init:
        assert ratio <= 1.10
    else:
        assert ratio > 1.10  # the bar above is not met by Lloyd alone


def test_river_adapter_is_worse_on_blobs() -> None:
    events, _ = blobs(seed=0)
    ours = CustomerKMeans(n_clusters=5, warmup=200, refine_every=500, seed=3)
    theirs = RiverKMeansModel(n_clusters=5, seed=3)
    r_ours = ratio_to_batch(ours, drive(ours, events), 5)
    r_theirs = ratio_to_batch(theirs, drive(theirs, events), 5)
    assert r_ours < r_theirs


# ------------------------------------------------------------- bookkeeping


def assert_exact_means(model: CustomerKMeans, store: Store) -> None:
    vectors = np.array([v for v, _ in store.values()])
    segments = np.array([s for _, s in store.values()])
    sizes = np.bincount(segments, minlength=model.n_clusters)
    np.testing.assert_array_equal(model.sizes, sizes)
    for j in np.flatnonzero(sizes):
        np.testing.assert_allclose(
            model.centroids[j], vectors[segments == j].mean(axis=0), atol=1e-9
        )
    own = ((vectors - model.centroids[segments]) ** 2).sum()
    assert model.inertia() == pytest.approx(own, rel=1e-9)


def test_centroids_are_exact_means_of_the_stored_customers() -> None:
    events, _ = blobs(seed=4, n_per_blob=120)
    model = CustomerKMeans(
        n_clusters=5, warmup=100, reservoir_size=150, refine_every=97, hysteresis=0.1, seed=5
    )
    store = drive(model, events)
    assert model.version > 3  # refinements happened
    assert_exact_means(model, store)
    # A forced re-seed reassigns reservoir customers; storing them keeps the means exact.
    for a in model.reseed():
        store[a.key] = (a.vector, a.segment)
    assert_exact_means(model, store)


def test_own_assignment_is_always_returned_first() -> None:
    events, _ = blobs(seed=5, n_per_blob=40)
    model = CustomerKMeans(n_clusters=5, warmup=50, refine_every=7)
    store: Store = {}
    for key, vector in events:
        prev = store.get(key)
        was_ready = model.ready
        out = model.update_customer(
            key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
        )
        if was_ready:
            assert out[0].key == key and out[0].by_model_update is False
            assert all(a.by_model_update for a in out[1:])
        for a in out:
            store[a.key] = (a.vector, a.segment)


Batch = tuple[list[str], np.ndarray]


def drive_batches(model: CustomerKMeans, batches: Iterable[Batch], store: Store) -> Store:
    """Play the engine's batch path: one ``update_customers`` call per batch of distinct
    customers, stored values passed back, every returned assignment stored. The model's
    sizes, means and inertia must match the store after every batch."""
    for keys, vectors in batches:
        prev = [store.get(key) for key in keys]
        out = model.update_customers(
            keys,
            vectors,
            [None if p is None else p[0] for p in prev],
            [None if p is None else p[1] for p in prev],
        )
        assert len({a.key for a in out}) == len(out), "a key appears twice in one answer"
        for a in out:
            store[a.key] = (a.vector, a.segment)
        if model.ready:
            assert_exact_means(model, store)
    return store


def population_batches(
    rng: np.random.Generator, n_customers: int, n_batches: int, size: int
) -> list[Batch]:
    """Batches of distinct customers drawn from a fixed population around 5 centres."""
    centres = rng.uniform(-3.0, 3.0, size=(5, 4))
    home = rng.integers(5, size=n_customers)
    out: list[Batch] = []
    for _ in range(n_batches):
        ids = rng.choice(n_customers, size=size, replace=False)
        out.append(([f"c{i}" for i in ids], centres[home[ids]] + rng.normal(0, 1.5, (size, 4))))
    return out


def test_batched_updates_keep_counts_exact_with_a_sampled_reservoir() -> None:
    """More customers than the reservoir holds: newcomers evict sampled customers, some of
    them in the same batch, while refinements re-assign the sample. The model's counts
    and sums must still be those of the segments it reported (they used to drift)."""
    rng = np.random.default_rng(0)
    model = CustomerKMeans(
        n_clusters=5, warmup=60, reservoir_size=100, refine_every=50, n_init=2,
        hysteresis=0.2, seed=0,
    )
    store = drive_batches(model, population_batches(rng, 600, 80, 40), {})
    assert model.n_sampled == 100 < len(store)
    assert model.version > 20  # refinements happened
    for a in model.flush():
        store[a.key] = (a.vector, a.segment)
    assert_exact_means(model, store)


def test_the_batch_that_seeds_keeps_counts_exact_for_evicted_warmup_customers() -> None:
    """The batch that completes warm-up goes one customer at a time. Warm-up customers are
    assigned at seeding, then newcomers of the same batch evict some from the reservoir
    and refinements move others; when such a customer's own row comes, the caller's
    values predate the batch (``None``: it was never assigned). It must leave the segment
    the model gave it, not be counted a second time."""
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
    assert set(early_keys) <= set(store) and model.n_sampled == 60


def test_lloyd_refills_an_empty_cluster() -> None:
    x = np.array([[0.0], [0.1], [0.2], [10.0], [10.1]])
    fixed = ClusterStats.zeros(3, 1)
    # Empty clusters' fallback centroids are far away, so only re-seeding can fill them.
    labels, stats, _ = lloyd(x, np.array([0, 0, 0, 0, 0]), fixed, np.full((3, 1), 50.0), 10)
    assert (stats.counts > 0).all()
    assert len(set(labels.tolist())) == 3


def test_lloyd_keeps_the_fixed_contribution() -> None:
    # A fixed customer at 100 in cluster 1 keeps pulling that centroid.
    fixed = ClusterStats.of(np.array([[100.0]]), np.array([1]), k=2)
    x = np.array([[0.0], [1.0], [2.0]])
    labels, stats, c = lloyd(x, np.array([0, 0, 1]), fixed, np.zeros((2, 1)), 10)
    assert labels.tolist() == [0, 0, 0]
    assert stats.counts.tolist() == [3, 1]
    assert c[:, 0].tolist() == [1.0, 100.0]


# ----------------------------------------------------------------- hysteresis


def two_cluster_model(hysteresis: float) -> tuple[CustomerKMeans, Store]:
    rng = np.random.default_rng(0)
    model = CustomerKMeans(n_clusters=2, warmup=100, refine_every=0, hysteresis=hysteresis)
    events = [(f"a{i}", np.array([0.0, 0.0]) + rng.normal(0, 0.3, 2)) for i in range(50)]
    events += [(f"b{i}", np.array([10.0, 0.0]) + rng.normal(0, 0.3, 2)) for i in range(50)]
    order = rng.permutation(len(events))
    store = drive(model, [events[i] for i in order])
    return model, store


@pytest.mark.parametrize("hysteresis", [0.0, 0.3])
def test_hysteresis_margin(hysteresis: float) -> None:
    model, store = two_cluster_model(hysteresis)
    seg_a, seg_b = store["a0"][1], store["b0"][1]
    assert seg_a != seg_b
    # Nearer to B, but not by the 30% margin: dist to B ~4.5 vs 0.7 * ~5.5 = ~3.85.
    prev = store["a0"]
    [moved] = model.update_customer("a0", np.array([5.5, 0.0]), prev[0], prev[1])
    assert moved.segment == (seg_b if hysteresis == 0.0 else seg_a)
    store["a0"] = (moved.vector, moved.segment)
    # Far enough past the margin, it moves either way.
    prev = store["a1"]
    [far] = model.update_customer("a1", np.array([8.0, 0.0]), prev[0], prev[1])
    assert far.segment == seg_b
    # A new customer always goes to the nearest centroid.
    [new] = model.update_customer("new", np.array([5.5, 0.0]), None, None)
    assert new.segment == seg_b


# ------------------------------------------------------------ warm-up and flush


def test_warmup_buffers_distinct_customers_then_seeds_all() -> None:
    model = CustomerKMeans(n_clusters=2, warmup=4, seed=0)
    assert model.update_customer("a", np.array([0.0, 0.0]), None, None) == []
    assert model.update_customer("a", np.array([0.0, 0.5]), None, None) == []  # same key
    assert model.update_customer("b", np.array([0.0, 1.0]), None, None) == []
    assert model.update_customer("c", np.array([9.0, 9.0]), None, None) == []
    assert not model.ready and model.version == 0 and model.n_buffered == 3
    assert model.predict_one({"x": 1.0, "y": 2.0}) == 0
    with pytest.raises(RuntimeError):
        model.nearest(np.array([0.0, 0.0]))
    out = model.update_customer("d", np.array([9.0, 10.0]), None, None)
    assert model.ready and model.version == 1
    assert [a.key for a in out] == ["a", "b", "c", "d"]
    assert [a.by_model_update for a in out] == [True, True, True, False]
    by_key = {a.key: a for a in out}
    np.testing.assert_array_equal(by_key["a"].vector, [0.0, 0.5])  # latest vector kept
    assert by_key["a"].segment == by_key["b"].segment != by_key["c"].segment
    assert model.sizes.sum() == 4


def test_flush_seeds_early_only_with_enough_customers() -> None:
    model = CustomerKMeans(n_clusters=3, warmup=100)
    model.update_customer("a", np.array([0.0]), None, None)
    model.update_customer("b", np.array([5.0]), None, None)
    assert model.flush() == [] and not model.ready
    model.update_customer("c", np.array([10.0]), None, None)
    out = model.flush()
    assert model.ready and sorted(a.key for a in out) == ["a", "b", "c"]
    assert all(a.by_model_update for a in out)
    assert sorted(a.segment for a in out) == [0, 1, 2]
    assert model.flush() == []  # nothing happened since


def test_invalid_vectors_are_rejected() -> None:
    model = CustomerKMeans(n_clusters=2, warmup=2)
    model.update_customer("a", np.array([0.0, 1.0]), None, None)
    with pytest.raises(ValueError, match="dimension"):
        model.update_customer("b", np.array([0.0, 1.0, 2.0]), None, None)
    with pytest.raises(ValueError, match="finite"):
        model.update_customer("b", np.array([np.nan, 1.0]), None, None)
    with pytest.raises(ValueError):
        CustomerKMeans(n_clusters=5, warmup=3)
    with pytest.raises(ValueError):
        CustomerKMeans(hysteresis=1.0)


# ------------------------------------------------------------------- stable ids


def test_match_ids_undoes_a_permutation() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(6, 3)) * 10
    perm = rng.permutation(6)
    new = old[perm] + rng.normal(scale=0.01, size=(6, 3))
    matched = match_ids(old, new)
    np.testing.assert_allclose(new[matched], old, atol=0.1)


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


# ---------------------------------------------------------------- persistence


def _replay_pair(
    original: SegmentModel, restored: SegmentModel, events: list[Event], store: Store
) -> None:
    store_a = dict(store)
    store_b = dict(store)
    for key, vector in events:
        answers = []
        for model, st in ((original, store_a), (restored, store_b)):
            prev = st.get(key)
            out = model.update_customer(
                key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
            )
            for a in out:
                st[a.key] = (a.vector, a.segment)
            answers.append(out)
        assert answers[0] == answers[1]
    assert original.flush() == restored.flush()
    np.testing.assert_array_equal(original.centroids, restored.centroids)
    assert original.version == restored.version


@pytest.mark.parametrize("cut", [50, 1500])  # during warm-up, and well after seeding
def test_state_round_trip_behaves_identically(cut: int) -> None:
    events, _ = blobs(seed=7, n_per_blob=100)
    params: dict[str, Any] = {
        "n_clusters": 5,
        "warmup": 120,
        "reservoir_size": 150,
        "refine_every": 90,
    }
    model = CustomerKMeans(**params, seed=9)
    store = drive_without_flush(model, events[:cut])
    state = json.loads(json.dumps(model.to_state()))
    restored = CustomerKMeans.from_state(state)
    assert restored.to_state() == state
    _replay_pair(model, restored, events[cut:], store)
    # The same input from scratch gives the same result too (determinism).
    again = CustomerKMeans(**params, seed=9)
    drive(again, events)
    np.testing.assert_array_equal(again.centroids, model.centroids)


def drive_without_flush(model: SegmentModel, events: Iterable[Event]) -> Store:
    store: Store = {}
    for key, vector in events:
        prev = store.get(key)
        for a in model.update_customer(
            key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
        ):
            store[a.key] = (a.vector, a.segment)
    return store


def test_state_keeps_the_random_generator() -> None:
    """Without the RNG state, a restored model would sample/restart differently."""
    events, _ = blobs(seed=8, n_per_blob=80)
    model = CustomerKMeans(n_clusters=5, warmup=100, reservoir_size=120, refine_every=50)
    store = drive_without_flush(model, events[:1000])
    state = json.loads(json.dumps(model.to_state()))
    state["rng"] = rng_to_state(np.random.default_rng(12345))
    tampered = CustomerKMeans.from_state(state)
    rest = events[1000:]
    drive(model, rest, dict(store))
    drive(tampered, rest, dict(store))
    assert model.to_state()["reservoir"]["keys"] != tampered.to_state()["reservoir"]["keys"]


def test_large_reservoir_grows_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    model = CustomerKMeans(n_clusters=3, warmup=10, reservoir_size=100_000, refine_every=0)
    events = [(f"k{i}", v) for i, v in enumerate(rng.normal(size=(1500, 2)))]
    store = drive_without_flush(model, events)
    assert model.n_sampled == 1500
    restored = CustomerKMeans.from_state(json.loads(json.dumps(model.to_state())))
    assert restored.n_sampled == 1500
    more = [(f"k{i}", np.ones(2) * i) for i in range(0, 1500, 7)] + [("new", np.zeros(2))]
    _replay_pair(model, restored, more, store)
    assert restored.n_sampled == 1501


def test_from_state_rejects_other_kinds() -> None:
    with pytest.raises(ValueError, match="customer-kmeans"):
        CustomerKMeans.from_state(RiverKMeansModel().to_state())


# ------------------------------------------------------------ River API and adapter


def test_river_clusterer_api_and_checks() -> None:
    from river import checks

    model = CustomerKMeans(n_clusters=2, warmup=6, seed=0)
    points = [{"b": 0.0, "a": 0.0}, {"a": 0.2, "b": 0.1}, {"a": 0.1}]
    points += [{"a": 9.0, "b": 9.0}, {"a": 9.2, "b": 9.1}, {"a": 9.1, "b": 8.9, "z": 3.0}]
    for x in points:
        model.learn_one(x)
    assert model.ready
    assert model.predict_one({"a": 0.0, "b": 0.0}) != model.predict_one({"a": 9.0, "b": 9.0})
    assert model.centroids.shape == (2, 2)  # "z" came later and is ignored
    clone = model.clone()
    assert not clone.ready and clone.n_clusters == 2
    for check in checks.yield_checks(model):
        check(model.clone())


def test_river_adapter_interface_and_state() -> None:
    events, _ = blobs(seed=9, n_per_blob=40)
    model = RiverKMeansModel(n_clusters=5, seed=1)
    assert not model.ready
    with pytest.raises(RuntimeError):
        model.nearest(np.zeros(6))
    store = drive_without_flush(model, events[:300])
    assert model.ready and model.centroids.shape == (5, 6)
    assert model.sizes.sum() == len(store)
    assert model.flush() == [] and model.version == 0
    state = json.loads(json.dumps(model.to_state()))
    restored = RiverKMeansModel.from_state(state)
    _replay_pair(model, restored, events[300:], store)
    assert isinstance(model_from_state(state), RiverKMeansModel)


def test_build_model_and_protocol() -> None:
    a = build_model("customer-kmeans", n_clusters=3, warmup=10, seed=1)
    b = build_model("river-kmeans", n_clusters=3, warmup=10, seed=1)  # warmup: other kind's
    assert isinstance(a, CustomerKMeans) and isinstance(b, RiverKMeansModel)
    assert isinstance(a, SegmentModel) and isinstance(b, SegmentModel)
    with pytest.raises(ValueError, match="customer-kmeans, river-kmeans"):
        build_model("dbscan")
    with pytest.raises(TypeError):
        build_model("customer-kmeans", n_clusterz=3)
    assert isinstance(model_from_state(a.to_state()), CustomerKMeans)


def test_assignment_equality() -> None:
    a = Assignment("k", 1, np.array([1.0, 2.0]), False)
    assert a == Assignment("k", 1, np.array([1.0, 2.0]), False)
    assert a != Assignment("k", 1, np.array([1.0, 2.5]), False)
    assert a != Assignment("k", 1, np.array([1.0, 2.0]), True)


# --------------------------------------------------------------------- quality


def test_quality_measures() -> None:
    x = np.array([[0.0], [2.0], [10.0], [12.0]])
    assert inertia(x, np.array([[1.0], [11.0]])) == pytest.approx(4.0)
    assert inertia(x, np.array([[6.0]])) == pytest.approx(36 + 16 + 16 + 36)
    assert batch_kmeans_inertia(x, 2, seed=0) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "module", [model_pkg, model_base, ck, river_kmeans, quality], ids=lambda m: m.__name__
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
