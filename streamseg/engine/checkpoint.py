"""The model checkpoint: the engine's learnt state, as the store keeps it.

Written with every batch, inside the batch's store write, so that the model and the
customer states always describe the same instant; read when an engine starts. A
checkpoint is a dict of parts:

``kind``
    the model kind (``model.kind``) that wrote it;
``model``
    the model's ``to_state(with_vectors=False)``: a *light* checkpoint, without the
    reservoir's vectors and segments, and without its customer ids (next part);
``reservoir_keys``
    the reservoir's customer ids, a part of their own: they are most of the checkpoint
    and change only when a new customer is sampled, so a store can skip rewriting an
    unchanged part (Redis does);
``scaler``
    the online standardiser;
``watermark``
    the event-time watermark (the service clock);
``names``
    segment id -> name.

The reservoir's vectors and segments are in the store already: every sampled customer's
current vector and segment are written with the customer. :func:`restore_model` reads
them back from there.

>>> from streamseg.config import load_settings
>>> from streamseg.store import MemoryStore
>>> restored = restore_model(None, load_settings(), MemoryStore())
>>> restored.watermark is None, restored.model.ready
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamseg.config import Settings
from streamseg.core.features import SCALE_FLOOR, VECTOR_FIELDS
from streamseg.core.scaling import OnlineStandardizer
from streamseg.engine.stored_settings import apply_adjustable
from streamseg.model import SegmentModel, build_model
from streamseg.store import Store

__all__ = ["RestoredModel", "model_checkpoint", "restore_model"]


@dataclass(slots=True)
class RestoredModel:
    """What an engine starts from: its model, standardiser, clock and segment names."""

    model: SegmentModel
    scaler: OnlineStandardizer
    watermark: float | None
    segment_names: dict[int, str]


def model_checkpoint(kind: str, model: SegmentModel, scaler: OnlineStandardizer,
                     watermark: float | None, segment_names: dict[int, str]) -> dict[str, Any]:
    """The checkpoint of an engine's learnt state (see the module docstring)."""
    state = model.to_state(with_vectors=False)
    reservoir = state.get("reservoir")
    keys = None
    if reservoir is not None:
        reservoir = state["reservoir"] = dict(reservoir)
        keys = reservoir.pop("keys")
    return {
        "kind": kind,
        "model": state,
        "reservoir_keys": keys,
        "scaler": scaler.to_state(),
        "watermark": watermark,
        "names": {str(k): v for k, v in segment_names.items()},
    }


def restore_model(checkpoint: dict[str, Any] | None, settings: Settings,
                  store: Store) -> RestoredModel:
    """The engine's learnt state from ``checkpoint``, or a fresh one.

    A checkpoint of another model kind is not restored (a fresh model starts).
    Reservoir vectors and segments are read from ``store``.
    """
    params = settings.model.model_dump(exclude={"kind"})
    model = build_model(settings.model.kind, **params)
    if checkpoint is None or checkpoint.get("kind") != settings.model.kind:
        return RestoredModel(model, OnlineStandardizer(len(VECTOR_FIELDS), SCALE_FLOOR),
                             None, {})

    def stored_vectors(keys: list[str]) -> dict[str, tuple[Sequence[float], int]]:
        return {cid: (state.vector, state.segment)
                for cid, state in store.get_many(keys).items()
                if state.vector is not None and state.segment is not None}

    restored = model.from_state(_model_state(checkpoint), lookup=stored_vectors)
    # The checkpoint carries the values the model was built with; settings that may
    # change on an existing store (checked at start, see stored_settings) apply now.
    apply_adjustable(restored, settings)
    names = checkpoint.get("names") or {}
    return RestoredModel(
        model=restored,
        scaler=OnlineStandardizer.from_state(checkpoint["scaler"]),
        watermark=checkpoint.get("watermark"),
        segment_names={int(k): v for k, v in names.items()},
    )


def _model_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model part of a checkpoint, with ``reservoir_keys`` put back in place."""
    state = dict(checkpoint["model"])
    keys = checkpoint.get("reservoir_keys")
    if keys is not None and state.get("reservoir") is not None:
        state["reservoir"] = {**state["reservoir"], "keys": keys}
    return state
