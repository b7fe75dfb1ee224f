"""SQLite store (``sqlite:///PATH``): the embedded default; state survives a restart.

One row per customer with its state as JSON, an indexed ``next_rescore_at`` column for
the inactivity timer, and small tables for the model checkpoint, source positions and
run metadata. Each batch is one transaction in WAL mode, so a crash leaves either the
whole batch or none of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from streamseg.store.base import BatchWrite, CustomerState, Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    segment INTEGER,
    next_rescore_at REAL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_next_rescore ON customers (next_rescore_at);
CREATE TABLE IF NOT EXISTS model (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, change TEXT NOT NULL);
"""

# SQLite limits the number of bound parameters; stay well below it.
_CHUNK = 500


class SQLiteStore(Store):
    """Customer state in one SQLite file.

    >>> import tempfile, os
    >>> from streamseg.core.features import CustomerFeatures
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> store = SQLiteStore(path)
    >>> store.write_batch([CustomerState("c1", CustomerFeatures.empty(), segment=1)], BatchWrite())
    >>> SQLiteStore(path).get("c1").segment
    1
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against application crashes (what we guard
        # against); only an OS crash can lose the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        ids = list(dict.fromkeys(customer_ids))
        found: dict[str, CustomerState] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT state FROM customers WHERE customer_id IN ({marks})", chunk
            )
            for (text,) in rows:
                state = CustomerState.from_dict(json.loads(text))
                found[state.customer_id] = state
        return found

    def write_batch(self, states: Sequence[CustomerState], write: BatchWrite) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO customers (customer_id, segment, next_rescore_at, state)"
                " VALUES (?, ?, ?, ?)",
                [
                    (s.customer_id, s.segment, s.next_rescore_at, json.dumps(s.to_dict()))
                    for s in states
                ],
            )
            if write.model_checkpoint is not None:
                db.execute(
                    "INSERT OR REPLACE INTO model (id, state) VALUES (1, ?)",
                    (json.dumps(write.model_checkpoint),),
                )
            db.executemany(
                "INSERT OR REPLACE INTO positions (key, position) VALUES (?, ?)",
                list(write.positions.items()),
            )
            db.execute("DELETE FROM outbox")
            db.executemany("INSERT INTO outbox (seq, change) VALUES (?, ?)",
                           list(enumerate(write.outbox)))
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in write.meta.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def due_for_rescore(self, until: float, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT customer_id FROM customers WHERE next_rescore_at <= ?"
            " ORDER BY next_rescore_at, customer_id LIMIT ?",
            (until, limit),
        )
        return [cid for (cid,) in rows]

    def load_model(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM model WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    def outbox(self) -> list[str]:
        return [c for (c,) in self._db.execute("SELECT change FROM outbox ORDER BY seq")]

    def positions(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT key, position FROM positions").fetchall())

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def iter_customers(self) -> Iterator[CustomerState]:
        for (text,) in self._db.execute("SELECT state FROM customers ORDER BY customer_id"):
            yield CustomerState.from_dict(json.loads(text))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])

    def segment_sizes(self) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT segment, COUNT(*) FROM customers WHERE segment IS NOT NULL GROUP BY segment"
        )
        return {int(seg): int(n) for seg, n in rows}

    def close(self) -> None:
        self._db.close()
