"""The learning-curve file of a running trial: JSON lines the search reads while the trial trains."""

from __future__ import annotations

import json
from pathlib import Path


def curve_file(directory: Path, trial_id: int) -> Path:
    """Where a stage-1 trial writes its learning curve as it trains."""
    return Path(directory) / "trials" / str(trial_id) / "curve.jsonl"


class CurveWriter:
    """A trial's learning curve as JSON lines, flushed as it trains: first its latency and memory,
    then one line per epoch; the search reads it to stop hopeless trials (search.stages.early_stopping)."""

    def __init__(self, path: str | Path, latency_ms: float | None, memory_mb: float | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"latency_ms": latency_ms, "memory_mb": memory_mb}) + "\n")

    def epoch(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_curve(path: str | Path) -> tuple[dict, list[dict]]:
    """(header, epochs so far) of a curve file; a line still being written is left for later."""
    path = Path(path)
    if not path.is_file():
        return {}, []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return (records[0], records[1:]) if records else ({}, [])
