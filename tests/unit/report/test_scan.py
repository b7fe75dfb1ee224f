"""Reading the store into the report's data: the scan, the clock, the names, the URI."""

from __future__ import annotations

import pytest

from streamseg.config import load_settings
from streamseg.core.features import SECONDS_PER_DAY, CustomerFeatures
from streamseg.core.state import CustomerState
from streamseg.read import ReadView
from streamseg.report.scan import CustomerScan, read_report_data, redact_uri
from streamseg.store import BatchWrite, MemoryStore, PartitionWrite, ReadOnlyStore

DAY = SECONDS_PER_DAY


def _state(index: int, segment: int | None, spend: float = 10.0, vector: bool = True,
           purchases: bool = True) -> CustomerState:
    features = CustomerFeatures.empty()
    if purchases:
        features.apply(0.0, spend, "purchase", half_life_days=90.0)
    return CustomerState(f"c{index}", features, segment=segment,
                         vector=[float(index), 0.0] if vector else None)


def test_scan_passes_every_state_through_and_notes_what_the_report_needs() -> None:
    states = [_state(0, 0, spend=30.0), _state(1, 1, spend=10.0), _state(2, None),
              _state(3, 1, spend=20.0, vector=False), _state(4, 0, purchases=False)]
    scan = CustomerScan(states, 10 * DAY, 90.0, sample=10, seed=0)
    assert [s.customer_id for s in scan] == ["c0", "c1", "c2", "c3", "c4"]
    assert len(scan.rows) == 3  # segmented customers with purchases
    shares = scan.spend_shares()
    assert set(shares) == {0, 1} and shares[0] == pytest.approx(0.5)
    assert sum(shares.values()) == pytest.approx(1.0)
    # The sample: segmented customers with a vector, purchases or not, in store order.
    assert scan.seen == 3
    assert scan.reservoir == [(0, [0.0, 0.0]), (1, [1.0, 0.0]), (0, [4.0, 0.0])]
    medians = scan.population_medians()
    assert medians["tenure_days"] == 10.0 and medians["recency_days"] == 10.0


def test_scan_samples_uniformly_with_a_bounded_reservoir() -> None:
    states = [_state(i, i % 3) for i in range(200)]

    def draw(seed: int) -> list[float]:
        scan = CustomerScan(states, DAY, 90.0, sample=20, seed=seed)
        list(scan)
        assert scan.seen == 200 and len(scan.reservoir) == 20
        return [vector[0] for _, vector in scan.reservoir]

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)
    assert max(draw(0)) >= 20  # later customers get in too, not only the first twenty


def test_scan_of_nothing() -> None:
    scan = CustomerScan([], 0.0, 90.0, sample=0, seed=0)
    assert list(scan) == []
    assert scan.spend_shares() == {} and scan.population_medians() == {}
    empty_sample = CustomerScan([_state(0, 0)], DAY, 90.0, sample=0, seed=0)
    list(empty_sample)
    assert empty_sample.reservoir == [] and empty_sample.seen == 1


def test_report_data_takes_the_clock_and_names_from_the_store_metadata() -> None:
    store = MemoryStore()
    history = [{"time": 5 * DAY, "sizes": {"0": 1, "1": 1}}]
    states = [_state(0, 0, spend=5.0), _state(1, 1, spend=50.0)]
    store.write_batch(BatchWrite([PartitionWrite(store.take_partition("local"), states)], meta={
        "watermark": 30 * DAY,
        "segments": [{"segment": 1, "name": "Big spenders"}, {"segment": 0, "name": ""}],
        "size_history": history,
    }))
    settings = load_settings(overrides={"store": {"uri": "redis://app:pw@cache:6379/0"}})
    data = read_report_data(settings, ReadView(settings, ReadOnlyStore(store)), sample=5,
                            seed=0, currency="€")
    assert data.now == 30 * DAY
    assert data.names == {1: "Big spenders"}  # an empty name is no name
    assert data.name(0) == "Segment 0" and data.name(1) == "Big spenders"
    assert [p.segment for p in data.profiles] == [1, 0]  # highest spend first
    assert data.profiles[0].recency_days == 30.0
    assert data.history == history
    assert data.sampled_from == 2 and sorted(data.sample_segments) == [0, 1]
    assert data.sample_vectors.shape == (2, 2)
    assert data.centroids is None  # no model yet
    assert data.store_uri == "redis://app:***@cache:6379/0"
    assert data.currency == "€"


def test_redact_uri_keeps_what_is_not_a_secret() -> None:
    assert redact_uri("redis://app@cache:6379/0") == "redis://app@cache:6379/0"
    assert redact_uri("redis://app:p@ss@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redact_uri("redis://cache/0?db=2&Passphrase=x") == (
        "redis://cache/0?db=2&Passphrase=%2A%2A%2A")
    assert redact_uri("memory://") == "memory://"
