"""Predictive traits: who will buy again within a horizon, and how much they will spend.

Learned online, in event time, from delayed labels (see the README, "Predictive
traits"):

* :mod:`.schedule` -- when a customer is photographed (a snapshot grid in event time)
  and when a snapshot's label matures;
* :mod:`.cells` -- the trait model: sums per cell of recency, orders and tenure, which
  add up over partitions; a logistic fit on them, and buyers' spend per band;
* :mod:`.quality` -- progressive validation sums (AUC, calibration, spend RMSE);
* :mod:`.learner` -- :class:`~.learner.TraitLearner`, what the engine holds.

(:mod:`.learner` is not imported here: it needs :mod:`streamseg.core.state`, which needs
:mod:`.schedule`.)
"""
