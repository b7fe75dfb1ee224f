"""A small run of `streamseg bench traits`, so that a broken benchmark shows.

One cutoff, the first 400 customers of the sample: the replay, the read of the store's
traits, BG/NBD and the baseline, scored against outcomes counted here independently.
"""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from streamseg.cli import app
from streamseg.config import SAMPLE_PATH
from streamseg_bench import traits

CUTOFF = date(1997, 9, 30)


def day(row: dict[str, str]) -> date:
    return date(int(row["date"][:4]), int(row["date"][4:6]), int(row["date"][6:]))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict[str, str]]]:
    source = tmp_path_factory.mktemp("traits") / "slice.csv"
    with SAMPLE_PATH.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["customer_id"]) <= 400]
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return traits.run(source=source, cutoffs=[CUTOFF]), rows


def test_small_run_counts_customers_and_outcomes_of_the_cutoff(small_run) -> None:
    result, rows = small_run
    (entry,) = result["cutoffs"]
    seen = {row["customer_id"] for row in rows if day(row) <= CUTOFF}
    later = [row for row in rows
             if CUTOFF < day(row) <= CUTOFF + timedelta(days=90) and row["customer_id"] in seen]
    assert entry["cutoff"] == "1997-09-30" and result["horizon_days"] == 90
    assert entry["customers"] == len(seen) == 400
    assert entry["events_up_to_cutoff"] == sum(day(row) <= CUTOFF for row in rows)
    assert entry["buyers"] == len({row["customer_id"] for row in later})
    assert entry["mean_spend"] == pytest.approx(
        sum(float(row["amount"]) for row in later) / 400, abs=1e-4)


def test_small_run_scores_bgnbd_and_the_recency_baseline(small_run) -> None:
    result, _ = small_run
    methods = result["cutoffs"][0]["methods"]
    bg, recency = methods["bgnbd"], methods["recency"]
    # Both rank buyers well above chance on CDNOW (recency alone is a strong baseline).
    assert 0.6 < bg["purchase_auc"] <= 1 and 0.6 < recency["purchase_auc"] <= 1
    assert 0 <= bg["purchase_ece"] < 0.1
    assert bg["spend_rmse"] > 0 and 0 < bg["spend_spearman"] <= 1
    assert recency["purchase_ece"] is None and recency["spend_rmse"] is None
    assert bg["gamma_gamma_customers"] > 0


def test_small_run_scores_the_services_traits(small_run) -> None:
    # The streamseg column: every customer's traits read back from `streamseg export`.
    result, _ = small_run
    entry = result["cutoffs"][0]
    ours = entry["methods"]["streamseg"]
    assert "error" not in ours, ours
    assert ours["replayed_events"] == entry["events_up_to_cutoff"]
    assert 0.6 < ours["purchase_auc"] <= 1
    assert 0 <= ours["purchase_ece"] < 0.1
    assert ours["spend_rmse"] > 0 and 0 < ours["spend_spearman"] <= 1
    assert 0 < ours["mean_probability"] < 1 and ours["mean_expected_spend"] > 0
    assert set(entry["targets"]) == {"auc_at_least_bgnbd", "spend_rmse_at_most_bgnbd_gg",
                                     "ece_at_most_0.03"}
    assert all(isinstance(met, bool) for met in entry["targets"].values())
    assert "error" not in traits.format_table(result)


def test_small_run_gives_each_gap_to_bgnbd_its_interval(small_run) -> None:
    # The differences are those of the table's columns, inside their own intervals.
    result, _ = small_run
    entry = result["cutoffs"][0]
    ours, theirs = entry["methods"]["streamseg"], entry["methods"]["bgnbd"]
    gaps = entry["intervals"]
    for key, name in (("purchase_auc", "auc_less_bgnbd"),
                      ("spend_rmse", "spend_rmse_less_bgnbd_gg")):
        gap = gaps[name]
        assert gap["value"] == pytest.approx(ours[key] - theirs[key], abs=2e-4)
        assert gap["low"] <= gap["value"] <= gap["high"] and gap["low"] < gap["high"]
    assert gaps["purchase_ece"]["value"] == pytest.approx(ours["purchase_ece"], abs=1e-4)
    assert f"AUC {gaps['auc_less_bgnbd']['value']:+.4f}" in traits.format_targets(result)


