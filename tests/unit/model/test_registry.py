"""Model kinds, build_model and model_from_state (streamseg/model/__init__.py)."""

from __future__ import annotations

import pytest

from streamseg.model import (
    CustomerKMeans,
    RiverKMeansModel,
    SegmentModel,
    build_model,
    model_from_state,
)


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

