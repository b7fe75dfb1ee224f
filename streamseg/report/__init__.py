"""A one-page HTML report of the segments, for people who market to them.

:func:`write_report` reads the store once and writes ONE self-contained HTML file
(plotly.js is embedded, so it opens offline, from an e-mail or a shared drive):

* a plain-words description and a table of every segment: size, share and the median
  customer's recency, orders and spend per 90 days, order value and tenure;
* "How the segments differ": one small bar chart per metric, segment medians against the
  median of all customers;
* "Segment sizes over time", from the size history the pipeline records as the stream
  runs (``size_history`` in the store's metadata);
* "Map of customers": a random sample of customers' model-space vectors projected on
  their two principal components (PCA by numpy's SVD), coloured by segment, with the
  segment centres marked.

The figures are stored in the page as JSON (``<script type="application/json"
data-figure="...">``) and drawn by a few lines of script, so tests and other tools can
read the numbers back without a browser.

Cost: one pass over the customers (medians need every value), plus the metadata and the
model checkpoint. Run it offline, not on the request path.

One module per job: :mod:`~streamseg.report.scan` reads the store into the report's data,
:mod:`~streamseg.report.figures` turns it into plotly figures, :mod:`~streamseg.report.words`
holds the plain words and colours, and :mod:`~streamseg.report.page` writes the HTML.
"""

from streamseg.report.page import write_report
from streamseg.report.scan import redact_uri

__all__ = ["redact_uri", "write_report"]