def test_a_store_without_traits_is_said_never_scored() -> None:
    documents = [{"customer_id": "1", "segment": 0, "traits": None},
                 {"customer_id": "2", "segment": 1}]
    with pytest.raises(traits.NoTraits, match="this store has no traits"):
        traits.traits_from_documents(documents, 90)


def test_the_table_shows_a_columns_error_instead_of_figures() -> None:
    missing = {"error": "this store has no traits (none of its 3 customers has any)"}
    scores = {"purchase_auc": 0.75, "purchase_ece": 0.02, "spend_rmse": 30.0,
              "spend_spearman": 0.3}
    result = {"customers": "seen", "outcome": "next 90 days", "horizon_days": 90, "cutoffs": [
        {"cutoff": "1998-06-01", "customers": 3, "buyers": 1, "outcome_days_observed": 29,
         "methods": {"streamseg": missing, "bgnbd": scores, "recency": scores},
         "targets": traits.targets({"streamseg": missing, "bgnbd": scores})}]}
    table = traits.format_table(result)
    assert "0.7500" in table and "error" in table
    assert "streamseg: this store has no traits" in table
    assert "outcomes observed for 29 of 90 days only" in table
    assert "not measured" in traits.format_targets(result)


def test_traits_for_another_horizon_are_refused() -> None:
    document = {"customer_id": "1", "traits": {"purchase_probability": 0.5,
                                               "expected_spend": 3.0, "horizon_days": 30}}
    with pytest.raises(traits.NoTraits, match="30"):
        traits.traits_from_documents([document], 90)


def test_targets_compare_with_bgnbd_and_the_calibration_bar() -> None:
    methods = {"streamseg": {"purchase_auc": 0.70, "purchase_ece": 0.05, "spend_rmse": 20.0},
               "bgnbd": {"purchase_auc": 0.75, "spend_rmse": 25.0}}
    assert traits.targets(methods) == {"auc_at_least_bgnbd": False,
                                       "spend_rmse_at_most_bgnbd_gg": True,
                                       "ece_at_most_0.03": False}


def test_cutoff_without_days_after_it_is_refused() -> None:
    with pytest.raises(ValueError, match="no days of the log after it"):
        traits.run(cutoffs=[date(1998, 6, 30)])


@pytest.mark.parametrize("cutoffs", ["1997-13-01", "", "30/06/1997"])
def test_cli_names_a_bad_cutoff(cutoffs: str) -> None:
    done = CliRunner().invoke(app, ["bench", "traits", "--cutoffs", cutoffs])
    assert done.exit_code == 2
    assert "--cutoffs" in done.output


def test_cli_prints_the_json_of_one_cutoff() -> None:
    done = CliRunner().invoke(app, ["bench", "traits", "--cutoffs", "1997-06-30", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    (entry,) = result["cutoffs"]
    assert entry["cutoff"] == "1997-06-30" and entry["customers"] == 2357
    assert set(entry["methods"]) == {"streamseg", "bgnbd", "recency"}
    assert not any("error" in method for method in entry["methods"].values())


def test_small_run_splits_the_spend_errors_by_orders(small_run) -> None:
    """The groups cover every customer once, and their squared errors add up to each
    method's RMSE."""
    result, rows = small_run
    entry = result["cutoffs"][0]
    groups = entry["spend_by_orders"]
    assert [g["orders"] for g in groups] == ["1", "2-4", "5-14", "15+"]
    assert sum(g["customers"] for g in groups) == entry["customers"]
    orders: dict[str, int] = {}
    for row in rows:
        if day(row) <= CUTOFF:
            orders[row["customer_id"]] = orders.get(row["customer_id"], 0) + 1
    assert groups[0]["customers"] == sum(n == 1 for n in orders.values())
    for method in ("streamseg", "bgnbd"):
        total = sum(g["methods"][method]["squared_error"] for g in groups if g["customers"])
        assert (total / entry["customers"]) ** 0.5 == pytest.approx(
            entry["methods"][method]["spend_rmse"], abs=1e-3)
