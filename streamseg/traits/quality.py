"""Progressive validation figures that add up over partitions.

Every labelled snapshot is predicted *before* the model learns it, so these figures are
honest estimates of the quality on unseen customers. They are kept as sums -- a
histogram of predicted probabilities with the positives and negatives in each bin, the
squared errors of the spend -- so that the figures of several partitions (several
workers) are those of the sum of their histograms, never an average of averages.

>>> q = Quality()
>>> for p, y in [(0.9, True), (0.8, True), (0.3, False), (0.1, False), (0.7, False)]:
...     q.update(p, y, 10.0 * p, 10.0 if y else 0.0)
>>> q.examples, round(q.auc(), 3), round(q.rmse(), 3)
(5, 1.0, 3.578)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BINS", "Quality"]

#: Bins of predicted probability (AUC ties within a bin count one half).
BINS = 100


@dataclass(slots=True)
class Quality:
    """Sums of progressive validation: per probability bin the positives, negatives and
    sum of predictions; the squared spend errors."""

    hist: np.ndarray = field(default_factory=lambda: np.zeros((BINS, 3)))
    spend_sse: float = 0.0

    @property
    def examples(self) -> int:
        return int(self.hist[:, :2].sum())

    def update(self, probability: float, bought: bool, predicted_spend: float,
               spend: float) -> None:
        row = self.hist[min(BINS - 1, max(0, int(probability * BINS)))]
        row[0 if bought else 1] += 1.0
        # Rounded as stored (short to write; a restored figure equals the one kept).
        row[2] = round(row[2] + probability, 6)
        self.spend_sse = round(self.spend_sse + (predicted_spend - spend) ** 2, 4)

    def add(self, other: Quality) -> None:
        self.hist += other.hist
        self.spend_sse += other.spend_sse

    def auc(self) -> float | None:
        """Area under the ROC curve (None until both classes were seen)."""
        pos, neg = self.hist[:, 0], self.hist[:, 1]
        if not pos.sum() or not neg.sum():
            return None
        below = np.cumsum(neg) - neg  # negatives in lower bins
        return float((pos * (below + neg / 2)).sum() / (pos.sum() * neg.sum()))

    def calibration_error(self, groups: int = 10) -> float | None:
        """Expected calibration error over ``groups`` groups of about equal size, in order
        of predicted probability (deciles, at the bins' resolution)."""
        n = self.hist[:, :2].sum(axis=1)
        total = n.sum()
        if not total:
            return None
        group = np.minimum(groups - 1, (np.cumsum(n) - n / 2) * groups // total).astype(int)
        error = 0.0
        for g in range(groups):
            rows = self.hist[group == g]
            count = rows[:, :2].sum()
            if count:
                error += abs(rows[:, 2].sum() - rows[:, 0].sum())  # |sum p - sum y|
        return float(error / total)

    def rmse(self) -> float | None:
        n = self.examples
        return math.sqrt(self.spend_sse / n) if n else None

    def summary(self) -> dict[str, Any]:
        """The figures (``None`` where not known yet)."""
        return {"examples": self.examples, "auc": self.auc(),
                "calibration_error": self.calibration_error(), "spend_rmse": self.rmse()}

    def to_json(self) -> dict[str, Any]:
        seen = np.flatnonzero(self.hist[:, :2].sum(axis=1))
        bins = ";".join(f"{b},{int(pos)},{int(neg)},{p!r}"
                        for b, (pos, neg, p) in zip(seen.tolist(), self.hist[seen].tolist(),
                                                    strict=True))
        return {"bins": bins, "spend_sse": self.spend_sse}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Quality:
        quality = cls()
        if data:
            for item in (data.get("bins") or "").split(";"):
                if item:
                    b, pos, neg, p = item.split(",")
                    quality.hist[int(b)] = (int(pos), int(neg), float(p))
            quality.spend_sse = float(data.get("spend_sse", 0.0))
        return quality
