"""A purchase log cut at a date: what was known then, and what happened next.

``streamseg bench traits`` replays the events up to a cutoff and compares each
customer's predictions with what the customer did in the following ``horizon`` days.
Dates are days (the bundled CDNOW sample has no time of day): the history is every
purchase on or before the cutoff day, the outcome every purchase on the ``horizon`` days
after it (cutoff < date <= cutoff + horizon).

>>> log = Transactions.from_rows([("a", "19970101", 10.0), ("a", "19970105", 5.0),
...                               ("b", "19970103", 7.0), ("a", "19970201", 2.0)])
>>> cut = log.until(date(1997, 1, 4))
>>> sorted(cut.customers())
['a', 'b']
>>> log.outcomes(date(1997, 1, 4), 20, ["a", "b"])
(array([1., 0.]), array([5., 0.]))
>>> log.outcomes(date(1997, 1, 4), 28, ["a", "b"])  # 1997-02-01 is day 28 after the cut
(array([1., 0.]), array([7., 0.]))
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

#: The bundled sample's column names and date format (see streamseg/data/README.md).
SAMPLE_COLUMNS = ("customer_id", "date", "quantity", "amount")
SAMPLE_DATE_FORMAT = "%Y%m%d"


def parse_day(text: str) -> date:
    """A cutoff given as YYYY-MM-DD, with the setting named in the error.

    >>> parse_day("1997-06-30")
    datetime.date(1997, 6, 30)
    """
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cutoff {text!r}: expected a date as YYYY-MM-DD") from None


def parse_days(text: str) -> list[date]:
    """Comma-separated YYYY-MM-DD days, sorted, without repeats; at least one.

    >>> parse_days("1997-09-30, 1997-06-30")
    [datetime.date(1997, 6, 30), datetime.date(1997, 9, 30)]
    """
    days = sorted({parse_day(part) for part in text.split(",") if part.strip()})
    if not days:
        raise ValueError("at least one date (YYYY-MM-DD)")
    return days


@dataclass(frozen=True)
class Transactions:
    """Purchases as parallel arrays: customer id, day, amount (in file order)."""

    customer_ids: np.ndarray  # str objects
    days: np.ndarray  # datetime64[D]
    amounts: np.ndarray  # float

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, float]]) -> Transactions:
        """From ``(customer_id, YYYYMMDD, amount)`` tuples."""
        ids: list[str] = []
        days: list[date] = []
        amounts: list[float] = []
        for customer_id, day, amount in rows:
            ids.append(customer_id)
            days.append(datetime.strptime(day, SAMPLE_DATE_FORMAT).date())
            amounts.append(float(amount))
        return cls(np.array(ids, dtype=object), np.array(days, dtype="datetime64[D]"),
                   np.array(amounts, dtype=float))

    @classmethod
    def read_sample_csv(cls, path: Path) -> Transactions:
        """Read a CSV laid out like the bundled CDNOW sample."""
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(SAMPLE_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            return cls.from_rows((row["customer_id"], row["date"], float(row["amount"]))
                                 for row in reader)

    def __len__(self) -> int:
        return len(self.customer_ids)

    def _mask(self, mask: np.ndarray) -> Transactions:
        return Transactions(self.customer_ids[mask], self.days[mask], self.amounts[mask])

    def until(self, cutoff: date) -> Transactions:
        """The purchases on or before ``cutoff``, in file order."""
        return self._mask(self.days <= np.datetime64(cutoff, "D"))

    def customers(self) -> set[str]:
        """Every customer with at least one purchase here."""
        return set(self.customer_ids.tolist())

    def outcomes(
        self, cutoff: date, horizon_days: int, customer_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each customer: 1.0 if they bought in the horizon after ``cutoff``, and the
        amount they spent then (0.0 for none)."""
        start = np.datetime64(cutoff, "D")
        end = np.datetime64(cutoff + timedelta(days=horizon_days), "D")
        window = self._mask((self.days > start) & (self.days <= end))
        index = {customer_id: i for i, customer_id in enumerate(customer_ids)}
        bought = np.zeros(len(customer_ids))
        spend = np.zeros(len(customer_ids))
        for customer_id, amount in zip(window.customer_ids, window.amounts, strict=True):
            i = index.get(customer_id)
            if i is not None:
                bought[i] = 1.0
                spend[i] += amount
        return bought, spend

    def last_day(self) -> date:
        """The day of the latest purchase."""
        if len(self) == 0:
            raise ValueError("no purchases")
        return date.fromisoformat(str(self.days.max()))

    def days_since_last(self, cutoff: date, customer_ids: Sequence[str]) -> np.ndarray:
        """Each customer's days from their last purchase (on or before cutoff) to cutoff."""
        cut = self.until(cutoff)
        last: dict[str, np.datetime64] = {}
        for customer_id, day in zip(cut.customer_ids, cut.days, strict=True):
            if customer_id not in last or day > last[customer_id]:
                last[customer_id] = day
        end = np.datetime64(cutoff, "D")
        return np.array([(end - last[c]).astype(int) for c in customer_ids], dtype=float)


def write_sample_prefix(source: Path, cutoff: date, out: Path) -> int:
    """Copy the rows of ``source`` dated on or before ``cutoff`` to ``out``, keeping the
    header and the order; returns the number of rows written.

    The rows are copied as they are, so the replay sees the sample's own events.
    """
    written = 0
    with source.open(newline="", encoding="utf-8") as handle, \
            out.open("w", newline="", encoding="utf-8") as target:
        reader = csv.reader(handle)
        writer = csv.writer(target, lineterminator="\n")
        header = next(reader)
        column = header.index("date")
        writer.writerow(header)
        for row in reader:
            if datetime.strptime(row[column], SAMPLE_DATE_FORMAT).date() <= cutoff:
                writer.writerow(row)
                written += 1
    return written
