"""streamseg: real-time customer segmentation.

Events flow one way: ``sources`` -> ``events`` (schema) -> ``features`` -> ``model``
-> ``store`` and ``sinks``, driven by ``pipeline.Application`` and configured by
``config.Settings``.
"""

__version__ = "0.1.0"
