"""A latency and memory predictor built for the user's own device, from the user's own source.

Building (``build_predictor``, ``mnas predictor build``), per input resolution:

1. every layer configuration the search space can produce (``mnas.layers.space_layers``);
   a stratified sample of them (all stems and heads, then round-robin over groups of
   input size x op x kernel x stride) is exported alone as a tiny model and measured
   through the same protocol as the service (in-process profile or a service URL);
2. a layer model fills in the layers not measured, so the file holds a complete table: layer
   key -> milliseconds. It prices each layer's cost terms (multiply-adds by kernel kind,
   activation traffic, operators, a fixed cost per kind) at the device's own rates, fitted by
   non-negative least squares, and corrects that estimate with a regression on layer features
   (random forest, extra trees, gradient-boosted trees or none, chosen by cross-validation);
   the rates alone carry over to corners of the space no tree has seen;
3. whole models sampled from the space are measured; a linear correction maps the layer
   figures to the model's latency (each layer measured alone carries the runtime's fixed
   cost of one inference and its own layout reorders, and fusion and cache effects make
   layers not exactly additive), and a linear model on weights and activation sizes gives
   peak memory; for each, the feature set (``LATENCY_FEATURES``, ``MEMORY_FEATURES``) is
   chosen by cross-validation, and every fit minimises relative error. A fifth of these
   models is held out first to report honest validation figures;
4. where the runtime profiles per operator here (an onnxruntime profile measured in-process),
   whole models (the measured ones not held out, then more from the space) are also profiled
   in the measurement's conditions (``devices.profiling``), each node's time counted with its
   layer (``search.latency.profiling.layer_times``): a second table holds each layer's time *inside*
   a model, regressed over the space like the first. A layer's kernels run 0.7-2x their time
   alone once inside a model (caches, layouts, what ran before), which no correction of sums
   recovers; their time in a model does. The correction is fitted on cross-fitted figures
   (each measured model's from a layer model fitted without its own profile,
   ``cross_fitted``), and its cross-validation picks the table. Where it can profile, a build measures no layers
   alone unless asked (``--layers N``): step 1 then costs more time than it gains.

Every measurement is cached in SQLite (``--cache``), so an interrupted build resumes.
Predicting needs only the JSON file: ``Predictor.load(path).predict(arch)`` sums table
entries (0.3-0.5 ms per architecture in Python), and prices a layer outside the table (e.g.
a preset off the space's grid) at the stored cost rates.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnas.arch import OPS, SKIPS, Architecture
from mnas.errors import MnasError
from mnas.files import write_atomic
from mnas.layers import LayerConfig, arch_layers, space_layers

FORMAT, VERSION = "mnas-latency-predictor", 2


_LOADED: dict = {}  # (path, mtime) -> Predictor: the last one loaded


class PredictorError(MnasError):
    """A predictor file is missing, damaged, or made for another device."""


def features(layer: LayerConfig) -> list[float]:
    """Numeric description of a layer for the residual regressions (sizes in log scale, one-hot kinds)."""
    c = _costs(layer)
    dense_work = c["macs"] - c["depthwise_macs"]
    return [
        math.log1p(dense_work), math.log1p(c["depthwise_macs"]), math.log1p(c["params"]),
        math.log1p(c["act_in"]), math.log1p(c["act_out"]),
        math.log(layer.cin), math.log(layer.cout), math.log(layer.size), float(layer.stride), float(layer.kernel), float(layer.se > 0),
        float(layer.kind == "stem"), float(layer.kind == "head"),
        *(float(layer.kind == "layer" and layer.op == op) for op in OPS), *(float(layer.skip == s) for s in SKIPS),
        math.log1p(c["act_peak"]), math.log1p(c["macs"]), math.log1p(dense_work / (c["act_in"] + c["act_out"])),
    ]


# What a layer's time is made of, to first order: multiply-adds of each kernel kind, the elements
# it reads, writes and holds, the operators it runs, and a fixed cost per kind of layer; each
# term is paid at the device's own rate, which the build fits (non-negative least squares).
COST_TERMS = ("conv_macs", "pointwise_macs", "depthwise_macs", "dense_macs", "act_in", "act_out", "act_peak", "ops")
LAYER_KINDS = ("stem", "head", "layer")


def cost_terms(layer: LayerConfig) -> list[float]:
    c = _costs(layer)
    return [c[t] for t in COST_TERMS] + [float(layer.kind == k) for k in LAYER_KINDS]


@functools.lru_cache(maxsize=1 << 16)
def _costs(layer: LayerConfig) -> dict[str, float]:
    return layer.costs()  # a layer's figures, asked for by several feature sets per prediction


def _sizes(layers: list[LayerConfig]) -> list[dict]:
    return [_costs(layer) for layer in layers]


# Whole-model corrections: named feature sets of a model (its layers' table figures and its
# layers), each a linear fit to the whole-model measurements; the build picks one per
# quantity by cross-validation, and the file names it.
# Latency: a layer measured alone carries the runtime's fixed cost of one inference and the
# layout reorders at its own boundaries (growing with its input and output sizes), which a
# layer inside a model mostly does not pay. Alone, a layer run over and over also keeps its
# weights and activations in the CPU's caches; inside a model each layer reads them from
# further away, so a model's time grows with its total weights (at 64 px, where weights
# outweigh activations: 93.0% -> 95.0% of unseen models within +-10%), and how far a layer
# alone misses its time in the model depends on its feature-map size, which the sums per
# level (112, 56, 28, 14, 7 px at 224 px) let the fit weigh apart (at 224 px on an Intel VM:
# CV error 5.3% against 6.0-6.2% for the other sets). Weights enter the latency sets in
# millions: a scale near the other inputs keeps the least-squares fit well conditioned.
# Layer times inside a model are its kernels' times; the runtime also pays a fixed cost per
# operator it dispatches, between kernels (at 64 px a model's run took 1.1-1.4x its kernels),
# which the model's operator count carries better than its layer count (64 px on an Intel VM:
# 97.0% -> 98.5% of unseen models within +-10%; 224 px RMSE 3.2% -> 2.9%).
# Memory: weights and the largest activations, either at layer boundaries or alive at once
# inside a layer (an inverted residual's expanded tensors, which dominate at high
# resolution), and how the runtime's arena grows with the activations it has seen; the
# head's weights apart (its 1x1 convolution to 1280 channels and the classifier are the
# largest tensors: at 64 px, where weights dominate, onnxruntime's peak grows faster with
# them than with the rest, 92% of unseen models within +-10% against 86% without); and the
# largest weight tensor outside the head: where weights dominate, the peak is reached while
# the session loads, and models of the same size peak 2.5x or 3.5x their weights at load
# (freed again once loaded), as if the largest tensor were held twice over while the
# optimiser rewrites it (at 64 px on an Intel VM: 92.0% -> 96.5% of unseen models).
LATENCY_FEATURES = {
    "layer sum, layer count": lambda ms, layers: [sum(ms), float(len(ms))],
    "layer sum, layer count, boundary activations": lambda ms, layers: [
        sum(ms), float(len(ms)), sum(c["act_in"] + c["act_out"] for c in _sizes(layers)) / 1e6],
    "layer sum per kind, layer count": lambda ms, layers: [*_kind_sums(ms, layers), float(len(ms))],
    "layer sum per kind and per level, layer count": lambda ms, layers: [*_kind_sums(ms, layers), *_level_sums(ms, layers), float(len(ms))],
    "layer sum, layer count, weights": lambda ms, layers: [sum(ms), float(len(ms)), _weights(layers) / 1e6],
    "layer sum per kind and per level, layer count, weights": lambda ms, layers: [
        *_kind_sums(ms, layers), *_level_sums(ms, layers), float(len(ms)), _weights(layers) / 1e6],
    "layer sum, operator count": lambda ms, layers: [sum(ms), _operators(layers)],
    "layer sum per kind and per level, layer count, weights, operator count": lambda ms, layers: [
        *_kind_sums(ms, layers), *_level_sums(ms, layers), float(len(ms)), _weights(layers) / 1e6, _operators(layers)],
}
MEMORY_FEATURES = {
    "weights, largest activations, layer count": lambda ms, layers: [
        _weights(layers), _largest_boundary(layers), float(len(layers))],
    "weights, largest activations, all activations, layer count": lambda ms, layers: [
        _weights(layers), _largest_boundary(layers), sum(c["act_out"] for c in _sizes(layers)), float(len(layers))],
    "weights, largest live activations, layer count": lambda ms, layers: [
        _weights(layers), _largest_live(layers), float(len(layers))],
    "weights, largest live and boundary activations, layer count": lambda ms, layers: [
        _weights(layers), _largest_live(layers), _largest_boundary(layers), float(len(layers))],
    "weights, head weights, largest live activations, layer count": lambda ms, layers: [
        _weights(layers), _head_weights(layers), _largest_live(layers), float(len(layers))],
    "weights, head weights, largest tensor outside the head, largest live activations, layer count": lambda ms, layers: [
        _weights(layers), _head_weights(layers), _largest_tensor(layers), _largest_live(layers), float(len(layers))],
}
DEFAULT_LATENCY_FEATURES, DEFAULT_MEMORY_FEATURES = "layer sum, layer count", "weights, largest activations, layer count"


def _kind(layer: LayerConfig) -> str:
    return layer.op if layer.kind == "layer" else layer.kind


def _kind_sums(ms: list[float], layers: list[LayerConfig]) -> list[float]:
    return [sum(m for m, layer in zip(ms, layers) if _kind(layer) == k) for k in ("stem", "head", *OPS)]


LEVELS = 5  # the space's downsamplings after the stem: 112, 56, 28, 14 and 7 px at 224 px


def _level_sums(ms: list[float], layers: list[LayerConfig]) -> list[float]:
    """The block layers' figures summed per feature-map level, log2(resolution / input size):
    1 for the stem's output size, up to LEVELS (deeper ones count in the last)."""
    resolution = layers[0].size  # the stem's input
    sums = [0.0] * LEVELS
    for m, layer in zip(ms, layers):
        if layer.kind == "layer":
            sums[min(max(round(math.log2(resolution / layer.size)), 1), LEVELS) - 1] += m
    return sums


