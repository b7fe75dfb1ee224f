"""The model checkpoint: what one worker publishes of the model for every worker.

What describes customers -- per-segment sums, the standardiser, the clock, the sample
-- is kept per partition by the partition's owner (:mod:`streamseg.engine.shared`). The
rest of the model is one per store, and written by the worker that holds the model
lease (for a model several workers share, the *refiner*: :mod:`.refiner`), with its
batch, in the same atomic write. A checkpoint is a dict of parts:

``kind``, ``format``
    the model kind (``model.kind``) that wrote it, and this layout's version;
``stamp``
    ``<version>/<checksum of the names>``: other workers read it every refresh, and the
    rest only when it changed;
``model``
    the model's light state (``to_state(with_vectors=False)``): parameters, version,
    centroids, the sample's rate, the random generator. For ``river-kmeans``, which
    cannot be shared, its whole state;
``names``
    segment id -> name, derived by the refiner from its centroids;
``relabels``
    customer -> [segment, vector check]: the sampled customers of other workers that
    the last refinement moved (their owners apply them when they adopt the version);
``refined_at``
    the customer scorings over every partition at the last refinement (the refiner's
    cadence).

A store written before the model was shared (no ``format``) holds the whole model, the
standardiser and the clock in the checkpoint; :mod:`.upgrade` moves them into
partitions.

>>> from streamseg.config import load_settings
>>> restored = restore_model(None, load_settings())
>>> restored.model.ready, restored.names
(False, {})
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from streamseg.config import Settings
from streamseg.engine.stored_settings import apply_adjustable
from streamseg.model import CustomerKMeans, SegmentModel, build_model

__all__ = ["CHECKPOINT_FORMAT", "RestoredModel", "is_legacy", "model_checkpoint",
           "restore_model"]

CHECKPOINT_FORMAT = 3


@dataclass(slots=True)
class RestoredModel:
    """What an engine starts from: its model and what the refiner last published."""

    model: SegmentModel
    names: dict[int, str]
    relabels: dict[str, tuple[int, int]] = field(default_factory=dict)
    refined_at: int = 0


def model_checkpoint(kind: str, model: SegmentModel, names: dict[int, str],
                     relabels: dict[str, tuple[int, int]] | None = None,
                     refined_at: int = 0) -> dict[str, Any]:
    """The checkpoint of the model (see the module docstring)."""
    named = {str(k): v for k, v in sorted(names.items())}
    checkpoint: dict[str, Any] = {
        "kind": kind,
        "format": CHECKPOINT_FORMAT,
        "stamp": f"{model.version}/{zlib.crc32(json.dumps(named).encode())}",
        "model": model.to_state(with_vectors=not isinstance(model, CustomerKMeans)),
        "names": named,
    }
    if isinstance(model, CustomerKMeans):
        checkpoint["relabels"] = {key: list(value) for key, value in (relabels or {}).items()}
        checkpoint["refined_at"] = refined_at
    return checkpoint


def is_legacy(checkpoint: dict[str, Any] | None) -> bool:
    """Whether ``checkpoint`` was written before the model was kept per partition."""
    return checkpoint is not None and "format" not in checkpoint


def restore_model(checkpoint: dict[str, Any] | None, settings: Settings) -> RestoredModel:
    """The model as the checkpoint has it (without any partition's share), or a fresh
    one for no checkpoint, one of another model kind, or a legacy one (upgraded
    separately, see :mod:`.upgrade`)."""
    params = settings.model.params()
    model = build_model(settings.model.kind, **params)
    if (checkpoint is None or checkpoint.get("kind") != settings.model.kind
            or is_legacy(checkpoint)):
        return RestoredModel(model, {})
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"unsupported model checkpoint format {checkpoint.get('format')!r}")
    restored = model.from_state(checkpoint["model"])
    # The checkpoint carries the values the model was built with; settings that may
    # change on an existing store (checked at start, see stored_settings) apply now.
    apply_adjustable(restored, settings)
    return RestoredModel(
        model=restored,
        names={int(k): v for k, v in (checkpoint.get("names") or {}).items()},
        relabels={key: (int(value[0]), int(value[1]))
                  for key, value in (checkpoint.get("relabels") or {}).items()},
        refined_at=int(checkpoint.get("refined_at", 0)),
    )
