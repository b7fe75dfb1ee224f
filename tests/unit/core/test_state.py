"""A customer's state as the stores keep it."""

from __future__ import annotations

import numpy as np

from streamseg.core.features import CustomerFeatures
from streamseg.core.state import CustomerState


def test_a_state_round_trips_through_its_dict_without_the_scored_raw_vector() -> None:
    features = CustomerFeatures.empty()
    features.apply(0.0, 12.5, "purchase", half_life_days=90)
    state = CustomerState("c1", features, segment=2, segment_name="VIP", vector=[0.5, -1.0],
                          updated_at=5.0, model_version=3, next_rescore_at=9.0,
                          applied={"s": 4}, recent_ids=[1, 2],
                          scored_raw=np.array([1.0, 2.0]))
    again = CustomerState.from_dict(state.to_dict())
    assert again == state  # scored_raw is not compared: it is not stored
    assert again.scored_raw is None
    assert again.vector_array() is not None and again.vector_array().tolist() == [0.5, -1.0]
