"""The interface every model offers (streamseg.model.base)."""

from __future__ import annotations

import numpy as np

from streamseg.model import Assignment


def test_assignment_equality() -> None:
    a = Assignment("k", 1, np.array([1.0, 2.0]), False)
    assert a == Assignment("k", 1, np.array([1.0, 2.0]), False)
    assert a != Assignment("k", 1, np.array([1.0, 2.5]), False)
    assert a != Assignment("k", 1, np.array([1.0, 2.0]), True)

