"""The model lease: taken at start, kept alive, lost when another worker takes it."""

from __future__ import annotations

import threading
import time

import pytest

from streamseg.processing.lease import LeaseKeeper
from streamseg.store import LeaseHeld, MemoryStore


def _keeper(store: MemoryStore, holder: str, ttl_s: float = 30.0) -> LeaseKeeper:
    return LeaseKeeper(store, lambda: store, holder, ttl_s)


def test_a_live_holder_keeps_a_second_worker_out() -> None:
    store = MemoryStore()
    first = _keeper(store, "a", ttl_s=0.6)  # renews every 0.2 s
    first.acquire()
    try:
        with pytest.raises(LeaseHeld, match="a"):
            _keeper(store, "b", ttl_s=0.6).acquire()
        assert not first.lost
    finally:
        first.close()


def test_a_dead_holders_lease_is_waited_out_and_taken() -> None:
    store = MemoryStore()
    store.acquire_lease("dead", ttl_s=0.4)  # nobody renews it
    second = _keeper(store, "b")
    token = second.acquire()
    try:
        assert token.startswith("b#")
    finally:
        second.close()


def test_the_same_worker_restarted_takes_its_lease_over_at_once() -> None:
    store = MemoryStore()
    store.acquire_lease("worker-1", ttl_s=3600)  # the process that held it was killed
    again = _keeper(store, "worker-1")
    again.acquire()
    again.close()


def test_a_worker_whose_lease_was_taken_knows_it() -> None:
    store = MemoryStore()
    first = _keeper(store, "a", ttl_s=0.3)
    first.acquire()
    pause = threading.Event()
    # What a paused process looks like: nobody renews; another worker takes the lease.
    first._stop.set()
    first._thread.join()  # type: ignore[union-attr]
    time.sleep(0.35)
    store.acquire_lease("b", ttl_s=30.0)
    first._stop.clear()
    first._thread = threading.Thread(target=first._renew_until_stopped, daemon=True)
    first._thread.start()
    deadline = time.monotonic() + 10
    while not first.lost and time.monotonic() < deadline:
        pause.wait(0.05)
    assert first.lost
    first.close()
    assert store.renew_lease(store._lease[0], 30.0)  # type: ignore[index]  # b's survives


def test_a_lapsed_lease_nobody_took_is_taken_again_and_a_taken_one_is_lost() -> None:
    store = MemoryStore()
    keeper = _keeper(store, "a", ttl_s=30.0)
    keeper.acquire()
    old = keeper.token
    store._lease = None  # lapsed while the store was away; nobody took it
    assert keeper.regain() and keeper.token != old and not keeper.lost
    store.release_lease(keeper.token)  # type: ignore[arg-type]
    store.acquire_lease("b", ttl_s=30.0)
    assert not keeper.regain() and keeper.lost
    keeper.close()
