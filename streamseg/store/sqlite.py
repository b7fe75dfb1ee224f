"""SQLite store (``sqlite:///PATH``): the embedded default; state survives a restart.

One row per customer with its state as JSON, its partition and an indexed
``next_rescore_at`` for the inactivity timer; a row per partition (owner epoch,
positions, sizes, customer count, outbox); small tables for the model checkpoint, the
metadata and the lease. Each batch is one ``BEGIN IMMEDIATE`` transaction in WAL mode,
which checks the writer's epochs and lease first: a crash leaves the whole batch or none
of it, and a fenced writer changes nothing.

A file written by an earlier version (source positions and an outbox for the whole
store, no partitions) is moved into the ``local`` partition when first opened.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streamseg.core.state import CustomerState
from streamseg.store.base import (
    LOCAL_PARTITION,
    BatchWrite,
    FencedError,
    LeaseHeld,
    Partition,
    SampleRow,
    Store,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    segment INTEGER,
    next_rescore_at REAL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    name TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    positions TEXT NOT NULL,
    sizes TEXT NOT NULL,
    customers INTEGER NOT NULL,
    outbox TEXT NOT NULL,
    model TEXT
);
CREATE TABLE IF NOT EXISTS sample (
    partition TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    segment INTEGER NOT NULL,
    vector TEXT NOT NULL,
    PRIMARY KEY (partition, customer_id)
);
CREATE TABLE IF NOT EXISTS model (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

# SQLite limits the number of bound parameters; stay well below it.
_CHUNK = 500


class SQLiteStore(Store):
    """Customer state in one SQLite file.

    >>> import tempfile, os
    >>> from streamseg.core.features import CustomerFeatures
    >>> from streamseg.store.base import PartitionWrite
    >>> path = os.path.join(tempfile.mkdtemp(), "state.db")
    >>> store = SQLiteStore(path)
    >>> part = store.take_partition("local")
    >>> part.customers, part.sizes = 1, {1: 1}
    >>> state = CustomerState("c1", CustomerFeatures.empty(), segment=1, partition="local")
    >>> store.write_batch(BatchWrite([PartitionWrite(part, [state])]))
    >>> SQLiteStore(path).get("c1").segment
    1
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        if read_only:
            self._db = _open_read_only(self.path)
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against application crashes (what we guard
        # against); only an OS crash can lose the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Bring a file of an earlier version to this one (partitions, then the model's
        share per partition), once."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(partitions)")}
        if "model" not in columns:  # (ALTER TABLE ... ADD COLUMN is atomic on its own)
            self._db.execute("ALTER TABLE partitions ADD COLUMN model TEXT")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(customers)")}
        if "partition" in columns:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE customers ADD COLUMN partition TEXT")
            db.execute("UPDATE customers SET partition = ?", (LOCAL_PARTITION,))
            db.execute("DROP INDEX IF EXISTS customers_next_rescore")
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            positions: dict[str, int] = {}
            outbox: list[str] = []
            if "positions" in tables:
                positions = dict(db.execute("SELECT key, position FROM positions"))
                db.execute("DROP TABLE positions")
            if "outbox" in tables:
                outbox = [c for (c,) in db.execute("SELECT change FROM outbox ORDER BY seq")]
                db.execute("DROP TABLE outbox")
            count = int(db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])
            if count or positions:
                sizes = dict(db.execute("SELECT segment, COUNT(*) FROM customers "
                                        "WHERE segment IS NOT NULL GROUP BY segment"))
                db.execute("INSERT OR REPLACE INTO partitions VALUES (?, 0, ?, ?, ?, ?, NULL)",
                           (LOCAL_PARTITION, json.dumps(positions), _sizes_json(sizes), count,
                            json.dumps(outbox)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("CREATE INDEX IF NOT EXISTS customers_due "
                   "ON customers (partition, next_rescore_at)")

    # -- customers --------------------------------------------------------------------
    def get_many(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        ids = list(dict.fromkeys(customer_ids))
        found: dict[str, CustomerState] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT state, partition FROM customers WHERE customer_id IN ({marks})", chunk
            )
            for text, partition in rows:
                state = _state(text, partition)
                found[state.customer_id] = state
        return found

    def iter_customers(self) -> Iterator[CustomerState]:
        for text, partition in self._db.execute(
                "SELECT state, partition FROM customers ORDER BY customer_id"):
            yield _state(text, partition)

    # -- partitions -------------------------------------------------------------------
    def take_partition(self, name: str) -> Partition:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR IGNORE INTO partitions VALUES "
                       "(?, 0, '{}', '{}', 0, '[]', NULL)",
                       (name,))
            db.execute("UPDATE partitions SET epoch = epoch + 1 WHERE name = ?", (name,))
            partition = self.read_partition(name)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return partition

    def read_partition(self, name: str) -> Partition:
        row = self._db.execute("SELECT epoch, positions, sizes, customers, outbox, model "
                               "FROM partitions WHERE name = ?", (name,)).fetchone()
        if row is None:
            return Partition(name)
        epoch, positions, sizes, customers, outbox, model = row
        return Partition(name, int(epoch), json.loads(positions),
                         {int(k): int(v) for k, v in json.loads(sizes).items()},
                         int(customers), json.loads(outbox),
                         None if model is None else json.loads(model))

    def read_sample(self, names: Iterable[str]) -> dict[str, dict[str, SampleRow]]:
        rows: dict[str, dict[str, SampleRow]] = {}
        for name in names:
            rows[name] = {cid: (int(segment), json.loads(vector)) for cid, segment, vector
                          in self._db.execute("SELECT customer_id, segment, vector FROM sample"
                                              " WHERE partition = ?", (name,))}
        return rows

    def snapshot(self, names: Iterable[str]) -> tuple[dict[str, Partition],
                                                      dict[str, dict[str, SampleRow]]]:
        names = list(names)
        self._db.execute("BEGIN")  # one read transaction: one instant of the file
        try:
            return self.read_partitions(names), self.read_sample(names)
        finally:
            self._db.execute("COMMIT")

    def customers_page(self, partition: str, cursor: str, limit: int) -> tuple[list[str], str]:
        ids = [cid for (cid,) in self._db.execute(
            "SELECT customer_id FROM customers WHERE partition = ? AND customer_id > ? "
            "ORDER BY customer_id LIMIT ?", (partition, cursor, limit))]
        return ids, (ids[-1] if len(ids) == limit else "")

    def partition_names(self) -> list[str]:
        return [name for (name,) in self._db.execute("SELECT name FROM partitions ORDER BY name")]

    # -- the batch --------------------------------------------------------------------
    def write_batch(self, write: BatchWrite) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            stale = [part.partition.name for part in write.partitions
                     if self._epoch(part.partition.name) != part.partition.epoch]
            lease_lost = write.lease is not None and not self._holds(write.lease)
            if stale or lease_lost:
                raise FencedError(stale, lease_lost)
            for part in write.partitions:
                new = part.partition
                db.executemany(
                    "INSERT OR REPLACE INTO customers "
                    "(customer_id, segment, next_rescore_at, state, partition)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(s.customer_id, s.segment, s.next_rescore_at, json.dumps(s.to_dict()),
                      s.partition) for s in part.states],
                )
                positions = {**self.read_partition(new.name).positions, **new.positions}
                db.execute("UPDATE partitions SET positions = ?, sizes = ?, customers = ?, "
                           "outbox = ? WHERE name = ?",
                           (json.dumps(positions), _sizes_json(new.sizes), new.customers,
                            json.dumps(new.outbox), new.name))
                if new.model is not None:
                    db.execute("UPDATE partitions SET model = ? WHERE name = ?",
                               (json.dumps(new.model), new.name))
                db.executemany("DELETE FROM sample WHERE partition = ? AND customer_id = ?",
                               [(new.name, cid) for cid, row in part.sample.items()
                                if row is None])
                db.executemany("INSERT OR REPLACE INTO sample VALUES (?, ?, ?, ?)",
                               [(new.name, cid, int(row[0]), json.dumps(list(row[1])))
                                for cid, row in part.sample.items() if row is not None])
            if write.model_checkpoint is not None:
                db.execute("INSERT OR REPLACE INTO model (id, state) VALUES (1, ?)",
                           (json.dumps(write.model_checkpoint),))
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in write.meta.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _epoch(self, name: str) -> int | None:
        row = self._db.execute("SELECT epoch FROM partitions WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def due_for_rescore(self, partition: str, until: float, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT customer_id FROM customers WHERE partition = ? AND next_rescore_at <= ?"
            " ORDER BY next_rescore_at, customer_id LIMIT ?",
            (partition, until, limit),
        )
        return [cid for (cid,) in rows]

    # -- the model and metadata -------------------------------------------------------
    def load_model(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM model WHERE id = 1").fetchone()
        return None if row is None else json.loads(row[0])

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    # -- the lease (wall-clock expiry: the processes that share the file share the clock)
    def _holds(self, token: str) -> bool:
        row = self._db.execute("SELECT token, expires_at FROM lease WHERE id = 1").fetchone()
        return row is not None and row[0] == token and float(row[1]) > time.time()

    def acquire_lease(self, holder: str, ttl_s: float, *, replace_own: bool = False) -> str:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT token, expires_at FROM lease WHERE id = 1").fetchone()
            now = time.time()
            own = row is not None and str(row[0]).rpartition("#")[0] == holder
            if row is not None and float(row[1]) > now and not (replace_own and own):
                raise LeaseHeld(str(row[0]).rpartition("#")[0], float(row[1]) - now)
            token = f"{holder}#{uuid.uuid4().hex[:12]}"
            db.execute("INSERT OR REPLACE INTO lease (id, token, expires_at) VALUES (1, ?, ?)",
                       (token, now + ttl_s))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return token

    def renew_lease(self, token: str, ttl_s: float) -> bool:
        cursor = self._db.execute(
            "UPDATE lease SET expires_at = ? WHERE id = 1 AND token = ? AND expires_at > ?",
            (time.time() + ttl_s, token, time.time()))
        return cursor.rowcount == 1

    def release_lease(self, token: str) -> None:
        self._db.execute("DELETE FROM lease WHERE id = 1 AND token = ?", (token,))

    # -- totals -----------------------------------------------------------------------
    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])

    def segment_sizes(self) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT segment, COUNT(*) FROM customers WHERE segment IS NOT NULL "
            "GROUP BY segment ORDER BY segment"
        )
        return {int(seg): int(n) for seg, n in rows}

    def close(self) -> None:
        self._db.close()


def _open_read_only(path: str) -> sqlite3.Connection:
    """A connection that cannot write (SQLite's ``mode=ro``) to an existing file of this
    version: the read commands must neither create a file nor upgrade one."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no store at {path}: nothing was written there yet "
                                "(run `streamseg run` first, or check store.uri)")
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                         isolation_level=None, check_same_thread=False, timeout=30.0)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = {row[1] for row in db.execute("PRAGMA table_info(customers)")}
    missing = {"customers", "partitions", "sample", "model", "meta"} - tables
    if missing or "partition" not in columns:
        db.close()
        raise ValueError(f"{path} was written by an earlier version of streamseg (or is no "
                         "streamseg store): start one worker of this version on it once to "
                         "upgrade it, or check store.uri")
    return db


def _state(text: str, partition: str | None) -> CustomerState:
    state = CustomerState.from_dict(json.loads(text))
    if state.partition is None:
        state.partition = partition  # written before states recorded their partition
    return state


def _sizes_json(sizes: dict[int, int]) -> str:
    return json.dumps({str(k): int(v) for k, v in sorted(sizes.items())})
