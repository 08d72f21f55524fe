"""Building a predictor file for a device: layer tables per resolution from measurements and profiles, then the corrections."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mnas.arch import Architecture
from mnas.files import write_atomic
from mnas.layers import LayerConfig, arch_layers, space_layers
from search.latency.predictor.features import COST_TERMS, FORMAT, LATENCY_FEATURES, LAYER_KINDS, MEMORY_FEATURES, VERSION, PredictorError
from search.latency.predictor.fitting import (
    MIN_CV_MODELS,
    _apply,
    _linear,
    choose_correction,
    correction_folds,
    correction_matrix,
    error_figures,
    layer_models,
    layer_table,
    sample_layers,
)
from search.latency.predictor.measurements import MeasurementCache, Measurer


def in_model_profiles(measurer: Measurer, archs: list[Architecture], resolution: int, num_classes: int, log=None
                      ) -> list[tuple[list[LayerConfig], list[float]]]:
    """Each profiled model's layers and their times inside it."""
    profiles = []
    for i, arch in enumerate(archs, 1):
        layers = [layer for _, layer in arch_layers(arch, resolution, num_classes)]
        profiles.append((layers, measurer.in_model(arch, resolution, num_classes)))
        if log and (i % 25 == 0 or i == len(archs)):
            log(f"  {resolution} px: {i}/{len(archs)} whole models profiled per operator")
    return profiles


def in_model_samples(profiles: list[tuple[list[LayerConfig], list[float]]]) -> dict[str, tuple[LayerConfig, float]]:
    """Each layer configuration seen inside the profiled models -> its median time there."""
    seen: dict[str, tuple[LayerConfig, list[float]]] = {}
    for layers, times in profiles:
        for layer, ms in zip(layers, times):
            seen.setdefault(layer.key, (layer, []))[1].append(ms)
    return {key: (layer, float(np.median(times))) for key, (layer, times) in seen.items()}


def table_figures(table: dict, model_layers: list[list[LayerConfig]]) -> list[list[float]]:
    return [[table[layer.key][0] for layer in layers] for layers in model_layers]


def cross_fitted(profiles: list, model_layers: list[list[LayerConfig]], train: np.ndarray, layer_model: str, table: dict,
                 seed: int) -> list[list[float]]:
    """Layer figures of the measured models for fitting the correction: each training model's
    from a layer model fitted without its own profile (the correction's folds), as a new
    architecture's come from profiles of other models; the held-out ones (never profiled) from
    the table. ``profiles`` starts with the training models', in order. With in-sample figures
    the correction trusts the table too much: at 64 px on an Intel VM cross-fitting took unseen
    models from 97.0% to 98.5% within +-10% (the cross-validation then also chose better)."""
    figures = table_figures(table, model_layers)
    trained = np.flatnonzero(train)
    if len(trained) < MIN_CV_MODELS:
        return figures
    for _, test in correction_folds(seed).split(trained):
        left_out = set(int(i) for i in test)
        samples = in_model_samples([p for i, p in enumerate(profiles) if i not in left_out])
        model = layer_models(seed)[layer_model]().fit([layer for layer, _ in samples.values()],
                                                       np.array([ms for _, ms in samples.values()]))
        for i in test:
            figures[trained[i]] = [float(ms) for ms in model.predict(model_layers[trained[i]])]
    return figures


