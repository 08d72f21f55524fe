"""Every search is a trial table in waiting: its finished stage-1 trials (token indices, top-1,
latency) exported in the format ``mnas controllers compare`` reads, so the tables the controllers
are judged on grow with each real run."""

from __future__ import annotations

from pathlib import Path

from mnas.errors import MnasError
from search.controllers.surrogate import TableRow, TrialTable


def experiment_table(directory: str | Path) -> TrialTable:
    from search.experiment.directory import open_store, stored_config

    store = open_store(directory)
    try:
        config = stored_config(store)
        rows = [TableRow(t.indices, t.accuracy, t.latency_ms, float(t.metrics.get("timings", {}).get("train_s") or 0.0))
                for t in store.trials(stage=1, status="succeeded") if t.indices and t.latency_ms and t.accuracy is not None]
    finally:
        store.close()
    if not rows:
        raise MnasError(f"{directory} has no finished stage-1 trials with token indices, top-1 and latency to export")
    space = config.space.definition or config.space.name
    return TrialTable(space, config.proxy.model_dump(mode="json", exclude={"prefilter"}), config.latency.model_dump(mode="json"), rows)
