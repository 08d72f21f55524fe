"""Features of a layer and of a whole model that the predictor's fits read; the file format's name and version."""

from __future__ import annotations

import functools
import math

from mnas.arch import OPS, SKIPS
from mnas.errors import MnasError
from mnas.layers import LayerConfig

FORMAT, VERSION = "mnas-latency-predictor", 2




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
