"""The store's model lease: one worker at a time publishes the model of a store.

A worker keeps the lease by renewing it from a thread of its own every third of its
time to live, so a slow batch does not lose it while a stopped process (paused,
partitioned away) does. Every batch that writes the model carries the lease's token,
and the store refuses the write once another worker holds the lease: a worker that
wakes up after its lease expired cannot overwrite the model.

Two ways to hold it:

* **exclusive** (:meth:`LeaseKeeper.acquire`): a model only one worker can run (a file
  read whole, ``river-kmeans``). The worker takes the lease before it joins the input;
  a second worker on the same store stops at start, naming the holder. When a renewal
  finds the lease gone, :attr:`LeaseKeeper.lost` tells the loop to stop.
* **passed on** (:meth:`LeaseKeeper.try_acquire`): a model several workers share. The
  holder is the refiner; the others try to take the lease now and then, and one of them
  does when the refiner stops or stalls. A refiner that finds it lost goes on as one of
  the others (:meth:`LeaseKeeper.reset`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from streamseg.store import LeaseHeld, Store

log = logging.getLogger(__name__)

__all__ = ["LeaseKeeper", "LeaseLost", "worker_id"]

#: How much later than first seen a lease may expire before it counts as renewed (the
#: store's and this process's clocks tick apart by a few milliseconds per call).
RENEWAL_TOLERANCE_S = 0.5


class LeaseLost(RuntimeError):
    """This worker lost the store's model lease: another worker holds the store now."""


def worker_id() -> str:
    """This process, as the lease names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Takes, renews and releases the model lease of a store.

    Parameters
    ----------
    store
        The store the worker writes to (used to take and release the lease).
    renewal_store
        A store for the renewing thread: its own connection (stores are not
        thread-safe), or the same object for an in-process store.
    holder
        Who holds it (:func:`worker_id` unless configured).
    ttl_s
        How long the lease lives without a renewal.
    """

    def __init__(self, store: Store, renewal_store: Callable[[], Store], holder: str,
                 ttl_s: float) -> None:
        self._store = store
        self._renewal_store = renewal_store
        self.holder = holder
        self.ttl_s = ttl_s
        self.token: str | None = None
        self._lock = threading.Lock()  # the token, between the renewing thread and others
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        """True once a renewal found another worker holding the lease."""
        return self._lost.is_set()

    def acquire(self) -> str:
        """Take the lease and start renewing it.

        A lease held under this worker's own name is taken over at once (this worker,
        restarted). A lease held by another name may belong to a worker that died
        without giving it up: this waits until it expires -- at most one time to live --
        and raises :class:`~streamseg.store.LeaseHeld` as soon as the holder renews it
        (it is alive).
        """
        first_expiry: float | None = None
        while True:
            try:
                self.token = self._store.acquire_lease(self.holder, self.ttl_s,
                                                       replace_own=True)
                break
            except LeaseHeld as held:
                expiry = time.monotonic() + held.expires_in
                if first_expiry is None:
                    first_expiry = expiry
                    log.warning("%s; waiting to see whether it is still alive", held)
                elif expiry > first_expiry + RENEWAL_TOLERANCE_S:
                    raise  # renewed since: a live worker holds this store
                time.sleep(min(1.0, held.expires_in + 0.05))
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name="streamseg-lease")
        self._thread.start()
        return self.token

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (or this worker's own name does), and start
        renewing it; False when another worker holds it. For a lease that passes from
        worker to worker (the refiner of a shared model): never waits, never raises."""
        if self.token is not None and not self.lost:
            return True
        try:
            token = self._store.acquire_lease(self.holder, self.ttl_s, replace_own=True)
        except LeaseHeld:
            return False
        self.reset()
        with self._lock:
            self.token = token
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name="streamseg-lease")
        self._thread.start()
        return True

    def reset(self) -> None:
        """Forget a lost lease (stop renewing), so that :meth:`try_acquire` may take it
        again later."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.ttl_s)
        self._thread = None
        self.token = None
        self._lost.clear()

    def _renew_until_stopped(self) -> None:
        store = self._renewal_store()
        try:
            while not self._stop.wait(self.ttl_s / 3):
                try:
                    if not self._renew(store):
                        return
                except Exception as error:  # noqa: BLE001 - the store may be down: retry
                    log.warning("could not renew the model lease (%s); retrying", error)
        finally:
            if store is not self._store:
                store.close()

    def _renew(self, store: Store) -> bool:
        """Renew the lease, or take it again if it lapsed and nobody took it (the store
        was away longer than its time to live); False once another worker holds it."""
        with self._lock:
            token = self.token
            assert token is not None
            if store.renew_lease(token, self.ttl_s):
                return True
            try:
                self.token = store.acquire_lease(self.holder, self.ttl_s, replace_own=True)
                log.warning("the model lease of this worker (%s) had lapsed; nobody had "
                            "taken it, so it is this worker's again", self.holder)
                return True
            except LeaseHeld as held:
                log.error("the model lease of this worker (%s) lapsed and %s",
                          self.holder, held)
                self._lost.set()
                return False

    def regain(self) -> bool:
        """After a write refused for the lease: renew or take it again (True: the caller
        may go on with :attr:`token`, after reloading its state from the store), or
        False when another worker holds it."""
        if self.lost:
            return False
        try:
            return self._renew(self._store)
        except Exception:  # noqa: BLE001 - cannot tell: the caller retries as a failure
            return True

    def close(self) -> None:
        """Stop renewing and give the lease up (if still held)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ttl_s)
        if self.token is not None and not self.lost:
            try:
                self._store.release_lease(self.token)
            except Exception:  # noqa: BLE001 - it expires by itself
                log.warning("could not release the model lease; it expires in %.0f s",
                            self.ttl_s)