def _weights(layers: list[LayerConfig]) -> float:
    """A model's weights (parameters of its convolutions and dense layers)."""
    return sum(c["params"] for c in _sizes(layers))


def _operators(layers: list[LayerConfig]) -> float:
    return float(sum(c["ops"] for c in _sizes(layers)))


def _head_weights(layers: list[LayerConfig]) -> float:
    return sum(c["params"] for c, layer in zip(_sizes(layers), layers) if layer.kind == "head")


def _largest_live(layers: list[LayerConfig]) -> float:
    """The most activation elements alive at once inside any one layer."""
    return max(c["act_peak"] for c in _sizes(layers))


def _largest_boundary(layers: list[LayerConfig]) -> float:
    """The largest input plus output of any one layer (elements)."""
    return max(c["act_in"] + c["act_out"] for c in _sizes(layers))


def _largest_tensor(layers: list[LayerConfig]) -> float:
    """The largest single weight tensor of the stem and blocks (the head's are counted apart)."""
    return max(c["largest_tensor"] for c, layer in zip(_sizes(layers), layers) if layer.kind != "head")


# ----- measurements, cached -------------------------------------------------------------------
class MeasurementCache:
    """(device hash, item key) -> the source's answer, in SQLite; what makes a build resumable."""

    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS measurements (device TEXT, key TEXT, result TEXT NOT NULL, PRIMARY KEY (device, key))")

    def get(self, device: str, key: str) -> dict | None:
        row = self.db.execute("SELECT result FROM measurements WHERE device = ? AND key = ?", (device, key)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, device: str, key: str, result: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?)", (device, key, json.dumps(result)))

    def close(self) -> None:
        self.db.close()


