"""The one-page HTML report of the segments (``streamseg report``)."""

from streamseg.report.report import redact_uri, write_report

__all__ = ["redact_uri", "write_report"]
