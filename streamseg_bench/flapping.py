"""How often customers change segment when nothing changes (``streamseg bench flapping``).

A stationary simulated stream (nobody starts or stops buying) should settle: after the
first half, a customer who keeps changing segment is flapping between two centres.
:func:`flapping` measures the share of such customers with and without hysteresis.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from streamseg.core.events import CHANGE_EVENT_TYPE
from streamseg_bench.common import run_file
from streamseg_bench.simulate import ARCHETYPES, STREAM_END, Archetype, simulate_stream

#: Archetypes whose behaviour does not change over the stream: nobody starts or stops.
STATIONARY: dict[str, Archetype] = {
    name: Archetype(kind.days_between_orders, kind.order_value, (360, 365), (0, 0),
                    kind.refund_rate)
    for name, kind in ARCHETYPES.items() if name in ("vip", "regular", "bargain")
} | {
    "occasional": Archetype(45, 30.0, (360, 365), (0, 0)),
    "big_ticket": Archetype(60, 400.0, (360, 365), (0, 0)),
}


def flapping_share(changes_path: Path, midpoint: float) -> dict[str, Any]:
    """Share of customers with more than two changes after ``midpoint`` (epoch seconds).

    ``changes_path`` is a JSON Lines file of segment-change CloudEvents; first
    assignments are not changes.
    """
    per_customer: Counter[str] = Counter()
    customers: set[str] = set()
    reasons: Counter[str] = Counter()
    for line in changes_path.read_text().splitlines():
        event = json.loads(line)
        if event["type"] != CHANGE_EVENT_TYPE:
            continue  # a risk band's change, not a segment's
        data = event["data"]
        customers.add(data["customer_id"])
        if data["reason"] == "first_assignment":
            continue
        if datetime.fromisoformat(data["event_time"]).timestamp() >= midpoint:
            per_customer[data["customer_id"]] += 1
            reasons[data["reason"]] += 1
    flapping = sum(1 for n in per_customer.values() if n > 2)
    return {
        "customers": len(customers),
        "changes_second_half": sum(per_customer.values()),
        "customers_over_two_changes": flapping,
        "share_over_two_changes": round(flapping / max(1, len(customers)), 4),
        "by_reason": dict(reasons),
    }


def flapping(customers: int = 2000, seed: int = 3,
             hysteresis: Iterable[float] = (0.0, 0.1, 0.2)) -> dict[str, Any]:
    """Flapping on a stationary simulated stream, for each hysteresis margin."""
    events, _ = simulate_stream(customers=customers, seed=seed, archetypes=STATIONARY)
    midpoint = (STREAM_END - timedelta(days=182)).timestamp()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "stationary.jsonl"
        source.write_text("".join(json.dumps(e) + "\n" for e in events))
        for margin in hysteresis:
            folder = Path(tmp) / f"h{margin}"
            folder.mkdir()
            run_file(str(source), folder, {"model": {"hysteresis": margin}})
            results[f"hysteresis_{margin}"] = flapping_share(folder / "changes.jsonl", midpoint)
    return results
