"""The size history: a point per step of service time, bounded by thinning."""

from __future__ import annotations

from streamseg.processing.history import MAX_POINTS, SizeHistory

DAY = 86_400.0


def _summaries(size: int) -> list[dict[str, object]]:
    return [{"segment": 0, "size": size, "name": "VIP"}]


def test_a_point_per_step_and_the_same_instant_replaced() -> None:
    history = SizeHistory([], every_days=1.0)
    assert history.record(0.0, _summaries(1))
    assert not history.record(DAY / 2, _summaries(2))
    assert history.record(DAY, _summaries(3))
    assert history.record(DAY, _summaries(4), force=True)
    assert [(p["time"], p["sizes"]) for p in history.points] == [
        (0.0, {"0": 1}), (DAY, {"0": 4})]


def test_nothing_is_recorded_before_the_model_has_segments() -> None:
    history = SizeHistory([], every_days=1.0)
    assert not history.record(0.0, [])


def test_a_full_history_is_thinned_and_still_spans_the_whole_run() -> None:
    history = SizeHistory([], every_days=1.0)
    for day in range(MAX_POINTS + 1):
        history.record(day * DAY, _summaries(day))
    assert len(history.points) <= MAX_POINTS
    # Thinning keeps every other point: the run's span stays covered at twice the step.
    times = [p["time"] for p in history.points]
    assert times[0] <= 2 * DAY and times[-1] >= (MAX_POINTS - 2) * DAY
    assert all(b - a == 2 * DAY for a, b in zip(times, times[1:], strict=False))
