"""Both embedded stores honour the same contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamseg.config import StoreSettings
from streamseg.core.features import CustomerFeatures
from streamseg.store import BatchWrite, CustomerState, MemoryStore, SQLiteStore, Store, open_store


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield backend
    backend.close()


def _state(cid: str, segment: int | None, due: float | None) -> CustomerState:
    features = CustomerFeatures.empty()
    features.apply(0.0, 10.0, "purchase", half_life_days=90)
    return CustomerState(cid, features, segment=segment, vector=[0.5, 1.5], next_rescore_at=due,
                         applied={"file:x": 3})


def test_round_trip_and_counts(store: Store) -> None:
    store.write_batch(
        [_state("a", 0, 10.0), _state("b", 1, 20.0), _state("c", 1, None)],
        BatchWrite(model_checkpoint={"k": 1}, positions={"file:x": 3}, meta={"watermark": 5.0}),
    )
    got = store.get_many(["a", "b", "zz"])
    assert set(got) == {"a", "b"}
    assert got["a"].to_dict() == _state("a", 0, 10.0).to_dict()
    assert store.count() == 3
    assert store.segment_sizes() == {0: 1, 1: 2}
    assert store.load_model() == {"k": 1}
    assert store.positions() == {"file:x": 3}
    assert store.meta() == {"watermark": 5.0}
    assert sorted(s.customer_id for s in store.iter_customers()) == ["a", "b", "c"]


def test_due_index_follows_latest_write(store: Store) -> None:
    store.write_batch([_state("a", 0, 10.0), _state("b", 0, 30.0)], BatchWrite())
    assert store.due_for_rescore(15.0, 10) == ["a"]
    store.write_batch([_state("a", 0, 40.0)], BatchWrite())  # re-scored: due later
    assert store.due_for_rescore(15.0, 10) == []
    assert store.due_for_rescore(50.0, 1) == ["b"]
    assert sorted(store.due_for_rescore(50.0, 10)) == ["a", "b"]


def test_model_checkpoint_kept_when_batch_has_none(store: Store) -> None:
    store.write_batch([], BatchWrite(model_checkpoint={"v": 1}))
    store.write_batch([_state("a", 0, None)], BatchWrite())
    assert store.load_model() == {"v": 1}


def test_sqlite_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SQLiteStore(path)
    first.write_batch([_state("a", 4, 1.0)], BatchWrite(positions={"p": 9}))
    first.close()
    again = open_store(StoreSettings(uri=f"sqlite:///{path}"))
    assert again.get("a") is not None and again.get("a").segment == 4  # type: ignore[union-attr]
    assert again.positions() == {"p": 9}


def test_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown store URI"):
        open_store(StoreSettings(uri="postgres://x"))