PROFILED_RUNS, PROFILE_WARMUP = 20, 10  # per profiled whole model: per-node medians over 20 runs


class Measurer:
    """Exports a layer or a model and measures it on the source, through the cache."""

    def __init__(self, source, cache: MeasurementCache):
        self.source, self.cache = source, cache
        device = source.devices()[0]
        self.device = {"name": device["name"], "hash": device["hash"]}
        self.format = source.model_format()
        self.runtime: dict = {}
        self.fresh = 0

    def _cached(self, key: str, suffix: str, export, compute) -> dict:
        """The cached answer for ``key``; else the item exported to a temporary ``m.SUFFIX`` file,
        ``compute(path)``, cached."""
        hit = self.cache.get(self.device["hash"], key)
        if hit is None:
            with tempfile.TemporaryDirectory(prefix="mnas-predictor-") as tmp:
                hit = compute(export(Path(tmp) / f"m.{suffix}"))
            self.cache.put(self.device["hash"], key, hit)
            self.fresh += 1
        return hit

    def _measure(self, key: str, export) -> dict:
        def measured(path) -> dict:
            result = self.source.measure(path)
            return {"latency_ms": result["latency_ms"], "memory_mb": result["peak_memory_mb"], "runtime": result.get("runtime", {})}

        hit = self._cached(key, self.format, export, measured)
        self.runtime = self.runtime or hit["runtime"]
        return hit

    def layer(self, layer: LayerConfig) -> dict:
        from mnas.export import export_model
        from mnas.model import build_layer

        shape = (1, layer.cin, layer.size, layer.size)
        return self._measure("layer:" + layer.key, lambda p: export_model(build_layer(layer), p, self.format, input_shape=shape))

    def model(self, arch: Architecture, resolution: int, num_classes: int) -> dict:
        from mnas.export import export_architecture

        key = f"model:{resolution}:{num_classes}:{arch.canonical()}"
        return self._measure(key, lambda p: export_architecture(arch, p, self.format, resolution, num_classes))

    @property
    def profiler(self):
        """The device profile whose runtime profiles per operator here (onnxruntime, in-process), else None."""
        profile = getattr(self.source, "profile", None)
        return profile if profile is not None and profile.backend == "onnxruntime" else None

    def in_model(self, arch: Architecture, resolution: int, num_classes: int) -> list[float]:
        """Each layer's time inside the whole model (ms, ``arch_layers`` order), from the runtime's
        profiler in the measurement's conditions (``devices.profiling``)."""
        from devices.errors import MeasurementError
        from devices.profiling import profile_model
        from mnas.export import export_architecture
        from search.latency.profiling import layer_times

        def profiled(path) -> dict:
            try:
                result = profile_model(self.profiler, path, runs=PROFILED_RUNS, warmup=PROFILE_WARMUP)
            except MeasurementError as exc:
                raise PredictorError(f"profiling a whole model on {self.device['name']} failed: {exc}") from None
            return {"layers_ms": layer_times(arch, result["nodes"], resolution, num_classes)}

        key = f"profile:{resolution}:{num_classes}:{arch.canonical()}"
        return self._cached(key, "onnx", lambda p: export_architecture(arch, p, "onnx", resolution, num_classes), profiled)["layers_ms"]


