"""Whose failure it is, and the backoff between attempts."""

from __future__ import annotations

from streamseg.errors import BrokerError
from streamseg.processing.recovery import Backoff, failure_kind


def test_broker_errors_are_the_brokers_and_everything_else_the_stores() -> None:
    assert failure_kind(BrokerError("x")) == "broker"
    assert failure_kind(ConnectionError("redis")) == "store"
    assert failure_kind(ValueError("sqlite")) == "store"


def test_backoff_doubles_up_to_its_bound() -> None:
    backoff = Backoff(first=0.5, most=3.0)
    assert [backoff.after(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.again(2.0) == 3.0
    assert backoff.after(10_000) == 3.0  # no overflow however long it fails
