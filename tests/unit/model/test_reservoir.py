"""The reservoir sample of customers (streamseg.model.reservoir)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamseg.model.reservoir import Reservoir


def _filled(capacity: int, n: int, seed: int = 0) -> Reservoir:
    rng = np.random.default_rng(seed)
    res = Reservoir(capacity, dim=2)
    for i in range(n):
        res.offer(f"c{i}", np.array([float(i), -float(i)]), i % 3, rng)
    return res


def test_it_holds_at_most_capacity_and_describes_its_members() -> None:
    res = _filled(capacity=50, n=400)
    assert len(res) == 50 and res.n_seen == 400
    assert res.index == {key: i for i, key in enumerate(res.keys)}
    for key, slot in res.index.items():
        i = int(key[1:])
        assert res.vectors[slot].tolist() == [float(i), -float(i)]
        assert res.segments[slot] == i % 3


def test_the_sample_is_uniform() -> None:
    # Algorithm R: each of n customers is kept with probability capacity / n.
    counts = np.zeros(100)
    trials = 400
    for seed in range(trials):
        res = _filled(capacity=10, n=100, seed=seed)
        counts[[int(k[1:]) for k in res.keys]] += 1
    early, late = counts[:50].mean() / trials, counts[50:].mean() / trials
    assert early == pytest.approx(0.1, abs=0.02) and late == pytest.approx(0.1, abs=0.02)


def test_arrays_grow_past_their_initial_size() -> None:
    res = _filled(capacity=3000, n=2500)
    assert len(res) == 2500 and res.vectors.shape[0] >= 2500
    assert res.vectors[2499].tolist() == [2499.0, -2499.0]


def test_state_round_trip() -> None:
    res = _filled(capacity=20, n=60)
    state = json.loads(json.dumps(res.to_state()))
    back = Reservoir.from_state(state, dim=2)
    assert back.keys == res.keys and back.n_seen == res.n_seen
    assert back.vectors[:20].tolist() == res.vectors[:20].tolist()
    assert back.segments[:20].tolist() == res.segments[:20].tolist()


def test_a_light_checkpoint_takes_vectors_and_segments_from_the_lookup() -> None:
    res = _filled(capacity=5, n=5)
    state = res.to_state(with_vectors=False)
    assert state["vectors"] is None and state["segments"] is None
    with pytest.raises(ValueError, match="lookup"):
        Reservoir.from_state(state, dim=2)
    stored = {k: (res.vectors[i].tolist(), int(res.segments[i])) for i, k in enumerate(res.keys)}
    back = Reservoir.from_state(state, dim=2, lookup=lambda keys: {k: stored[k] for k in keys})
    assert back.vectors[:5].tolist() == res.vectors[:5].tolist()
    assert back.segments[:5].tolist() == res.segments[:5].tolist()
    with pytest.raises(ValueError, match="lacks 1 sampled"):
        Reservoir.from_state(state, dim=2, lookup=lambda keys: {k: stored[k] for k in keys[1:]})
