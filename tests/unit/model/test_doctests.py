"""Every docstring example of the model package (and the quality measures) runs."""

from __future__ import annotations

import doctest

import pytest

import streamseg.model as model_pkg
from streamseg.model import base as model_base
from streamseg.model import (
    batch,
    clustering,
    hysteresis,
    kmeans_state,
    learner,
    refinement,
    river_kmeans,
    rng,
    sample,
    stats,
)
from streamseg.model import customer_kmeans as ck
from streamseg_bench import measures as quality

MODULES = [
    model_pkg, model_base, ck, river_kmeans, quality,
    batch, hysteresis, kmeans_state, learner, clustering, refinement, sample, rng, stats,
]


@pytest.mark.parametrize(
    "module", MODULES, ids=lambda m: m.__name__
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
