"""Customer streams and an engine stand-in shared by the model tests."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from streamseg.model import CustomerKMeans, SegmentModel
from streamseg_bench.measures import batch_kmeans_inertia, inertia

Store = dict[str, tuple[np.ndarray, int]]


Event = tuple[str, np.ndarray]



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


def drive_without_flush(model: SegmentModel, events: Iterable[Event]) -> Store:
    store: Store = {}
    for key, vector in events:
        prev = store.get(key)
        for a in model.update_customer(
            key, vector, None if prev is None else prev[0], None if prev is None else prev[1]
        ):
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


def replay_pair(
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

