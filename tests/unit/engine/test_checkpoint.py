"""The model checkpoint: what the lease holder publishes, without any partition's share."""

from __future__ import annotations

import json

import numpy as np

from streamseg.config import load_settings
from streamseg.engine.checkpoint import is_legacy, model_checkpoint, restore_model
from streamseg.model import CustomerKMeans, build_model


def _seeded() -> CustomerKMeans:
    model = build_model("customer-kmeans", n_clusters=2, warmup=4, hysteresis=0.0)
    assert isinstance(model, CustomerKMeans)
    for i, x in enumerate([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]]):
        model.update_customer(f"c{i}", np.array(x), None, None, partition="p0")
    return model


def test_the_checkpoint_leaves_statistics_buffer_and_sample_to_the_partitions() -> None:
    model = _seeded()
    checkpoint = model_checkpoint("customer-kmeans", model, {0: "VIP"}, {"c9": (1, 7)}, 12)
    assert list(checkpoint) == ["kind", "format", "stamp", "model", "names", "relabels",
                                "refined_at"]
    light = checkpoint["model"]
    assert light["parts"] is None and light["buffer"] is None
    assert light["sample"]["rows"] is None and light["centroids"] is not None
    assert checkpoint["names"] == {"0": "VIP"} and checkpoint["relabels"] == {"c9": [1, 7]}
    json.dumps(checkpoint)  # JSON-ready


def test_the_stamp_changes_with_the_version_and_the_names() -> None:
    model = _seeded()
    first = model_checkpoint("customer-kmeans", model, {0: "VIP"})["stamp"]
    assert model_checkpoint("customer-kmeans", model, {0: "VIP"})["stamp"] == first
    assert model_checkpoint("customer-kmeans", model, {0: "Loyal"})["stamp"] != first
    model.refine()
    assert model_checkpoint("customer-kmeans", model, {0: "VIP"})["stamp"] != first


def test_restored_with_the_partitions_shares_the_model_is_whole_again() -> None:
    model = _seeded()
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4,
                                                  "hysteresis": 0.0}})
    checkpoint = json.loads(json.dumps(model_checkpoint("customer-kmeans", model, {1: "A"})))
    restored = restore_model(checkpoint, settings)
    assert restored.names == {1: "A"}
    copy = restored.model
    assert isinstance(copy, CustomerKMeans) and copy.ready and copy.partition_stats() == {}
    rows = json.loads(json.dumps(model.to_state()))["sample"]["rows"]
    copy.own("p0", model.partition_stats()["p0"],
             [(key, vector, segment) for key, _, vector, segment in rows])
    assert copy.to_state() == json.loads(json.dumps(model.to_state()))


def test_a_checkpoint_of_another_kind_or_a_legacy_one_is_not_restored() -> None:
    model = _seeded()
    river = load_settings(overrides={"model": {"kind": "river-kmeans"}})
    checkpoint = model_checkpoint("customer-kmeans", model, {})
    assert not restore_model(checkpoint, river).model.ready
    legacy = {"kind": "customer-kmeans", "model": {}, "scaler": {}, "watermark": 5.0}
    assert is_legacy(legacy) and not is_legacy(checkpoint)
    settings = load_settings(overrides={"model": {"n_clusters": 2, "warmup": 4}})
    assert not restore_model(legacy, settings).model.ready
