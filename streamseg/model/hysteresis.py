"""The hysteresis rule: when a customer keeps its old segment.

A customer already in segment ``s`` whose vector is now nearest to another centroid
``b`` moves only if ``b`` is nearer by a relative margin:
``dist(x, c_b) < (1 - hysteresis) * dist(x, c_s)``. Without it, a customer sitting on
the border between two segments would flap between them with every small change.

Every path that re-assigns customers applies this one rule: the one-customer update,
the mini-batch update (both after the customer's old vector has left its old segment,
so that it does not pull ``c_s`` towards itself: leave-one-out) and Lloyd iterations
at refinement. They compare *squared* distances, so the margin is squared too.

Each caller decides when the rule applies (for instance only for customers that have
an old segment, or only when ``hysteresis > 0``); this module only says whether a
customer keeps its old segment.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from streamseg.model.stats import BoolArray, FloatArray

__all__ = ["keeps_old_segment"]


@overload
def keeps_old_segment(d2_nearest: float, d2_old: float, hysteresis: float) -> bool: ...


@overload
def keeps_old_segment(
    d2_nearest: FloatArray, d2_old: FloatArray, hysteresis: float
) -> BoolArray: ...


def keeps_old_segment(
    d2_nearest: float | FloatArray, d2_old: float | FloatArray, hysteresis: float
) -> bool | BoolArray:
    """Whether a customer stays in its old segment rather than move to the nearest one.

    ``d2_nearest`` and ``d2_old`` are squared distances from the customer's vector to the
    nearest centroid and to its old segment's centroid (scalars, or arrays of one entry
    per customer). The customer keeps its old segment unless
    ``d2_nearest < (1 - hysteresis) ** 2 * d2_old``.

    >>> keeps_old_segment(4.0, 5.0, 0.3)   # nearer, but not by 30%: dist 2.0 vs 0.7 * 2.24
    True
    >>> keeps_old_segment(1.0, 5.0, 0.3)   # dist 1.0 < 0.7 * 2.24: it moves
    False
    >>> keeps_old_segment(np.array([4.0, 1.0]), np.array([5.0, 5.0]), 0.3).tolist()
    [True, False]

    A tie keeps the old segment, even with ``hysteresis`` 0:

    >>> keeps_old_segment(5.0, 5.0, 0.0)
    True
    """
    margin = (1.0 - hysteresis) ** 2  # the margin is on distances, not d^2
    keep = np.logical_not(np.less(d2_nearest, margin * d2_old))
    if isinstance(keep, np.ndarray):
        return keep
    return bool(keep)