# ----- building ------------------------------------------------------------------------------
def sample_layers(layers: list[LayerConfig], budget: int, seed: int) -> list[LayerConfig]:
    """All stems and heads, then round-robin over (size, op, kernel, stride) groups, shuffled."""
    rng = np.random.default_rng(seed)
    chosen = [layer for layer in layers if layer.kind != "layer"]
    groups: dict[tuple, list[LayerConfig]] = {}
    for layer in layers:
        if layer.kind == "layer":
            groups.setdefault((layer.size, layer.op, layer.kernel, layer.stride), []).append(layer)
    pools = [list(rng.permutation(len(g))) for g in groups.values()]
    members = list(groups.values())
    while len(chosen) < budget and any(pools):
        for pool, group in zip(pools, members):
            if pool and len(chosen) < budget:
                chosen.append(group[pool.pop()])
    return chosen


def fit_cost_rates(layers: list[LayerConfig], latency_ms: np.ndarray) -> list[float]:
    """The device's rate for each cost term (ms per unit, all >= 0), fitted to relative error so
    that small layers count as much as large ones."""
    from scipy.optimize import nnls

    terms = np.array([cost_terms(layer) for layer in layers])
    scale = np.where(terms.max(axis=0) > 0, terms.max(axis=0), 1.0)
    rates, _ = nnls(terms / scale / latency_ms[:, None], np.ones(len(latency_ms)))
    return [float(r) for r in rates / scale]


