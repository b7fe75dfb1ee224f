"""The model's random generator as JSON: a restored model must draw the same numbers.

>>> import json
>>> rng = np.random.default_rng(7)
>>> _ = rng.random(3)
>>> restored = rng_from_state(json.loads(json.dumps(rng_to_state(rng))))
>>> restored.random() == rng.random()
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["rng_from_state", "rng_to_state"]


def rng_to_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of a PCG64 generator as a JSON-serialisable dict."""
    st = rng.bit_generator.state
    # PCG64's 128-bit integers are written as strings: not every JSON reader keeps
    # integers that large exact.
    return {
        "bit_generator": st["bit_generator"],
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A generator in the state :func:`rng_to_state` recorded."""
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"unsupported bit generator {state['bit_generator']!r}")
    bit_gen = np.random.PCG64()
    bit_gen.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(state["state"]), "inc": int(state["inc"])},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }
    return np.random.Generator(bit_gen)
