"""Events/s of the pipeline on files (``streamseg bench throughput``).

It prints what it measures; nothing asserts on speed, which depends on the machine.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from streamseg.config import SAMPLE_URI
from streamseg_bench.common import run_file
from streamseg_bench.simulate import write_stream


def throughput(repeat: int = 3, simulated_customers: int = 5000) -> dict[str, Any]:
    """Events/s on the embedded default and on a larger simulated file, ``repeat`` runs each.

    Runs of the two inputs alternate, so a slow spell of a shared machine hits both.
    """
    results: dict[str, Any] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "simulated.jsonl"
        count, _ = write_stream(events, customers=simulated_customers, seed=7)
        for attempt in range(repeat):
            for label, source in (("embedded_default_cdnow", SAMPLE_URI),
                                  (f"simulated_{count}_events", str(events))):
                folder = Path(tmp) / f"{label}-{attempt}"
                folder.mkdir()
                summary, _ = run_file(source, folder)
                results[label].append(round(summary.events_per_second))
    return {label: {"events_per_second_runs": runs, "best": max(runs)}
            for label, runs in results.items()}
