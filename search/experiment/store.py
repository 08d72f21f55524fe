"""The experiment store: one SQLite file per experiment directory.

Tables: ``experiment`` (the config), ``trials`` (one row per proposal: architecture, token
indices, controller meta, status, metrics, reward, timings, worker, error), ``events``
(the order of asks and tells, so a restored controller can be brought back exactly in
step), ``checkpoints`` (controller state after every update), ``curves`` (each stage-1
trial's evaluation after every epoch, written while it trains).

Every write is its own committed transaction (WAL mode), so a SIGKILL loses at most the
trial that was running, never a finished one.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from search.trials.spec import TrialStatus

T = TypeVar("T")

STORE_NAME = "experiment.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    stage INTEGER NOT NULL DEFAULT 1,
    arch_key TEXT NOT NULL,
    architecture TEXT NOT NULL,
    indices TEXT,
    meta TEXT,
    status TEXT NOT NULL,            -- search.trials.spec.TrialStatus: pending, running, succeeded, failed, early_stopped, prefiltered
    cached_from INTEGER,             -- trial whose result this one reuses
    accuracy REAL, latency_ms REAL, memory_mb REAL, reward REAL,
    metrics TEXT, error TEXT, error_kind TEXT, worker TEXT,
    created REAL NOT NULL, started REAL, ended REAL
);
CREATE INDEX IF NOT EXISTS trials_arch ON trials(arch_key, stage, status);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, trial_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (id INTEGER PRIMARY KEY AUTOINCREMENT, last_event INTEGER NOT NULL, state BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS curves (
    trial_id INTEGER NOT NULL, epoch INTEGER NOT NULL, top1 REAL, loss REAL, train_loss REAL, seconds REAL,
    PRIMARY KEY (trial_id, epoch)
);
"""

TRIAL_COLUMNS = (
    "id", "stage", "arch_key", "architecture", "indices", "meta", "status", "cached_from", "accuracy", "latency_ms",
    "memory_mb", "reward", "metrics", "error", "error_kind", "worker", "created", "started", "ended",
)
JSON_COLUMNS = ("architecture", "indices", "meta", "metrics")


class Column(Generic[T]):
    """A typed view of one column of a ``TrialRow`` (``cast`` turns the stored value into its type)."""

    def __init__(self, cast: Callable[[Any], T] | None = None, empty: Callable[[], Any] | None = None):
        self.cast, self.empty = cast, empty  # empty: what a NULL reads as (a fresh one each time)

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, row, owner=None) -> T:
        value = row[self.name]
        if value is None:
            return self.empty() if self.empty else None
        return self.cast(value) if self.cast else value


class TrialRow(dict):
    """One stored trial: the row's columns by name (it stays a dict, so JSON, pandas and older
    callers read it as before), with typed attributes for the code that reasons about it."""

    id: Column[int] = Column()
    stage: Column[int] = Column()
    status: Column[TrialStatus] = Column(TrialStatus)
    arch_key: Column[str] = Column()
    architecture: Column[dict] = Column()
    indices: Column[list | None] = Column()
    meta: Column[dict] = Column(empty=dict)
    metrics: Column[dict] = Column(empty=dict)
    accuracy: Column[float | None] = Column()
    latency_ms: Column[float | None] = Column()
    memory_mb: Column[float | None] = Column()
    reward: Column[float | None] = Column()
    error: Column[str | None] = Column()
    error_kind: Column[str | None] = Column()
    worker: Column[str | None] = Column()


