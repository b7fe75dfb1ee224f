"""Standardisation over the current customers, with removal (Welford / Chan et al.).

A customer's vector is learnt when they are scored and unlearnt when they are scored
again, so the mean and variance are those of the customers as they are now, not of every
event ever seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class OnlineStandardizer:
    """Standardises vectors with the mean and variance of the *current customers*.

    Unlike River's ``StandardScaler``, which learns from every sample it sees, a
    customer's old vector is reverted when their new one is learnt. The statistics are
    therefore those of the population of customers, not of events: a customer who buys
    100 times counts once. Welford's algorithm with removal, O(d) per update.

    >>> scaler = OnlineStandardizer(2)
    >>> for x in ([1.0, 10.0], [3.0, 10.0]):
    ...     scaler.learn_one(np.array(x))
    >>> scaler.transform_one(np.array([3.0, 10.0])).tolist()
    [1.0, 0.0]
    >>> scaler.revert_one(np.array([3.0, 10.0])); scaler.n
    1
    """

    def __init__(self, dim: int, min_std: np.ndarray | float = 0.0) -> None:
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        # A floor on each coordinate's scale. Without it, a coordinate on which customers
        # hardly differ (everyone joined the same month; nobody refunds) is stretched to
        # unit variance and its noise decides segments. With a floor, differences smaller
        # than the floor stay small in model space.
        self.min_std = np.broadcast_to(np.asarray(min_std, dtype=float), (dim,)).copy()

    def learn_one(self, x: np.ndarray) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def revert_one(self, x: np.ndarray) -> None:
        if self.n <= 1:
            self.n = 0
            self.mean[:] = 0.0
            self.m2[:] = 0.0
            return
        delta = x - self.mean
        self.mean -= delta / (self.n - 1)
        self.m2 -= delta * (x - self.mean)
        np.maximum(self.m2, 0.0, out=self.m2)  # rounding must not make a variance negative
        self.n -= 1

    def learn_many(self, x: np.ndarray) -> None:
        """Learn the rows of ``x`` at once (Chan et al.'s parallel update)."""
        if len(x) == 0:
            return
        n_b = len(x)
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    def revert_many(self, x: np.ndarray) -> None:
        """Forget the rows of ``x`` at once (the inverse of :meth:`learn_many`)."""
        if len(x) == 0:
            return
        n_b = len(x)
        n_a = self.n - n_b
        if n_a <= 0:
            self.n = 0
            self.mean = np.zeros_like(self.mean)
            self.m2 = np.zeros_like(self.m2)
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        mean_a = (self.n * self.mean - n_b * mean_b) / n_a
        delta = mean_b - mean_a
        self.m2 = np.maximum(self.m2 - m2_b - delta**2 * (n_a * n_b / self.n), 0.0)
        self.mean = mean_a
        self.n = n_a

    def merge(self, other: OnlineStandardizer) -> None:
        """Add the customers ``other`` holds (Chan et al.): the statistics of two
        disjoint groups of customers, as if one standardiser had learnt both.

        >>> a, b, both = OnlineStandardizer(1), OnlineStandardizer(1), OnlineStandardizer(1)
        >>> for x in (1.0, 2.0): a.learn_one(np.array([x])); both.learn_one(np.array([x]))
        >>> for x in (4.0, 9.0): b.learn_one(np.array([x])); both.learn_one(np.array([x]))
        >>> a.merge(b); (a.n, a.mean.tolist(), a.m2.tolist()) == (4, [4.0], [38.0])
        True
        """
        if other.n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.n / n)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        self.n = n

    def copy(self) -> OnlineStandardizer:
        return OnlineStandardizer.from_state(self.to_state())

    def transform_many(self, x: np.ndarray) -> np.ndarray:
        std = self.std
        constant = std <= 1e-12
        return np.where(constant, 0.0, (x - self.mean) / np.where(constant, 1.0, std))

    @property
    def std(self) -> np.ndarray:
        """The scale used: the population standard deviation, but at least ``min_std``."""
        if self.n < 2:
            return np.maximum(np.ones_like(self.mean), self.min_std)
        std = np.sqrt(self.m2 / self.n)
        # A coordinate that is exactly constant and has no floor maps to 0 (below).
        return np.maximum(std, self.min_std)

    def transform_one(self, x: np.ndarray) -> np.ndarray:
        std = self.std
        constant = std <= 1e-12
        return np.where(constant, 0.0, (x - self.mean) / np.where(constant, 1.0, std))

    def inverse_transform_one(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z) * self.std + self.mean

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist(),
                "min_std": self.min_std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OnlineStandardizer:
        scaler = cls(len(state["mean"]), np.asarray(state.get("min_std", 0.0)))
        scaler.n = int(state["n"])
        scaler.mean = np.array(state["mean"], dtype=float)
        scaler.m2 = np.array(state["m2"], dtype=float)
        return scaler
