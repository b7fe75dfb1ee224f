"""The hysteresis rule, alone and in each path that re-assigns customers."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.model.batch import lloyd
from streamseg.model.customer_kmeans import CustomerKMeans
from streamseg.model.hysteresis import keeps_old_segment
from streamseg.model.stats import ClusterStats
from tests.unit.model._streams import Store, drive

# A customer of the segment at 0.0 moves to x; the other segment is at 10.0. Its distance
# ratio nearest/old is (10 - x) / x: 0.6 at 6.25 (inside a 50% margin: it stays), 1/3 at
# 7.5 (past it: it moves). On squared distances the ratios are 0.36 and 0.11, so a margin
# wrongly applied to d^2 without squaring it (0.5 instead of 0.25) would move it at 6.25.
INSIDE, PAST = 6.25, 7.5
HYSTERESIS = 0.5


def test_the_margin_is_on_distances_not_squared_distances() -> None:
    d2_old = 4.0  # distance 2
    assert keeps_old_segment(1.0, d2_old, HYSTERESIS)  # distance 1 = 0.5 * 2: not nearer by 50%
    assert not keeps_old_segment(np.nextafter(1.0, 0.0), d2_old, HYSTERESIS)
    assert keeps_old_segment(1.5, d2_old, HYSTERESIS)  # would move with margin 0.5 on d^2


def test_a_tie_keeps_the_old_segment_and_zero_hysteresis_moves_otherwise() -> None:
    assert keeps_old_segment(3.0, 3.0, 0.0)
    assert not keeps_old_segment(np.nextafter(3.0, 0.0), 3.0, 0.0)


def test_scalar_and_vector_forms_agree() -> None:
    rng = np.random.default_rng(0)
    d2_old = rng.uniform(0.0, 10.0, 200)
    d2_nearest = d2_old * rng.uniform(0.0, 1.0, 200)
    for h in (0.0, 0.1, 0.3, 0.9):
        vector = keeps_old_segment(d2_nearest, d2_old, h)
        assert vector.dtype == np.bool_
        pairs = list(zip(d2_nearest.tolist(), d2_old.tolist(), strict=True))
        scalars = [keeps_old_segment(a, b, h) for a, b in pairs]
        assert all(isinstance(s, bool) for s in scalars)
        assert vector.tolist() == scalars
        assert vector.tolist() == [not a < (1.0 - h) ** 2 * b for a, b in pairs]


def seeded_model(hysteresis: float) -> tuple[CustomerKMeans, int, int]:
    """Two segments with means exactly 0.0 and 10.0 (also without customer "a0")."""
    model = CustomerKMeans(n_clusters=2, warmup=6, refine_every=0, hysteresis=hysteresis)
    points = {"a0": 0.0, "a1": -1.0, "a2": 1.0, "b0": 10.0, "b1": 9.0, "b2": 11.0}
    out = {}
    for key, value in points.items():
        for a in model.update_customer(key, np.array([value]), None, None):
            out[a.key] = a.segment
    assert model.centroids[out["a0"], 0] == 0.0 and model.centroids[out["b0"], 0] == 10.0
    return model, out["a0"], out["b0"]


@pytest.mark.parametrize(
    ("hysteresis", "to", "moves"),
    [(HYSTERESIS, INSIDE, False), (HYSTERESIS, PAST, True), (0.0, INSIDE, True)],
)
def test_one_customer_path(hysteresis: float, to: float, moves: bool) -> None:
    model, seg_a, seg_b = seeded_model(hysteresis)
    [a] = model.update_customer("a0", np.array([to]), np.array([0.0]), seg_a)
    assert a.segment == (seg_b if moves else seg_a)


@pytest.mark.parametrize(
    ("hysteresis", "to", "moves"),
    [(HYSTERESIS, INSIDE, False), (HYSTERESIS, PAST, True), (0.0, INSIDE, True)],
)
def test_mini_batch_path(hysteresis: float, to: float, moves: bool) -> None:
    model, seg_a, seg_b = seeded_model(hysteresis)
    out = model.update_customers(
        ["a0", "b0"], np.array([[to], [10.0]]), [np.array([0.0]), np.array([10.0])],
        [seg_a, seg_b],
    )
    assert [a.key for a in out] == ["a0", "b0"]
    assert out[0].segment == (seg_b if moves else seg_a)


@pytest.mark.parametrize(
    ("hysteresis", "to", "moves"),
    [(HYSTERESIS, INSIDE, False), (HYSTERESIS, PAST, True), (0.0, INSIDE, True)],
)
def test_lloyd_path(hysteresis: float, to: float, moves: bool) -> None:
    # Many fixed customers at 0.0 and 10.0 keep the centroids (nearly) in place.
    fixed = ClusterStats.of(np.array([[0.0], [10.0]]).repeat(1000, axis=0),
                            np.array([0, 1]).repeat(1000), k=2)
    x = np.array([[to], [0.5], [9.5]])
    labels, _, _ = lloyd(x, np.array([0, 0, 1]), fixed, np.array([[0.0], [10.0]]), 10,
                         hysteresis)
    assert labels.tolist() == [1 if moves else 0, 0, 1]


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
