"""``streamseg evaluate`` and the read commands on SQLite: the measures, the k sweep on
simulated archetypes, the file left untouched, and each disagreement a one-line error."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from streamseg_bench.simulate import write_stream

STREAMSEG = [sys.executable, "-m", "streamseg.cli"]


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*STREAMSEG, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def archetypes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 customers of the simulator's five archetypes, run into a SQLite store."""
    folder = tmp_path_factory.mktemp("evaluate")
    write_stream(folder / "events.jsonl", 1500, 1)
    result = _cli(["run", "--source", "events.jsonl", "--store", "sqlite:///state.db",
                   "--sink", "changes.jsonl", "--dead-letter", "dead.jsonl", "--no-progress"],
                  folder)
    assert result.returncode == 0, result.stderr
    return folder


def _digest(folder: Path) -> tuple[str, int]:
    """The database file's bytes, and the size of its write-ahead log: a reader may
    leave SQLite's shared-memory index and an empty log behind (WAL mode needs them to
    read), never a transaction."""
    wal = folder / "state.db-wal"
    return (hashlib.sha256((folder / "state.db").read_bytes()).hexdigest(),
            wal.stat().st_size if wal.exists() else 0)


def test_the_k_sweep_recommends_five_on_five_archetypes(archetypes: Path) -> None:
    before = _digest(archetypes)
    result = _cli(["evaluate", "--store", "sqlite:///state.db", "--k", "2..10", "--json"],
                  archetypes)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["recommended_k"] == 5, out
    sweep = {p["k"]: p for p in out["k_sweep"]}
    assert sorted(sweep) == list(range(2, 11))
    assert max(sweep.values(), key=lambda p: p["silhouette"])["k"] == 5
    assert "highest mean silhouette" in out["why"]
    assert out["sample"]["exact"] and out["sample"]["customers"] == 1500
    # The live segments are close to a batch fit on these well-separated customers.
    assert out["inertia_ratio"] < 1.2 and out["stability_ari"] > 0.8
    assert _digest(archetypes) == before  # nothing written


def test_evaluate_on_a_sample_says_so(archetypes: Path) -> None:
    result = _cli(["evaluate", "--store", "sqlite:///state.db", "--sample", "300"], archetypes)
    assert result.returncode == 0, result.stderr
    assert "a uniform random sample of 300 of 1,500 customers" in result.stdout
    assert "silhouette" in result.stdout and "stability (ARI live-batch)" in result.stdout


def test_the_measures_are_scikit_learns_on_the_recomputed_vectors(archetypes: Path) -> None:
    from sklearn import metrics as sk

    from streamseg.config import load_settings
    from streamseg.evaluate import draw_sample, evaluate
    from streamseg.read import open_view

    settings = load_settings(overrides={"store": {"uri": f"sqlite:///{archetypes / 'state.db'}"}})
    view = open_view(settings)
    try:
        sample = draw_sample(view, 400, seed=3)
        result = evaluate(view, sample, seed=3)
        state = view.store.get(sample.ids[0])
        assert state is not None
        # Each customer's features at the service clock, with the current standardiser.
        snapshot = settings.features.snapshot(state.features, view.now())
        first = (snapshot.raw_vector() - view.scaler.mean) / view.scaler.std
    finally:
        view.close()
    x, y = sample.vectors, sample.segments
    assert x.shape == (400, 6)
    assert abs(x[0] - first).max() < 1e-6
    assert result.live["silhouette"] == pytest.approx(sk.silhouette_score(x, y), abs=1e-6)
    assert result.live["davies_bouldin"] == pytest.approx(sk.davies_bouldin_score(x, y),
                                                          abs=1e-6)
    assert result.live["calinski_harabasz"] == pytest.approx(
        sk.calinski_harabasz_score(x, y), rel=1e-9)


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    source = sqlite3.connect(folder / "state.db")
    target = sqlite3.connect(tmp_path / "state.db")
    source.backup(target)
    source.close()
    target.close()
    shutil.copy(folder / "events.jsonl", tmp_path / "events.jsonl")
    return tmp_path


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_missing_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    for command in (["segments"], ["get", "x"], ["export"], ["report"], ["evaluate"]):
        line = _one_line_error(_cli([*command, "--store", "sqlite:///none.db"], tmp_path))
        assert "no store at none.db" in line
    assert list(tmp_path.iterdir()) == [] or not (tmp_path / "none.db").exists()


def test_settings_that_disagree_with_the_store_are_an_error(archetypes: Path,
                                                            tmp_path: Path) -> None:
    folder = _copy(archetypes, tmp_path)
    line = _one_line_error(_cli(["segments", "--store", "sqlite:///state.db"], folder,
                                {"STREAMSEG_MODEL__N_CLUSTERS": "6"}))
    assert "model.n_clusters is 5 in sqlite:///state.db, 6 in this run" in line
    assert "streamseg reseed --k N" in line


def test_an_interrupted_reseed_is_an_error(archetypes: Path, tmp_path: Path) -> None:
    folder = _copy(archetypes, tmp_path)
    db = sqlite3.connect(folder / "state.db")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('reseed', ?)", (json.dumps({"k": 6}),))
    db.commit()
    db.close()
    for command in (["segments"], ["evaluate"], ["get", "x"]):
        line = _one_line_error(_cli([*command, "--store", "sqlite:///state.db"], folder))
        assert "run `streamseg reseed --k 6` again" in line


def test_customers_in_segments_the_model_lacks_are_an_error(archetypes: Path,
                                                            tmp_path: Path) -> None:
    folder = _copy(archetypes, tmp_path)
    db = sqlite3.connect(folder / "state.db")
    db.execute("UPDATE customers SET state = json_set(state, '$.segment', 9)")
    db.commit()
    db.close()
    line = _one_line_error(_cli(["evaluate", "--store", "sqlite:///state.db"], folder))
    assert "segment(s) [9]" in line and "model has 5 segments" in line


def test_a_store_of_the_previous_version_is_an_error_and_stays_as_it_was(
        tmp_path: Path) -> None:
    import gzip

    fixture = Path(__file__).parents[1] / "engine" / "data" / "store_before_shares.sqlite.gz"
    (tmp_path / "state.db").write_bytes(gzip.decompress(fixture.read_bytes()))
    before = _digest(tmp_path)
    for command in (["segments"], ["evaluate"], ["export"], ["get", "x"]):
        line = _one_line_error(_cli([*command, "--store", "sqlite:///state.db"], tmp_path))
        assert "earlier version of streamseg" in line and "upgrade" in line
    assert _digest(tmp_path) == before  # the reader upgraded nothing


def test_customer_rows_gone_from_a_sqlite_store_are_an_error(archetypes: Path,
                                                             tmp_path: Path) -> None:
    folder = _copy(archetypes, tmp_path)
    db = sqlite3.connect(folder / "state.db")
    db.execute("DELETE FROM customers")
    db.commit()
    db.close()
    for command in (["segments"], ["export"], ["get", "cust-000001"], ["evaluate"]):
        line = _one_line_error(_cli([*command, "--store", "sqlite:///state.db"], folder))
        assert "counts 1500 customers in its partitions" in line, line
