"""Running the pipeline on a file and reading back what it stored."""

from __future__ import annotations

from pathlib import Path

from streamseg_bench.common import run_file, stored_vectors
from streamseg_bench.simulate import write_stream


def test_run_file_keeps_the_store_in_the_folder_and_merges_overrides(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    count, _ = write_stream(events, customers=60, seed=2)
    summary, settings = run_file(str(events), tmp_path,
                                 {"model": {"warmup": 20, "n_clusters": 3},
                                  "sinks": {"dead_letter": str(tmp_path / "rejected.jsonl")}})
    assert settings.store.uri == f"sqlite:///{tmp_path / 'state.db'}"
    assert settings.source.uri == str(events)
    assert settings.sinks.changes == str(tmp_path / "changes.jsonl")  # kept beside an override
    assert settings.sinks.dead_letter == str(tmp_path / "rejected.jsonl")
    assert settings.model.n_clusters == 3
    assert summary.processed == count
    assert (tmp_path / "state.db").is_file() and (tmp_path / "changes.jsonl").is_file()

    vectors, segments, centroids = stored_vectors(settings)
    assert set(vectors) == set(segments) and len(vectors) == 60
    assert centroids.shape == (3, len(next(iter(vectors.values()))))
    assert set(segments.values()) <= {0, 1, 2}
