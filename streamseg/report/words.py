"""The report's words and colours: plain-language descriptions, units, segment colours.

>>> duration(400), money(1234.5, "$"), money(8.5, "€")
('1.1 years', '$1,234', '€8.50')
"""

from __future__ import annotations

import numpy as np

from streamseg.core.features import VECTOR_FIELDS
from streamseg.core.profiles import SegmentProfile

# Colour-blind-safe (Okabe-Ito, without its yellow, which vanishes on white), by segment
# id, so a segment has the same colour in every chart and in the table.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#882255",
           "#44AA99", "#332288", "#999999", "#117733", "#AA4499")

#: Metrics compared across segments, with the words a marketer reads them by.
METRICS: tuple[tuple[str, str], ...] = (
    ("recency_days", "Days since last purchase"),
    ("orders_90d", "Orders per 90 days"),
    ("spend_90d", "Spend per 90 days"),
    ("avg_order_value", "Average order value"),
    ("tenure_days", "Customer for (days)"),
)
MONEY_METRICS = {"spend_90d", "avg_order_value"}

#: Plain words for the model-space coordinates, to label the map's axes (a coordinate
#: not listed is named after its field).
_VECTOR_WORDS = {
    "log_recency_days": "days since last purchase",
    "log_overdue_days": "days overdue",
    "log_orders_90d": "orders/90d",
    "log_spend_90d": "spend/90d",
    "log_avg_order_value": "order value",
    "log_tenure_days": "tenure",
    "refund_share": "refund share",
}
# Coordinates where "more" reads badly ("more days overdue"): "longer"/"shorter" instead.
_DURATION_FIELDS = {"log_recency_days", "log_overdue_days"}


def colour(segment: int) -> str:
    """The segment's colour, the same in every chart and in the table."""
    return PALETTE[segment % len(PALETTE)]


def money(value: float, currency: str) -> str:
    """An amount, with cents only below ten."""
    return f"{currency}{value:,.0f}" if abs(value) >= 10 else f"{currency}{value:,.2f}"


def duration(days: float) -> str:
    """Days in the unit a person would use: "12 days", "5 months", "1.4 years"."""
    if days < 1.5:
        return "1 day" if days >= 0.5 else "less than a day"
    if days < 60:
        return f"{days:.0f} days"
    if days < 365:
        return f"{days / 30.44:.0f} months"
    return f"{days / 365.25:.1f} years"


def describe(profile: SegmentProfile, name: str, spend_share: float | None,
             currency: str) -> str:
    """One segment in plain words, e.g. for a briefing.

    >>> p = SegmentProfile(0, 193, 0.082, 20, 1.62, 53.8, 30.55, 502, 0.0, name="VIP")
    >>> print(describe(p, "VIP", 0.52, "$"))  # doctest: +NORMALIZE_WHITESPACE
    VIP: 8% of customers (193), bringing 52% of recent spend. They last bought 20 days
    ago; 1.6 orders and $54 per 90 days; $31 per order; customers for 1.4 years.
    """
    parts = [f"They last bought {duration(profile.recency_days)} ago"]
    if profile.orders_90d >= 1:
        parts.append(f"{profile.orders_90d:.1f} orders and "
                     f"{money(profile.spend_90d, currency)} per 90 days")
    elif profile.orders_90d >= 0.05:
        parts.append(f"about one order every {duration(90 / profile.orders_90d)} "
                     f"({money(profile.spend_90d, currency)} per 90 days)")
    else:
        parts.append("hardly any recent orders")
    parts.append(f"{money(profile.avg_order_value, currency)} per order")
    parts.append(f"customers for {duration(profile.tenure_days)}")
    who = f"{name}: {profile.share:.0%} of customers ({profile.size:,})"
    if spend_share is not None:
        who += f", bringing {spend_share:.0%} of recent spend"
    return f"{who}. " + "; ".join(parts) + "."


def axis_words(loadings: np.ndarray) -> str:
    """What moving right (or up) on a principal axis means, from its two main loadings."""
    order = np.argsort(-np.abs(loadings))[:2]
    words = []
    for index in order:
        if abs(loadings[index]) < 1e-9:
            continue
        name = VECTOR_FIELDS[index] if index < len(VECTOR_FIELDS) else f"coordinate {index}"
        if name in _DURATION_FIELDS:
            direction = "longer" if loadings[index] > 0 else "shorter"
        elif name.startswith("log_orders"):  # a count: "fewer", not "less"
            direction = "more" if loadings[index] > 0 else "fewer"
        else:
            direction = "more" if loadings[index] > 0 else "less"
        word = _VECTOR_WORDS.get(name) or name.removeprefix("log_").replace("_", " ")
        words.append(f"{direction} {word}")
    return ", ".join(words)


def metric_text(value: float, metric: str, currency: str) -> str:
    """A metric's value as its bar is labelled: money, whole days or two decimals."""
    if metric in MONEY_METRICS:
        return money(value, currency)
    if metric.endswith("_days"):
        return f"{value:,.0f}"
    return f"{value:.2f}"
