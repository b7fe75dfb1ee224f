"""Failures of the infrastructure: whose they are, and how long to wait before resuming.

The loop never stops on a failure of the store or the broker. It reports not ready,
waits with exponential backoff (:class:`Backoff`) until the store answers, then reloads
its state from the store and resumes from the positions stored with the last batch
written whole: nothing is lost or applied twice.
"""

from __future__ import annotations

from typing import Literal

from streamseg.errors import BrokerError

__all__ = ["FINITE_SOURCE_RETRIES", "Backoff", "failure_kind"]

#: A finite source (a file) gives up after this many consecutive failures, so that a
#: one-off command does not hang forever.
FINITE_SOURCE_RETRIES = 5


def failure_kind(error: BaseException) -> Literal["store", "broker"]:
    """Whose failure ``error`` is, for the error metrics: a
    :class:`~streamseg.errors.BrokerError` is the broker's (the Kafka modules raise
    nothing else); anything else that escapes a batch is the store's.

    >>> failure_kind(BrokerError("flush failed")), failure_kind(ConnectionError("redis"))
    ('broker', 'store')
    """
    return "broker" if isinstance(error, BrokerError) else "store"


class Backoff:
    """Exponential backoff: ``first`` seconds, doubling, at most ``most``.

    >>> backoff = Backoff(first=0.2, most=5.0)
    >>> [backoff.after(failures) for failures in (1, 2, 3, 10)]
    [0.2, 0.4, 0.8, 5.0]
    >>> backoff.again(4.0)
    5.0
    """

    def __init__(self, first: float = 0.2, most: float = 5.0) -> None:
        self.first = first
        self.most = most

    def after(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failed batch."""
        return min(self.most, self.first * 2 ** min(failures - 1, 10))

    def again(self, delay: float) -> float:
        """The wait after a failed attempt to recover that waited ``delay``."""
        return min(self.most, delay * 2)
