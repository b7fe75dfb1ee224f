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
    """Events/s on the embedded default and on a larger simulated file, ``repeat`` runs each,
    with the predictive traits (the default) and without (``traits.enabled: false``).

    Runs of the inputs and variants alternate, so a slow spell of a shared machine hits
    all of them; ``traits_cost`` compares the best runs with and without traits.
    """
    results: dict[str, Any] = defaultdict(list)
    variants = (("", None), ("_no_traits", {"traits": {"enabled": False}}))
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "simulated.jsonl"
        count, _ = write_stream(events, customers=simulated_customers, seed=7)
        inputs = (("embedded_default_cdnow", SAMPLE_URI),
                  (f"simulated_{count}_events", str(events)))
        for attempt in range(repeat):
            for label, source in inputs:
                for suffix, overrides in variants:
                    folder = Path(tmp) / f"{label}{suffix}-{attempt}"
                    folder.mkdir()
                    summary, _ = run_file(source, folder, overrides)
                    results[label + suffix].append(round(summary.events_per_second))
    report: dict[str, Any] = {label: {"events_per_second_runs": runs, "best": max(runs)}
                              for label, runs in results.items()}
    report["traits_cost"] = {
        label: {"with_over_without": round(max(results[label])
                                           / max(results[label + "_no_traits"]), 3)}
        for label, _ in inputs}
    return report
