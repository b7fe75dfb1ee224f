"""Predictive traits in the engine's scoring: snapshots matured and learned, traits
predicted as of the service clock, risk-band changes noted.

:class:`TraitScoring` is that step of :class:`~streamseg.engine.SegmentationEngine`'s
scoring (the learner itself is :mod:`streamseg.traits`).
"""

from __future__ import annotations

from collections.abc import Sequence

from streamseg.config import Settings
from streamseg.core.state import CustomerState
from streamseg.engine.batch import BatchOutcome
from streamseg.engine.changes import risk_change
from streamseg.engine.shared import Shares
from streamseg.store import LOCAL_PARTITION
from streamseg.traits.bands import RiskBands
from streamseg.traits.learner import TraitLearner

__all__ = ["TraitScoring"]


class TraitScoring:
    """Scoring the traits of a batch's customers (a mixin of the engine)."""

    settings: Settings
    shares: Shares
    behind: set[str]
    traits: TraitLearner | None
    bands: RiskBands

    def _score_traits(self, states: Sequence[CustomerState], clock: float,
                      outcome: BatchOutcome) -> None:
        """Mature and take each customer's snapshots at their partition's clock, learn
        the labels, then predict everyone's traits as of the service clock, and note
        the customers whose risk band changed."""
        traits = self.traits
        assert traits is not None
        until: dict[str, float] = {}
        for state in states:
            name = state.partition or LOCAL_PARTITION
            if name not in until:
                # A partition whose consumer is behind has purchases still unread: its
                # snapshots mature on its own clock (see Shares.inactivity_clock).
                own = self.shares.inactivity_clock(name, self.behind)
                until[name] = clock if own is None else min(clock, own)
            traits.at_clock(state, until[name])
            if state.traits_since == state.updated_at:
                state.traits_since = None  # the usual case: stored as nothing
        traits.refresh()
        # The first predictions of a model move a lot: band changes are published once
        # it has learned traits.risk_min_examples labels (bands are followed before).
        publish = traits.examples() >= self.settings.traits.risk_min_examples
        for state in states:
            predicted = traits.predict(state.features, state.updated_at or clock)
            before = self.bands.current(state.risk_band, state.traits)
            # Rounded as the readable record keeps them (the cached state must equal the
            # stored one): the probability to 0.001, the spend to a whole unit.
            state.traits = (round(predicted.purchase_probability, 3),
                            float(round(predicted.expected_spend)))
            band = self.bands.band_of(state.traits[0], before)
            if before is not None and band != before and publish:
                outcome.risk_changes.append(risk_change(
                    state, self.bands.name(before), self.bands.name(band),
                    traits.horizon_days))
            state.risk_band = None if band == self.bands.plain(state.traits[0]) else band
