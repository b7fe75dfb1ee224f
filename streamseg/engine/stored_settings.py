"""Settings that shape stored data, recorded with the store and checked at every start.

A store holds customers' decayed sums, vectors standardised one way and segments of one
model. Some settings change what those stored values mean: a run with another half-life
would add new events to sums decayed with the old one; another ``n_clusters`` or model
kind would count customers into segments that do not exist. So the store records the
settings it was written with (:func:`settings_record`, in the store's metadata under
``settings``), and every start compares them with the settings it was given
(:func:`check_stored_settings`):

* a setting in :data:`FIXED` that differs stops the service with an error that names
  the setting, the stored value, the new one and what to do -- nothing is written;
* a setting in :data:`ADJUSTABLE` may change on an existing store: the new value is
  applied to the restored model (:func:`apply_adjustable`) and recorded.

Settings not named here (Kafka, sinks, naming rules, the inactivity timer's waits, the
dedupe window, ...) do not shape stored data and may change freely.

The pseudonymisation key is never stored: a keyed digest of it (``privacy.key_id``)
tells whether ids were hashed, and with which key.

>>> from streamseg.config import load_settings
>>> record = settings_record(load_settings())
>>> record["model.n_clusters"], record["privacy.key_id"]
(5, None)
>>> check_stored_settings(record, load_settings(overrides={"model": {"hysteresis": 0.1}}))
['model.hysteresis']
>>> try:
...     check_stored_settings(record, load_settings(overrides={"model": {"n_clusters": 3}}))
... except StoredSettingsMismatch as error:
...     print(str(error).splitlines()[1].split(":")[0])
  model.n_clusters is 5 in the store, 3 in this run
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from streamseg.config import ConfigError, Settings

__all__ = [
    "ADJUSTABLE",
    "FIXED",
    "StoredSettingsMismatch",
    "apply_adjustable",
    "check_stored_settings",
    "record_from_checkpoint",
    "settings_record",
]

_RESEED = ("to re-segment the stored customers into another number of segments without "
           "a replay, run `streamseg reseed --k N` (then set model.n_clusters to N)")
_NEW_STORE = ("or start a new store (another store.uri or store.redis_prefix) and replay "
              "the events into it")

#: Setting -> what to do when a run asks for another value than the store holds.
FIXED: dict[str, str] = {
    "model.kind": f"models of two kinds cannot share stored segments; {_NEW_STORE}",
    "model.n_clusters": f"{_RESEED}; {_NEW_STORE}",
    "model.reservoir_size": f"the model's sample was drawn for this size; {_RESEED}",
    "model.seed": f"the model's random state continues from the store; {_RESEED}",
    "features.half_life_days": f"stored sums are decayed with this half-life; {_NEW_STORE}",
    "features.first_gap_days": f"stored vectors were computed with it; {_NEW_STORE}",
    "features.grace_gaps": f"stored vectors were computed with it; {_NEW_STORE}",
    "traits.enabled": ("snapshots and labels are followed at every event while traits are "
                       "on; switched off and on again, stored snapshots would be labelled "
                       "with purchases they did not see; " + _NEW_STORE),
    "traits.horizon_days": ("the customers' pending snapshots wait for labels over this "
                            "horizon and the trait model learned it; " + _NEW_STORE),
    "traits.snapshot_every_days": ("the customers' pending snapshots are on this grid; "
                                   + _NEW_STORE),
    "traits.risk_bands": ("customers' risk bands are stored by their place in this list; "
                          + _NEW_STORE),
    "pipeline.clock": f"stored times and the watermark follow this clock; {_NEW_STORE}",
    "privacy.key_id": ("stored customer ids were hashed with another key (or none); "
                       f"use the key the store was written with, {_NEW_STORE}"),
    "input.source": ("the store's partitions and positions belong to this input: two "
                     "consumer groups or two topics writing one store would give customers "
                     f"two owners; {_NEW_STORE}"),
}

#: Settings that may change on an existing store; the new value applies from now on.
ADJUSTABLE: tuple[str, ...] = (
    "model.hysteresis", "model.refine_every", "model.lloyd_iterations", "model.n_init",
    "model.warmup",
)

_KEY_ID_MESSAGE = b"streamseg pseudonymisation key id"


class StoredSettingsMismatch(ConfigError):
    """The store was written with other values of settings that cannot change."""


def key_id(key: bytes | None) -> str | None:
    """A digest that identifies a pseudonymisation key without revealing it."""
    if key is None:
        return None
    return hmac.new(key, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


def input_identity(settings: Settings) -> str:
    """What writes the store: ``kafka group=G topics=T1,T2``, or ``local`` for a source
    one worker reads whole (files, stdin, the sample)."""
    uri = settings.source.uri
    if not uri.startswith("kafka://"):
        return "local"
    topics = sorted(t for t in uri.removeprefix("kafka://").partition("/")[2].split(",") if t)
    return f"kafka group={settings.kafka.group_id} topics={','.join(topics)}"


def check_partition_counts(stored: dict[str, int] | None, current: dict[str, int],
                           where: str) -> None:
    """A topic's partition count must not change under an existing store: customers
    would move to other partitions, with two owners each."""
    changed = [f"topic {topic} had {stored[topic]} partitions when {where} was first "
               f"written, and has {n} now" for topic, n in sorted(current.items())
               if stored and topic in stored and stored[topic] != n]
    if changed:
        raise StoredSettingsMismatch(
            "; ".join(changed) + ": customers would move between partitions and have two "
            f"owners. Give the topic its old partition count back, {_NEW_STORE}")


def settings_record(settings: Settings) -> dict[str, Any]:
    """The values of :data:`FIXED` and :data:`ADJUSTABLE` settings, by dotted name."""
    record: dict[str, Any] = {}
    for name in (*FIXED, *ADJUSTABLE):
        if name == "privacy.key_id":
            record[name] = key_id(settings.pseudonym_key())
            continue
        if name == "input.source":
            record[name] = input_identity(settings)
            continue
        section, field = name.split(".")
        record[name] = getattr(getattr(settings, section), field)
    return record


def record_from_checkpoint(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """What a model checkpoint tells of the settings, for a store written before the
    settings were recorded: the model kind and the model's parameters."""
    if not checkpoint:
        return {}
    record: dict[str, Any] = {"model.kind": checkpoint.get("kind")}
    params = (checkpoint.get("model") or {}).get("params") or {}
    for name in (*FIXED, *ADJUSTABLE):
        section, field = name.split(".")
        if section == "model" and field in params:
            record[name] = params[field]
    return record


