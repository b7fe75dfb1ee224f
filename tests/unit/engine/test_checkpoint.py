"""The model checkpoint: its parts, and a restore that reads vectors from the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamseg.config import load_settings
from streamseg.core.features import CustomerFeatures
from streamseg.core.scaling import OnlineStandardizer
from streamseg.core.state import CustomerState
from streamseg.engine.checkpoint import model_checkpoint, restore_model
from streamseg.model import build_model
from streamseg.store import BatchWrite, MemoryStore, PartitionWrite


def _seeded() -> tuple[object, MemoryStore]:
    model = build_model("customer-kmeans", n_clusters=2, warmup=4)
    store = MemoryStore()
    assignments = []
    for i, x in enumerate([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]]):
        assignments += model.update_customer(f"c{i}", np.array(x), None, None)
    states = [CustomerState(a.key, CustomerFeatures.empty(), segment=a.segment,
                            vector=a.vector.tolist(), partition="local") for a in assignments]
    store.write_batch(BatchWrite([PartitionWrite(store.take_partition("local"), states)]))
    return model, store


def test_the_reservoir_ids_are_a_part_of_their_own_and_vectors_stay_out() -> None:
    model, _ = _seeded()
    checkpoint = model_checkpoint("customer-kmeans", model, OnlineStandardizer(2), 5.0,
                                  {0: "VIP"})  # type: ignore[arg-type]
    assert list(checkpoint) == ["kind", "model", "reservoir_keys", "scaler", "watermark",
                                "names"]
    assert sorted(checkpoint["reservoir_keys"]) == ["c0", "c1", "c2", "c3"]
    assert "keys" not in checkpoint["model"]["reservoir"]
    assert checkpoint["model"]["reservoir"]["vectors"] is None
    assert checkpoint["names"] == {"0": "VIP"}
    json.dumps(checkpoint)  # JSON-ready


def test_restore_reads_the_sampled_vectors_from_the_store() -> None:
    model, store = _seeded()
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4,
                                                  "hysteresis": 0.0}})
    checkpoint = model_checkpoint("customer-kmeans", model, OnlineStandardizer(2), 5.0, {})  # type: ignore[arg-type]
    restored = restore_model(checkpoint, settings, store)
    assert restored.model.to_state() == model.to_state()  # type: ignore[attr-defined]
    assert restored.watermark == 5.0


def test_a_checkpoint_of_another_kind_is_not_restored() -> None:
    model, store = _seeded()
    settings = load_settings(overrides={"model": {"kind": "river-kmeans"}})
    checkpoint = model_checkpoint("customer-kmeans", model, OnlineStandardizer(2), 5.0, {})  # type: ignore[arg-type]
    restored = restore_model(checkpoint, settings, store)
    assert restored.watermark is None and not restored.model.ready


def test_a_store_that_lost_sampled_customers_cannot_restore() -> None:
    model, _ = _seeded()
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})
    checkpoint = model_checkpoint("customer-kmeans", model, OnlineStandardizer(2), 5.0, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampled customers"):
        restore_model(checkpoint, settings, MemoryStore())