def cost_estimate(rates: list[float], layers: list[LayerConfig]) -> np.ndarray:
    return np.maximum(np.array([cost_terms(layer) for layer in layers]) @ np.array(rates), 1e-6)


class LayerModel:
    """A layer's latency: the cost terms at the device's fitted rates, times a learned correction
    (a regression of log(measured / estimate) on the layer's features, or none). The rates alone
    extrapolate soundly across the space's product of choices; the correction learns what they
    miss (kernel efficiency by shape, cache effects)."""

    def __init__(self, residual=None):
        self.residual, self.rates = residual, None

    def fit(self, layers: list[LayerConfig], latency_ms: np.ndarray) -> LayerModel:
        self.rates = fit_cost_rates(layers, latency_ms)
        if self.residual is not None:
            x = np.array([features(layer) for layer in layers])
            self.residual.fit(x, np.log(latency_ms / cost_estimate(self.rates, layers)))
        return self

    def predict(self, layers: list[LayerConfig]) -> np.ndarray:
        estimate = cost_estimate(self.rates, layers)
        if self.residual is None:
            return estimate
        return estimate * np.exp(self.residual.predict(np.array([features(layer) for layer in layers])))


def layer_models(seed: int) -> dict:
    """The layer models the build chooses from: name -> a factory of an unfitted one."""
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor, RandomForestRegressor

    return {
        "cost terms": lambda: LayerModel(),
        "cost terms x random forest": lambda: LayerModel(RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)),
        "cost terms x extra trees": lambda: LayerModel(ExtraTreesRegressor(n_estimators=300, min_samples_leaf=2, random_state=seed, n_jobs=1)),
        "cost terms x gradient-boosted trees": lambda: LayerModel(
            HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, min_samples_leaf=5, random_state=seed)),
    }


def fit_layer_model(layers: list[LayerConfig], latency_ms: list[float], seed: int = 0) -> tuple[LayerModel, dict]:
    """The layer model with the lowest cross-validated error, refitted on all. The error that
    decides is the absolute error summed over layers, in % of their summed time: a model's
    latency is a sum of layers, so a slow layer's error matters more than a fast one's."""
    from sklearn.model_selection import KFold

    y = np.array(latency_ms, dtype=float)
    candidates = layer_models(seed)
    folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed)
    summed, mean = {}, {}
    for name, make in candidates.items():
        pred = np.zeros(len(y))
        for train, test in folds.split(layers):
            pred[test] = make().fit([layers[i] for i in train], y[train]).predict([layers[i] for i in test])
        summed[name] = float(np.sum(np.abs(pred - y)) / np.sum(y) * 100)
        mean[name] = float(np.mean(np.abs(pred / y - 1)) * 100)
    best = min(summed, key=summed.get)
    return candidates[best]().fit(layers, y), {"chosen": best, "cv_summed_abs_error_pct": summed, "cv_mean_abs_error_pct": mean}


def error_figures(predicted: np.ndarray, measured: np.ndarray) -> dict:
    from scipy.stats import kendalltau

    rel = predicted / measured - 1
    return {"n": int(len(measured)), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)), "rmse_pct": float(np.sqrt(np.mean(rel ** 2)) * 100),
            "kendall_tau": float(kendalltau(predicted, measured).statistic) if len(measured) > 1 else None}


