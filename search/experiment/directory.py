"""An experiment directory: create or resume it, and prepare what its trials share.

``open_search`` records a new experiment's config or checks a resumed one's;
``prepare_trials`` fails fast on a bad dataset or an unusable latency source, writes the
stage-1 split once as plain .npy for every trial to map, and returns the ``TrialContext``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mnas.errors import MnasError
from search.config import SearchConfig, import_plugins, parse_config
from search.experiment.store import STORE_NAME, Store
from search.trials.spec import TrialContext

RESUMABLE = ("max_trials", "max_parallel_trials", "max_failed_trials", "trial_timeout_s", "stop", "early_stopping", "executor", "name")


def open_store(directory: str | Path) -> Store:
    """The store of an existing experiment, or one clear error."""
    directory = Path(directory)
    if not (directory / STORE_NAME).is_file():
        raise MnasError(f"{directory} is not an experiment directory (no {STORE_NAME})")
    return Store(directory)


def stored_config(store: Store) -> SearchConfig:
    data = store.get_meta("config")
    if data is None:
        raise MnasError(f"{store.dir} holds no search (no config in {store.path.name})")
    if isinstance(data.get("controller"), dict):  # recorded before options were per controller: keep its kind's own
        from search.controllers.registry import own_options

        import_plugins(data.get("plugins"))
        data = {**data, "controller": own_options(data["controller"])}
    return parse_config(data, "stored config")


def dataset_classes(directory: str | Path) -> int | None:
    """The class count an experiment's trials saw (its data cache), if it has one."""
    meta = Path(directory) / "data" / "meta.json"
    return json.loads(meta.read_text())["num_classes"] if meta.is_file() else None


def open_search(config: SearchConfig | None, directory: Path, resume: bool) -> SearchConfig:
    """Record a new experiment's config, or load (and optionally extend) a resumed one's."""
    if resume:
        store = open_store(directory)
    else:
        store = Store(directory)
    try:
        if resume:
            old = stored_config(store)
            if config is None:
                return old
            if config.space.build() == old.space.build():  # the same space, however it is written
                config = config.model_copy(update={"space": old.space})
            changed = [k for k in SearchConfig.model_fields if k not in RESUMABLE and getattr(old, k) != getattr(config, k)]
            if changed:
                raise MnasError(f"a resumed search keeps its {', '.join(changed)}; only max_trials, parallelism, stop rules and the executor may change")
            store.set_meta("config", config.model_dump(mode="json"))
            return config
        if store.get_meta("config") is not None:
            raise MnasError(f"{directory} already holds a search; use --resume {directory} to continue it, or another --out")
        config = config.model_copy(update={"space": config.space.recorded()})
        store.set_meta("config", config.model_dump(mode="json"))
        store.set_meta("created", time.time())
        return config
    finally:
        store.close()


def check_predictor(config: SearchConfig, device: dict, dataset_classes: int) -> None:
    """The predictor must be built for the source's device, at the measured resolution and class count."""
    from search.latency.predictor import Predictor

    lat = config.latency
    predictor = Predictor.load(lat.predictor)
    predictor.check_device(device["name"], device["hash"])
    predictor.tables(lat.resolution)  # refuses a resolution the file does not cover
    classes = lat.num_classes or dataset_classes
    if predictor.num_classes != classes:
        raise MnasError(f"{lat.predictor} was built for {predictor.num_classes} classes; this search measures models with {classes}")


def prepare_trials(config: SearchConfig, directory: Path | None, tuning=None, check_latency: bool = True) -> TrialContext:
    """Load the dataset, cache its split in DIR/data, check the latency source; the shared context."""
    from latency_service.client import LatencyServiceError
    from mnas.data import load_dataset
    from search.trials.data import cache_trial_data

    dataset = load_dataset(config.proxy.data)
    cache = None
    if directory is not None:
        directory = Path(directory).resolve()  # specs carry paths into it to processes with another cwd
        written = cache_trial_data(dataset, config.proxy.val_fraction, config.proxy.split_seed, Path(directory) / "data")
        cache = str(written) if written else None
    if check_latency:
        try:
            measurer = config.latency.measurer()
            device = measurer.devices()[0]
            measurer.close()
        except LatencyServiceError as exc:
            raise MnasError(f"latency source unusable: {exc}") from None
        supported = device.get("precisions") or ["float32", "int8", "dynamic"]  # services before precisions: any
        if config.latency.quantize and config.latency.quantize not in supported:
            raise MnasError(f"latency.quantize: {config.latency.quantize}, but device {device['name']} runs only {', '.join(supported)} "
                            f"(its profile's precisions)")
        if config.latency.predictor:
            check_predictor(config, device, dataset.num_classes)
    from search.trials.executors import gpu_count

    # measurement and training share the CPU only where trials train on it and measure in-process
    alone = config.latency.measure_alone and bool(config.latency.device) and (config.proxy.device == "cpu" or gpu_count() == 0)
    return TrialContext.create(config, dataset.num_classes, cache, tuning, Path(directory) if directory else None, alone)
