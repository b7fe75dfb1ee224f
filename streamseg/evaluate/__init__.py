"""Judging a segmentation: measures in numpy (:mod:`.metrics`), the choice of k
(:mod:`.choice`), and ``streamseg evaluate`` over a store (:mod:`.evaluation`)."""

from streamseg.evaluate.choice import KPoint, parse_ks, recommend, sweep_k
from streamseg.evaluate.evaluation import (
    CustomerSample,
    Evaluation,
    draw_sample,
    evaluate,
    format_evaluation,
)

__all__ = ["CustomerSample", "Evaluation", "KPoint", "draw_sample", "evaluate",
           "format_evaluation", "parse_ks", "recommend", "sweep_k"]