def layer_table(samples: dict[str, tuple[LayerConfig, float]], every: list[LayerConfig], seed: int, keep_measured: bool
                ) -> tuple[dict, list[float], dict]:
    """A complete table (layer key -> [ms, 1 if sampled else 0]) from sampled layers: the layer
    model chosen by cross-validation fills in the rest (and, unless ``keep_measured``, smooths
    the samples too), and its cost rates price layers outside the space's grid."""
    sampled = [layer for layer, _ in samples.values()]
    model, choice = fit_layer_model(sampled, [ms for _, ms in samples.values()], seed)
    predicted = model.predict(every)
    table = {layer.key: [round(float(ms), 6), int(layer.key in samples)] for layer, ms in zip(every, predicted)}
    if keep_measured:
        table.update({key: [round(ms, 6), 1] for key, (_, ms) in samples.items()})
    return table, model.rates, choice


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


def correction_matrix(feature_set, per_model: list[tuple[list[float], list[LayerConfig]]]) -> np.ndarray:
    return np.array([feature_set(ms, layers) for ms, layers in per_model], dtype=float)


MIN_CV_MODELS = 10  # fewer training models than this: no cross-validation, the first (simplest) set


def correction_folds(seed: int):
    """The 5 folds of the training models (those not held out) that the correction is cross-validated on."""
    from sklearn.model_selection import KFold

    return KFold(n_splits=5, shuffle=True, random_state=seed)


