"""The read side: a read-only view of a store and its model (:mod:`.view`), used by
``streamseg segments``, ``get``, ``export``, ``report`` and ``evaluate``."""

from streamseg.read.view import ReadError, ReadView, open_view

__all__ = ["ReadError", "ReadView", "open_view"]
