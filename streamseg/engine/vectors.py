"""A customer's model-space vector, from their features at a time: one definition for
the engine's scoring, the reseed and the read side's measures.

Raw vector: the feature snapshot at ``max(clock, the customer's latest event)`` (a
customer is never measured before their own last event). Model-space vector: that raw
vector standardised, rounded through float32 as the store keeps it, so that a vector
recomputed here equals the one the engine stores for the same features and standardiser.

>>> import numpy as np
>>> from streamseg.config import load_settings
>>> from streamseg.core.features import CustomerFeatures
>>> from streamseg.core.scaling import OnlineStandardizer
>>> features = CustomerFeatures.empty()
>>> features.apply(86400.0 * 10, 50.0, "purchase", half_life_days=90.0)
>>> raws = raw_vectors([features], 86400.0 * 20, load_settings().features)
>>> raws.shape
(1, 6)
>>> standardise(OnlineStandardizer(6, 1.0), raws).shape
(1, 6)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamseg.config import FeatureSettings
from streamseg.core.features import VECTOR_FIELDS, CustomerFeatures
from streamseg.core.scaling import OnlineStandardizer

__all__ = ["raw_vectors", "standardise"]


def raw_vectors(features: Sequence[CustomerFeatures], clock: float,
                settings: FeatureSettings) -> np.ndarray:
    """``(n, d)`` raw vectors of customers with purchases, each at
    ``max(clock, their latest event)``."""
    raws = np.empty((len(features), len(VECTOR_FIELDS)))
    for row, one in enumerate(features):
        now = max(clock, one.reference_time or 0.0)
        raws[row] = settings.snapshot(one, now).raw_vector()
    return raws


def standardise(scaler: OnlineStandardizer, raws: np.ndarray) -> np.ndarray:
    """Raw vectors in model space with ``scaler``, as stored (float32 precision)."""
    vectors: np.ndarray = scaler.transform_many(raws).astype(np.float32).astype(np.float64)
    return vectors
