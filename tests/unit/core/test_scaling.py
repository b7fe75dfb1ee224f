"""The online standardiser: population statistics with removal, one by one or many."""

from __future__ import annotations

import numpy as np

from streamseg.core.scaling import OnlineStandardizer


def test_standardizer_matches_population_statistics_with_reverts() -> None:
    rng = np.random.default_rng(0)
    points = {i: rng.normal(size=3) * [1, 10, 100] for i in range(200)}
    scaler = OnlineStandardizer(3)
    for x in points.values():
        scaler.learn_one(x)
    for i in range(0, 200, 2):  # every other customer changes
        scaler.revert_one(points[i])
        points[i] = rng.normal(size=3)
        scaler.learn_one(points[i])
    data = np.array(list(points.values()))
    assert scaler.n == 200
    np.testing.assert_allclose(scaler.mean, data.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(scaler.std, data.std(axis=0), rtol=1e-9)
    z = scaler.transform_one(data[0])
    np.testing.assert_allclose(z, (data[0] - data.mean(0)) / data.std(0), rtol=1e-9)


def test_standardizer_constant_coordinate_maps_to_zero() -> None:
    scaler = OnlineStandardizer(2)
    for x in ([1.0, 0.0], [2.0, 0.0], [3.0, 0.0]):
        scaler.learn_one(np.array(x))
    assert scaler.transform_one(np.array([2.0, 0.0]))[1] == 0.0



def test_learning_and_reverting_many_equals_one_by_one() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)) * 5
    one, many = OnlineStandardizer(4), OnlineStandardizer(4)
    for row in x:
        one.learn_one(row)
    many.learn_many(x[:20])
    many.learn_many(x[20:])
    np.testing.assert_allclose(many.mean, one.mean, atol=1e-12)
    np.testing.assert_allclose(many.m2, one.m2, rtol=1e-9)
    for row in x[:10]:
        one.revert_one(row)
    many.revert_many(x[:10])
    assert many.n == one.n == 40
    np.testing.assert_allclose(many.mean, one.mean, atol=1e-9)
    np.testing.assert_allclose(many.std, one.std, rtol=1e-9)


def test_the_scale_floor_keeps_tiny_differences_small() -> None:
    scaler = OnlineStandardizer(1, min_std=0.5)
    scaler.learn_many(np.array([[1.0], [1.01], [0.99]]))
    assert scaler.std[0] == 0.5
    assert abs(scaler.transform_one(np.array([1.01]))[0]) < 0.05


def test_the_state_round_trips() -> None:
    scaler = OnlineStandardizer(2, min_std=[0.1, 0.2])
    scaler.learn_many(np.array([[1.0, 2.0], [3.0, 5.0]]))
    again = OnlineStandardizer.from_state(scaler.to_state())
    assert again.n == 2
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.min_std, scaler.min_std)
