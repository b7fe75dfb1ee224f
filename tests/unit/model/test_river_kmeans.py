"""River's k-means behind the customer-level interface (the baseline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamseg.model import CustomerKMeans, RiverKMeansModel, model_from_state
from tests.unit.model._streams import blobs, drive, drive_without_flush, ratio_to_batch, replay_pair


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
    replay_pair(model, restored, events[300:], store)
    assert isinstance(model_from_state(state), RiverKMeansModel)


def test_river_adapter_is_worse_on_blobs() -> None:
    events, _ = blobs(seed=0)
    ours = CustomerKMeans(n_clusters=5, warmup=200, refine_every=500, seed=3)
    theirs = RiverKMeansModel(n_clusters=5, seed=3)
    r_ours = ratio_to_batch(ours, drive(ours, events), 5)
    r_theirs = ratio_to_batch(theirs, drive(theirs, events), 5)
    assert r_ours < r_theirs