def build_resolution(measurer: Measurer, space, resolution: int, num_classes: int, layer_budget: int, models: int,
                     profiled_models: int, seed: int, log=None) -> dict:
    started = time.perf_counter()
    fresh_before = measurer.fresh
    every = space_layers(space, resolution, num_classes)
    tables: dict[str, tuple[dict, list[float], dict]] = {}  # layer times -> (table, cost rates, layer model choice)
    sample = sample_layers(every, layer_budget, seed) if layer_budget else []
    if sample:
        alone = {}
        for i, layer in enumerate(sample, 1):
            alone[layer.key] = (layer, measurer.layer(layer)["latency_ms"])
            if log and (i % 50 == 0 or i == len(sample)):
                log(f"  {resolution} px: {i}/{len(sample)} layers measured")
        tables["alone"] = layer_table(alone, every, seed, keep_measured=True)

    rng = np.random.default_rng(seed + 1)
    archs = [space.sample(rng) for _ in range(models)]
    model_layers, lat, mem = [], [], []
    for i, arch in enumerate(archs, 1):
        model_layers.append([layer for _, layer in arch_layers(arch, resolution, num_classes)])
        m = measurer.model(arch, resolution, num_classes)
        lat.append(m["latency_ms"])
        mem.append(m["memory_mb"])
        if log and (i % 10 == 0 or i == models):
            log(f"  {resolution} px: {i}/{models} whole models measured")
    lat, mem = np.array(lat), np.array(mem)
    held = np.arange(len(lat)) % 5 == 0  # a fifth held out for the figures, then refit on all

    figures = {times: table_figures(table, model_layers) for times, (table, _, _) in tables.items()}  # for the correction
    profiled = []
    if profiled_models:  # build_predictor zeroes it where the source cannot profile
        # the measured models (never the held-out ones, whose figures stay honest), then more from the space
        extra = np.random.default_rng(seed + 2)
        profiled = [a for a, h in zip(archs, held) if not h][:profiled_models]
        profiled += [space.sample(extra) for _ in range(profiled_models - len(profiled))]
        profiles = in_model_profiles(measurer, profiled, resolution, num_classes, log)
        table, _, choice = tables["in a model"] = layer_table(in_model_samples(profiles), every, seed, keep_measured=False)
        figures["in a model"] = cross_fitted(profiles, model_layers, ~held, choice["chosen"], table, seed)

    # the layer times (alone or in a model) and feature set whose correction cross-validates best
    chosen = {}
    for times in tables:
        per_model = list(zip(figures[times], model_layers))
        name, scores = choose_correction(LATENCY_FEATURES, per_model, lat, held, seed)
        chosen[times] = (scores.get(name, 0.0), name, scores, per_model)
    times = min(chosen, key=lambda t: (round(chosen[t][0], 2), list(tables).index(t)))
    _, lat_name, lat_cv, per_model = chosen[times]
    table, rates, layer_choice = tables[times]
    mem_name, mem_cv = choose_correction(MEMORY_FEATURES, per_model, mem, held, seed)
    x_lat, x_mem = correction_matrix(LATENCY_FEATURES[lat_name], per_model), correction_matrix(MEMORY_FEATURES[mem_name], per_model)
    lat_fit, mem_fit = _linear(x_lat[~held], lat[~held]), _linear(x_mem[~held], mem[~held])
    validation = {"latency": error_figures(_apply(lat_fit, x_lat[held]), lat[held]),
                  "memory": error_figures(_apply(mem_fit, x_mem[held]), mem[held]), "layer_model": layer_choice,
                  "layer_times": {"chosen": times, "cv_mean_abs_error_pct": {t: c[0] for t, c in chosen.items()}},
                  "latency_correction": {"chosen": lat_name, "cv_mean_abs_error_pct": lat_cv},
                  "memory_correction": {"chosen": mem_name, "cv_mean_abs_error_pct": mem_cv}}
    return {
        "layers": table, "layer_times": times, "fallback": {"terms": [*COST_TERMS, *LAYER_KINDS], "rates": rates},
        "latency_fit": {**_linear(x_lat, lat), "features": lat_name}, "memory_fit": {**_linear(x_mem, mem), "features": mem_name},
        "validation": validation,
        "build": {"layer_configs": len(every), "layers_measured": len(sample), "models_measured": models, "models_profiled": len(profiled),
                  "fresh_measurements": measurer.fresh - fresh_before, "seconds": round(time.perf_counter() - started, 1)},
    }


LAYERS_ALONE = 400  # layers measured alone per resolution where whole models cannot be profiled per operator
# Whole models profiled per operator per resolution, where the source can. On an Intel VM, of 200
# unseen models within +-10%: 64 px 97.0% (300 profiled, before cross-fitting), 98.5% (300),
# 100% (500); 224 px 99.5% at both, RMSE 3.0% -> 2.7%. Each costs 1.2-2.3 s (BENCHMARKS.md).
PROFILED_MODELS = 500


def build_predictor(source, space, resolutions: list[int], num_classes: int, cache_path: str | Path, layer_budget: int | None,
                    models: int, profiled_models: int | None = None, seed: int = 0, log=None) -> dict:
    """Measure and fit; returns the predictor document (write it with ``save``). ``layer_budget``
    None: no layers alone where the build profiles whole models (their layers' times inside a
    model predict better: BENCHMARKS.md), else ``LAYERS_ALONE``; ``profiled_models`` None:
    ``PROFILED_MODELS``."""
    cache = MeasurementCache(cache_path)
    try:
        measurer = Measurer(source, cache)
        if measurer.profiler is None:
            profiled_models = 0
        elif profiled_models is None:
            profiled_models = PROFILED_MODELS
        if layer_budget is None:
            layer_budget = 0 if profiled_models else LAYERS_ALONE
        if not layer_budget and not profiled_models:
            raise PredictorError("with no layers measured alone (--layers 0) the layer times come from per-operator profiles of whole "
                                 "models, which need an onnxruntime device profile measured here (--device) and --profiled-models > 0")
        per_res = {}
        for r in resolutions:
            per_res[str(r)] = build_resolution(measurer, space, r, num_classes, layer_budget, models, profiled_models, seed, log)
        return {"format": FORMAT, "version": VERSION, "device": measurer.device, "model_format": measurer.format,
                "runtime": measurer.runtime, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "num_classes": num_classes,
                "space": {"name": space.name, "base": space.base.summary(), "act": space.act}, "resolutions": per_res}
    finally:
        cache.close()


def save(document: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, json.dumps(document))