def choose_correction(sets: dict, per_model: list, y: np.ndarray, held: np.ndarray, seed: int) -> tuple[str, dict]:
    """The feature set whose linear fit has the lowest cross-validated error (% of the measured
    value) on the models not held out; ties and tiny samples keep the first (simplest) set."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_predict

    train = ~held
    if train.sum() < MIN_CV_MODELS:
        return next(iter(sets)), {}
    folds = correction_folds(seed)
    weights = {"sample_weight": _relative_weights(y[train])}
    scores = {}
    for name, feature_set in sets.items():
        x = correction_matrix(feature_set, per_model)[train]
        pred = cross_val_predict(LinearRegression(), x, y[train], cv=folds, params=weights)
        scores[name] = float(np.mean(np.abs(pred / y[train] - 1)) * 100)
    best = min(scores, key=lambda name: (round(scores[name], 1), list(sets).index(name)))
    return best, scores


def _relative_weights(y: np.ndarray) -> np.ndarray:
    """Least squares weighted by 1/y^2 minimises the squared *relative* error, which is what the
    predictor is judged on (share within +-10%): a 1 ms miss on a 3 ms model counts more than on a
    20 ms one. At 224 px on an Intel VM it took unseen models from 87.5% to 90.5% within +-10%."""
    return 1.0 / np.asarray(y, dtype=float) ** 2


def _linear(x: np.ndarray, y: np.ndarray) -> dict:
    """A least-squares fit on relative error, as plain JSON numbers."""
    from sklearn.linear_model import LinearRegression

    fit = LinearRegression().fit(x, y, sample_weight=_relative_weights(y))
    return {"coef": [float(c) for c in fit.coef_], "intercept": float(fit.intercept_)}


def _apply(fit: dict, x: np.ndarray) -> np.ndarray:
    return np.asarray(x) @ np.array(fit["coef"]) + fit["intercept"]


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


# ----- predicting -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    peak_memory_mb: float
    blocks: list[float]  # summed layer figures per stage: stem, blocks 1..n, head (before the whole-model correction)
    off_table: int  # layers predicted by the fallback model

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "peak_memory_mb": self.peak_memory_mb, "blocks_ms": self.blocks, "off_table_layers": self.off_table}


class Predictor:
    def __init__(self, document: dict, source: str = "predictor"):
        self.doc, self.source = document, source
        self.device = document["device"]
        self.num_classes = document["num_classes"]

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """The predictor in ``path``; kept per file and modification time, since an in-process
        evaluator (the supernet's) predicts for thousands of candidates."""
        path = Path(path)
        key = (str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else None)
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = cls._read(path)
        return _LOADED[key]

    @classmethod
    def _read(cls, path: Path) -> Predictor:
        if not path.is_file():
            raise PredictorError(f"predictor file not found: {path}")
        try:
            doc = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise PredictorError(f"{path} is not a predictor file (not valid JSON: {exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PredictorError(f"{path} is not a predictor file (no '{FORMAT}' format marker)")
        if doc.get("version") != VERSION:
            raise PredictorError(f"{path} is predictor format version {doc.get('version')}; this mnas reads version {VERSION}: rebuild it")
        missing = [k for k in ("device", "num_classes", "resolutions") if k not in doc]
        if missing or not doc["resolutions"]:
            raise PredictorError(f"{path} is damaged: missing {', '.join(missing) or 'resolutions'}")
        terms = [*COST_TERMS, *LAYER_KINDS]
        for r, part in doc["resolutions"].items():
            fits = [(part.get("latency_fit"), LATENCY_FEATURES, DEFAULT_LATENCY_FEATURES), (part.get("memory_fit"), MEMORY_FEATURES, DEFAULT_MEMORY_FEATURES)]
            if not all(k in part for k in ("layers", "fallback")) or not isinstance(part["fallback"], dict) or part["fallback"].get("terms") != terms or \
                    not all(isinstance(fit, dict) and fit.get("features", default) in sets for fit, sets, default in fits):
                raise PredictorError(f"{path} is damaged or made by another mnas version (resolution {r}'s tables do not fit): rebuild it")
        return cls(doc, str(path))

    @property
    def resolutions(self) -> list[int]:
        return sorted(int(r) for r in self.doc["resolutions"])

    def check_device(self, name: str, settings_hash: str) -> None:
        """Refuse to stand in for another device (or the same one with other settings)."""
        if settings_hash != self.device["hash"]:
            raise PredictorError(f"{self.source} was built for device {self.device['name']} (settings {self.device['hash']}), "
                                 f"not for {name} (settings {settings_hash}); build one for this device with mnas predictor build")

    def tables(self, resolution: int | None) -> tuple[int, dict]:
        """(resolution, its tables); the first resolution by default, a clear error for one not covered."""
        resolution = resolution or self.resolutions[0]
        part = self.doc["resolutions"].get(str(resolution))
        if part is None:
            raise PredictorError(f"{self.source} covers resolutions {self.resolutions}, not {resolution}")
        return resolution, part

    def predict(self, arch: Architecture, resolution: int | None = None) -> Prediction:
        resolution, part = self.tables(resolution)
        table = part["layers"]
        layers = arch_layers(arch, resolution, self.num_classes)
        stages: dict[int, float] = {}
        figures = []
        off = 0
        for stage, layer in layers:
            entry = table.get(layer.key)
            if entry is None:
                off += 1
                ms = float(cost_estimate(part["fallback"]["rates"], [layer])[0])
            else:
                ms = entry[0]
            stages[stage] = stages.get(stage, 0.0) + ms
            figures.append(ms)
        plain = [layer for _, layer in layers]
        lat_x = LATENCY_FEATURES[part["latency_fit"].get("features", DEFAULT_LATENCY_FEATURES)](figures, plain)
        mem_x = MEMORY_FEATURES[part["memory_fit"].get("features", DEFAULT_MEMORY_FEATURES)](figures, plain)
        latency = float(_apply(part["latency_fit"], np.array(lat_x)))
        memory = float(_apply(part["memory_fit"], np.array(mem_x)))
        blocks = [stages.get(i, 0.0) for i in range(-1, len(arch.blocks) + 1)]
        return Prediction(max(latency, 1e-6), max(memory, 0.0), blocks, off)

    def predict_many(self, archs: list[Architecture], resolution: int | None = None) -> np.ndarray:
        """Latency (ms) of many architectures."""
        return np.array([self.predict(a, resolution).latency_ms for a in archs])
