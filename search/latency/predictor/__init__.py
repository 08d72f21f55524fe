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

from search.latency.predictor.build import LAYERS_ALONE, PROFILED_MODELS, build_predictor, save
from search.latency.predictor.features import FORMAT, PredictorError
from search.latency.predictor.predict import Predictor

__all__ = ["FORMAT", "LAYERS_ALONE", "PROFILED_MODELS", "Predictor", "PredictorError", "build_predictor", "save"]
