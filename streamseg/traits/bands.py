"""Risk bands of the purchase probability, with hysteresis.

Marketers act on bands ("at risk": unlikely to buy within the horizon), not on every
wobble of a probability. The bands are ``traits.risk_bands``: names with the lowest
probability of each, in increasing order (the first from 0). A customer leaves their
band only once the probability is beyond its bounds by ``traits.risk_hysteresis``, so
that a probability hovering at a border does not flip them back and forth. The change
of band is an event of its own on the change stream
(:class:`~streamseg.core.events.RiskBandChange`); a customer's first band is set
without one.

>>> bands = RiskBands({"at_risk": 0.0, "watch": 0.2, "likely": 0.5}, hysteresis=0.05)
>>> bands.band_of(0.1, None), bands.band_of(0.22, 0), bands.band_of(0.26, 0)
(0, 0, 1)
>>> bands.band_of(0.18, 1), bands.band_of(0.14, 1), bands.name(2)
(1, 0, 'likely')
"""

from __future__ import annotations

import bisect

__all__ = ["RiskBands"]


class RiskBands:
    """Bands of probability (name -> lowest probability, increasing) and the margin."""

    def __init__(self, bands: dict[str, float], hysteresis: float) -> None:
        self.names = list(bands)
        self.lows = list(bands.values())
        self.hysteresis = hysteresis

    def name(self, band: int) -> str:
        return self.names[band]

    def plain(self, probability: float) -> int:
        """The band ``probability`` falls in, without hysteresis."""
        return max(0, bisect.bisect_right(self.lows, probability) - 1)

    def current(self, kept: int | None, traits: tuple[float, float] | None) -> int | None:
        """A customer's band from what their state keeps: the band hysteresis kept them
        in, else the band of their probability (None: no traits yet)."""
        if kept is not None:
            return kept
        return None if traits is None else self.plain(traits[0])

    def band_of(self, probability: float, current: int | None) -> int:
        """The band of ``probability`` for a customer now in ``current`` (None: none)."""
        plain = bisect.bisect_right(self.lows, probability) - 1
        if current is None or plain == current or not 0 <= current < len(self.lows):
            return max(0, plain)
        low = self.lows[current]
        high = self.lows[current + 1] if current + 1 < len(self.lows) else float("inf")
        if low - self.hysteresis <= probability < high + self.hysteresis:
            return current
        return max(0, plain)
