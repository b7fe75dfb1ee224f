"""A synthetic stream of customer archetypes, with the ground truth, for tests and demos.

Each customer belongs to one archetype that fixes how often they buy, how much they
spend, when they started and whether they stopped. Events come out sorted by time, as a
live stream would; the truth maps each customer id to its archetype.

>>> events, truth = simulate_stream(customers=50, seed=1)
>>> sorted(set(truth.values())) == sorted(ARCHETYPES)
True
>>> all(a["timestamp"] <= b["timestamp"] for a, b in zip(events, events[1:]))
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Archetype:
    """How one kind of customer behaves (days relative to the end of the stream)."""

    days_between_orders: float  # mean gap between orders
    order_value: float  # median order value
    start_days_ago: tuple[float, float]  # first purchase, uniform in this range
    stop_days_ago: tuple[float, float]  # last possible purchase, uniform in this range
    refund_rate: float = 0.0


#: The default archetypes: well separated in recency, frequency, spend and tenure.
ARCHETYPES: dict[str, Archetype] = {
    "vip": Archetype(8, 250.0, (330, 360), (0, 3)),
    "regular": Archetype(20, 45.0, (300, 360), (0, 10)),
    "new": Archetype(12, 60.0, (10, 25), (0, 2)),
    "bargain": Archetype(12, 8.0, (250, 360), (0, 10), refund_rate=0.15),
    "lapsed": Archetype(25, 70.0, (330, 365), (150, 220)),
}

STREAM_END = datetime(2024, 12, 31, tzinfo=UTC)

#: The archetypes compressed into 60 days of event time (the integration tests' and
#: ``streamseg bench scale``'s streams): with the default re-scoring waits (1-14 days)
#: idle customers are re-scored many times over the stream, as in production. About 20
#: events a customer.
SIXTY_DAYS: dict[str, Archetype] = {
    "vip": Archetype(0.8, 250.0, (55, 60), (0, 1)),
    "regular": Archetype(3.0, 45.0, (50, 60), (0, 3)),
    "new": Archetype(1.5, 60.0, (5, 12), (0, 1)),
    "bargain": Archetype(1.6, 8.0, (45, 60), (0, 3), refund_rate=0.15),
    "lapsed": Archetype(3.0, 70.0, (55, 60), (25, 40)),
}


def simulate_stream(
    customers: int = 1000,
    seed: int = 0,
    archetypes: dict[str, Archetype] | None = None,
    end: datetime = STREAM_END,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Generate ``(events, truth)``; events are JSON-ready dicts sorted by time."""
    kinds = archetypes or ARCHETYPES
    rng = np.random.default_rng(seed)
    names = list(kinds)
    events: list[dict[str, Any]] = []
    truth: dict[str, str] = {}
    for index in range(customers):
        name = names[index % len(names)]
        kind = kinds[name]
        customer_id = f"cust-{index:06d}"
        truth[customer_id] = name
        start = rng.uniform(*kind.start_days_ago)
        stop = rng.uniform(*kind.stop_days_ago)
        day = start
        order = 0
        while day >= stop:
            amount = float(np.round(kind.order_value * rng.lognormal(0.0, 0.25), 2))
            when = end - timedelta(days=day)
            events.append(_event(customer_id, order, when, amount, "purchase"))
            if kind.refund_rate and rng.random() < kind.refund_rate:
                refund_at = when + timedelta(days=float(rng.uniform(1, 5)))
                if refund_at <= end:
                    events.append(_event(customer_id, order, refund_at, amount, "refund"))
            order += 1
            day -= rng.exponential(kind.days_between_orders) + 0.5
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return events, truth


def _event(
    customer_id: str, order: int, when: datetime, amount: float, kind: str
) -> dict[str, Any]:
    return {
        "event_id": f"{customer_id}-{order}-{kind[0]}",
        "customer_id": customer_id,
        "timestamp": when.isoformat(),
        "amount": amount,
        "type": kind,
    }


#: The archetype sets a stream can be drawn from, by name.
ARCHETYPE_SETS: dict[str, dict[str, Archetype]] = {"default": ARCHETYPES,
                                                   "sixty-days": SIXTY_DAYS}


def write_stream(
    out: str | Path, customers: int, seed: int, truth_path: str | Path | None = None,
    archetypes: str = "default",
) -> tuple[int, Path]:
    """Write events as JSON Lines to ``out`` and the truth as CSV; return (events, truth
    path). ``archetypes``: a name of :data:`ARCHETYPE_SETS`."""
    events, truth = simulate_stream(customers=customers, seed=seed,
                                    archetypes=ARCHETYPE_SETS[archetypes])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
    truth_file = Path(truth_path) if truth_path else out.with_suffix(".truth.csv")
    with truth_file.open("w", encoding="utf-8") as handle:
        handle.write("customer_id,archetype\n")
        for customer_id, name in truth.items():
            handle.write(f"{customer_id},{name}\n")
    return len(events), truth_file


def read_truth(path: str | Path) -> dict[str, str]:
    """Read a truth CSV written by :func:`write_stream`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.split(",", 1) for line in lines if line)