def check_stored_settings(stored: dict[str, Any] | None, settings: Settings,
                          where: str = "the store") -> list[str]:
    """Compare the store's record with ``settings``.

    Returns the adjustable settings whose value changes (to apply and record). Raises
    :class:`StoredSettingsMismatch` naming every fixed setting that differs. A store
    without a record (new, or written before records existed) accepts any settings.
    """
    if not stored:
        return []
    current = settings_record(settings)
    problems = [
        f"{name} is {stored[name]!r} in {where}, {current[name]!r} in this run: {FIXED[name]}"
        for name in FIXED if name in stored and stored[name] != current[name]
    ]
    if problems:
        raise StoredSettingsMismatch(
            "the settings differ from those the store was written with, and cannot change "
            "on an existing store (nothing was written):\n  " + "\n  ".join(problems))
    return [name for name in ADJUSTABLE if name in stored and stored[name] != current[name]]


def apply_adjustable(model: Any, settings: Settings) -> None:
    """Give a model restored from a checkpoint (which carries the values it was built
    with) the adjustable settings of this run."""
    adjust = getattr(model, "adjust", None)
    if adjust is None:
        return  # a model kind without adjustable parameters (river-kmeans)
    adjust(**{name.split(".")[1]: getattr(settings.model, name.split(".")[1])
              for name in ADJUSTABLE if name.startswith("model.")})
