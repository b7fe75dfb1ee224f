"""The random generator's state as JSON (streamseg.model.rng)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamseg.model.rng import rng_from_state, rng_to_state


def test_a_restored_generator_continues_the_same_stream() -> None:
    rng = np.random.default_rng(123)
    rng.random(5)
    rng.integers(10, size=3)
    state = json.loads(json.dumps(rng_to_state(rng)))
    assert isinstance(state["state"], str) and isinstance(state["inc"], str)
    restored = rng_from_state(state)
    assert restored.random(4).tolist() == rng.random(4).tolist()
    assert restored.integers(1000, size=4).tolist() == rng.integers(1000, size=4).tolist()


def test_other_bit_generators_are_rejected() -> None:
    state = rng_to_state(np.random.default_rng(0))
    state["bit_generator"] = "MT19937"
    with pytest.raises(ValueError, match="MT19937"):
        rng_from_state(state)
