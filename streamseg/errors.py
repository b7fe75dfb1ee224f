"""The failures the pipeline recovers from, by where they come from.

The stream never stops on a failure of its infrastructure: it reports not ready, backs
off and resumes from the store (:mod:`streamseg.processing.recovery`). The metrics tell
the two kinds apart, so every backend raises its own type:

* :class:`BrokerError` -- Kafka (the source, the sinks); the Kafka modules of
  :mod:`streamseg.io` turn kafka-python's errors into it;
* anything else that escapes a batch counts as a store failure.
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """The broker (Kafka) failed an operation; retried by the pipeline."""