class Store:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STORE_NAME
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """Several writes that must land together (a trial and its controller event) or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ----- experiment -------------------------------------------------------------------
    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO experiment (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM experiment WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ----- trials -----------------------------------------------------------------------
    def add_trial(self, architecture: dict, arch_key: str, indices=None, meta=None, stage: int = 1) -> int:
        cur = self.db.execute(
            "INSERT INTO trials (stage, arch_key, architecture, indices, meta, status, created) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (stage, arch_key, json.dumps(architecture), json.dumps(indices), json.dumps(meta or {}), time.time()),
        )
        return cur.lastrowid

    def mark_running(self, trial_id: int, worker: str) -> None:
        """A trial starts (again): its curve starts over (a leftover point would be replaced anyway)."""
        self.db.execute("UPDATE trials SET status = 'running', worker = ?, started = ? WHERE id = ?", (worker, time.time(), trial_id))
        self.db.execute("DELETE FROM curves WHERE trial_id = ?", (trial_id,))

    def finish(self, trial_id: int, *, accuracy, latency_ms, memory_mb, reward, metrics: dict, cached_from: int | None = None,
               worker: str | None = None, status: str = "succeeded") -> None:
        """A succeeded (or early-stopped) trial's figures; ``worker`` (where it ran, if known only now) replaces the slot's name."""
        self.db.execute(
            "UPDATE trials SET status = ?, accuracy = ?, latency_ms = ?, memory_mb = ?, reward = ?, metrics = ?, "
            "cached_from = ?, error = NULL, error_kind = NULL, worker = COALESCE(?, worker), ended = ? WHERE id = ?",
            (status, accuracy, latency_ms, memory_mb, reward, json.dumps(metrics), cached_from, worker, time.time(), trial_id),
        )

    def add_curve(self, trial_id: int, points: list[dict]) -> None:
        """Per-epoch evaluations of a trial (repeating an epoch replaces it)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO curves (trial_id, epoch, top1, loss, train_loss, seconds) VALUES (?, ?, ?, ?, ?, ?)",
            [(trial_id, p["epoch"], p.get("top1"), p.get("loss"), p.get("train_loss"), p.get("seconds")) for p in points],
        )

    def curves(self, stage: int = 1) -> dict[int, list[dict]]:
        """trial id -> its per-epoch evaluations in epoch order."""
        out: dict[int, list[dict]] = {}
        rows = self.db.execute(
            "SELECT c.trial_id, c.epoch, c.top1, c.loss, c.train_loss, c.seconds FROM curves c JOIN trials t ON t.id = c.trial_id "
            "WHERE t.stage = ? ORDER BY c.trial_id, c.epoch", (stage,))
        for trial_id, epoch, top1, loss, train_loss, seconds in rows:
            out.setdefault(trial_id, []).append({"epoch": epoch, "top1": top1, "loss": loss, "train_loss": train_loss, "seconds": seconds})
        return out

    def fail(self, trial_id: int, error: str, kind: str, metrics: dict | None = None, worker: str | None = None) -> None:
        self.db.execute(
            "UPDATE trials SET status = 'failed', error = ?, error_kind = ?, metrics = ?, worker = COALESCE(?, worker), ended = ? WHERE id = ?",
            (error[-4000:], kind, json.dumps(metrics or {}), worker, time.time(), trial_id),
        )

    def update_metrics(self, trial_id: int, metrics: dict) -> None:
        """Add to a finished trial's metrics (a measurement taken after it finished); figures and reward stay."""
        self.db.execute("UPDATE trials SET metrics = ? WHERE id = ?", (json.dumps(metrics), trial_id))

    def reset_interrupted(self, stage: int | None = None) -> list[int]:
        """Trials left running or pending by a killed search go back to pending; returns their ids."""
        where = "status IN ('running', 'pending')" + (" AND stage = ?" if stage else "")
        args = (stage,) if stage else ()
        ids = [r[0] for r in self.db.execute(f"SELECT id FROM trials WHERE {where} ORDER BY id", args)]
        self.db.execute(f"UPDATE trials SET status = 'pending', worker = NULL, started = NULL WHERE {where}", args)
        return ids

    def trials(self, stage: int | None = 1, status: str | None = None) -> list[TrialRow]:
        sql, args = "SELECT * FROM trials WHERE 1=1", []
        if stage is not None:
            sql, args = sql + " AND stage = ?", args + [stage]
        if status is not None:
            sql, args = sql + " AND status = ?", args + [status]
        return [self._row(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def trial(self, trial_id: int) -> TrialRow:
        return self._row(self.db.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone())

    def find_result(self, arch_key: str, stage: int = 1) -> TrialRow | None:
        """A succeeded, freshly evaluated trial of this architecture, if there is one."""
        row = self.db.execute(
            "SELECT * FROM trials WHERE arch_key = ? AND stage = ? AND status = 'succeeded' AND cached_from IS NULL ORDER BY id LIMIT 1",
            (arch_key, stage),
        ).fetchone()
        return self._row(row) if row else None

    def best_trial(self, stage: int = 1) -> TrialRow | None:
        row = self.db.execute(
            "SELECT * FROM trials WHERE stage = ? AND status = 'succeeded' ORDER BY reward DESC, id LIMIT 1", (stage,)
        ).fetchone()
        return self._row(row) if row else None

    def recent_statuses(self, stage: int, n: int) -> list[str]:
        """Statuses of the last ``n`` finished trials of ``stage``, newest first."""
        rows = self.db.execute(
            "SELECT status FROM trials WHERE stage = ? AND status IN ('succeeded', 'failed') ORDER BY ended DESC, id DESC LIMIT ?", (stage, n)
        )
        return [r[0] for r in rows]

    def trials_since_best(self, stage: int = 1) -> int:
        """Succeeded trials of ``stage`` that finished after the best one (0 when none)."""
        return self.db.execute(
            "WITH s AS (SELECT id, ended, reward FROM trials WHERE stage = ? AND status = 'succeeded'), "
            "b AS (SELECT id, ended FROM s ORDER BY reward DESC, ended, id LIMIT 1) "
            "SELECT COUNT(*) FROM s, b WHERE s.ended > b.ended OR (s.ended = b.ended AND s.id > b.id)", (stage,)
        ).fetchone()[0]

    def latency_pairs(self, stage: int = 1) -> list[tuple[float, float]]:
        """(predicted, measured) latency of the succeeded trials that have both (hybrid searches)."""
        rows = self.db.execute(
            "SELECT json_extract(metrics, '$.latency.predicted_ms'), json_extract(metrics, '$.latency.latency_ms') FROM trials "
            "WHERE stage = ? AND status = 'succeeded' AND cached_from IS NULL AND json_extract(metrics, '$.latency.measured') = 1",
            (stage,),
        )
        return [(p, m) for p, m in rows if p and m]

    def counts(self, stage: int = 1) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM trials WHERE stage = ? GROUP BY status", (stage,)).fetchall()
        return {**{s.value: 0 for s in TrialStatus}, **dict(rows)}

    def _row(self, row) -> TrialRow:
        out = TrialRow(zip(TRIAL_COLUMNS, row))
        for col in JSON_COLUMNS:
            if out[col] is not None:
                out[col] = json.loads(out[col])
        return out

    # ----- controller events and checkpoints ------------------------------------------------
    def log_event(self, kind: str, trial_id: int) -> int:
        return self.db.execute("INSERT INTO events (kind, trial_id) VALUES (?, ?)", (kind, trial_id)).lastrowid

    def events_after(self, seq: int) -> list[tuple[int, str, int]]:
        return self.db.execute("SELECT seq, kind, trial_id FROM events WHERE seq > ? ORDER BY seq", (seq,)).fetchall()

    def tell_seq(self, trial_id: int) -> int | None:
        row = self.db.execute("SELECT MAX(seq) FROM events WHERE kind = 'tell' AND trial_id = ?", (trial_id,)).fetchone()
        return row[0]

    def last_event(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def save_checkpoint(self, state: bytes, last_event: int) -> None:
        self.db.execute("INSERT INTO checkpoints (last_event, state, created) VALUES (?, ?, ?)", (last_event, state, time.time()))

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT last_event, state FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def checkpoint_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
