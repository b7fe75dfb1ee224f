"""The report's words: durations, amounts, segment descriptions, axis labels."""

from __future__ import annotations

import numpy as np
import pytest

from streamseg.core.features import VECTOR_FIELDS
from streamseg.report.words import (
    PALETTE,
    axis_words,
    colour,
    describe,
    duration,
    metric_text,
    money,
)

from ._data import profile


@pytest.mark.parametrize(("days", "words"), [
    (0.2, "less than a day"), (0.5, "1 day"), (1.4, "1 day"), (1.5, "2 days"),
    (59.0, "59 days"), (60.0, "2 months"), (364.0, "12 months"), (365.25, "1.0 years"),
])
def test_duration_in_the_unit_a_person_would_use(days: float, words: str) -> None:
    assert duration(days) == words


def test_money_shows_cents_only_below_ten() -> None:
    assert money(9.5, "$") == "$9.50"
    assert money(10.0, "€") == "€10"
    assert money(12_345.6, "$") == "$12,346"
    assert money(-12.0, "$") == "$-12"


def test_metric_text_by_kind_of_metric() -> None:
    assert metric_text(1234.4, "spend_90d", "$") == "$1,234"
    assert metric_text(1234.4, "tenure_days", "$") == "1,234"
    assert metric_text(1.234, "orders_90d", "$") == "1.23"


def test_colour_is_the_segments_wherever_it_is_shown() -> None:
    assert colour(0) == PALETTE[0]
    assert colour(len(PALETTE) + 2) == colour(2)  # more segments than colours: they repeat


def test_describe_rare_buyers_and_unknown_spend_share() -> None:
    rare = profile(0, spend=12.0)
    rare.orders_90d = 0.5
    text = describe(rare, "Occasional", None, "$")
    assert text.startswith("Occasional: 50% of customers (10). ")
    assert "bringing" not in text
    assert "about one order every 6 months ($12 per 90 days)" in text
    rare.orders_90d = 0.01
    assert "hardly any recent orders" in describe(rare, "Lapsed", 0.0, "$")


def test_axis_words_name_the_two_main_loadings_with_fitting_directions() -> None:
    def loadings(**weights: float) -> np.ndarray:
        return np.array([weights.get(name, 0.0) for name in VECTOR_FIELDS])

    assert axis_words(loadings(log_overdue_days=0.9, log_orders_90d=-0.4)) == (
        "longer days overdue, fewer orders/90d")
    assert axis_words(loadings(log_spend_90d=-0.8, log_orders_90d=0.5, refund_share=0.1)) == (
        "less spend/90d, more orders/90d")
    assert axis_words(loadings(refund_share=1.0)) == "more refund share"  # one real loading
    assert axis_words(loadings()) == ""
    extra = np.append(loadings(), -1.0)  # a coordinate the vector does not name
    assert axis_words(extra) == f"less coordinate {len(VECTOR_FIELDS)}"
