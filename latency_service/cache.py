"""Result cache in SQLite: key = sha256(model bytes) + device profile hash + input shape.

One file, WAL mode, safe across threads of one service; it survives restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path


class ResultCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, model_sha256 TEXT NOT NULL, "
            "device_hash TEXT NOT NULL, result TEXT NOT NULL, created TEXT DEFAULT CURRENT_TIMESTAMP)"
        )

    @staticmethod
    def key(model_sha256: str, device_hash: str, input_shape: list[int] | None) -> str:
        shape = "x".join(map(str, input_shape)) if input_shape else "model"
        return f"{model_sha256}:{device_hash}:{shape}"

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model_sha256: str, device_hash: str, result: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (key, model_sha256, device_hash, result) VALUES (?, ?, ?, ?)",
                (key, model_sha256, device_hash, json.dumps(result)),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
