"""The trial data cache: a search writes its splits once as plain .npy files that every trial maps.

Array datasets (digits, npz, shards) are split once per search (stage-1 train / validation, and
the test split) and written under the experiment; a trial then memory-maps them instead of
decoding and splitting the dataset again. Image folders are read lazily by each trial.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mnas.files import atomic_path
from search.trials.spec import TrialData

DATA_FILES = ("x_train.npy", "y_train.npy", "x_val.npy", "y_val.npy", "x_test.npy", "y_test.npy")


def cache_trial_data(dataset, val_fraction: float, split_seed: int, directory: Path) -> Path | None:
    """Write the stage-1/stage-2 arrays once as plain .npy, so each trial maps them in a blink."""
    from mnas.data import ArraySource

    if not isinstance(dataset.train, ArraySource):
        return None  # image folders are read lazily by each trial
    directory.mkdir(parents=True, exist_ok=True)
    if all((directory / f).is_file() for f in DATA_FILES):
        return directory
    train, val = dataset.stage1(split_seed, val_fraction)
    return write_trial_arrays(train, val, dataset.test, dataset.num_classes, dataset.classes, directory)


def write_trial_arrays(train, val, test, num_classes: int, classes: list[str], directory: Path) -> Path:
    """The trial data cache's files: x_/y_ .npy per part, then meta.json (which marks it complete)."""
    directory.mkdir(parents=True, exist_ok=True)
    for part, source in {"train": train, "val": val, "test": test}.items():
        for name, arr in (("x", source.x), ("y", source.y)):
            with atomic_path(directory / f"{name}_{part}.npy", suffix=".npy") as tmp:
                np.save(tmp, arr)
    (directory / "meta.json").write_text(json.dumps({"num_classes": num_classes, "classes": classes}))
    return directory


def load_trial_data(data: TrialData, stage: int):
    """(train source, eval source, num_classes) for the trial's stage; stage 1 trains on the
    spec's ``train_fraction`` of its split."""
    from mnas.data import fraction_of

    train, held_out, num_classes = _trial_parts(data, stage)
    if stage == 1 and data.train_fraction < 1:
        train = fraction_of(train, data.train_fraction, data.split_seed)
    return train, held_out, num_classes


def _trial_parts(data: TrialData, stage: int):
    from mnas.data import ArraySource, load_dataset

    if data.cache and Path(data.cache, "meta.json").is_file():
        d = Path(data.cache)
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r")  # noqa: E731
        num_classes = json.loads((d / "meta.json").read_text())["num_classes"]
        val = ArraySource(load("x_val"), load("y_val"))
        train = ArraySource(load("x_train"), load("y_train"))
        if stage == 2:
            full = ArraySource(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
            return full, ArraySource(load("x_test"), load("y_test")), num_classes
        return train, val, num_classes
    dataset = load_dataset(data.spec)
    if stage == 2:
        train, test = dataset.stage2()
        return train, test, dataset.num_classes
    train, val = dataset.stage1(data.split_seed, data.val_fraction)
    return train, val, dataset.num_classes
