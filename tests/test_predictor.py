"""The latency predictor: layer decomposition, a small real build (onnxruntime), prediction of
unseen architectures against their real measurement, refusals and clear errors."""

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from scipy.stats import kendalltau

from latency_service.client import make_measurer
from mnas.costs import conv_linear_macs
from mnas.layers import arch_layers, space_layers
from mnas.model import build_layer, build_model
from mnas.space import SearchSpace
from search.latency.predictor import FORMAT, Predictor, PredictorError
from search.latency.predictor.build import cross_fitted, in_model_samples
from search.latency.predictor.fitting import cost_estimate
from search.latency.predictor.measurements import MeasurementCache

RESOLUTION, CLASSES = 32, 10
# one process per measurement, as the quick profiles, but enough runs for a steady median:
# at 32 px a run takes ~0.1 ms, so 50 runs cost nothing next to the process start
STEADY_PROFILE = """\
name: test-steady
backend: onnxruntime
threads: 1
warmup_runs: 10
timed_runs: 40
repeats: 1
max_cv: 0.1
max_remeasure: 1
timeout_s: 60
"""


def test_layers_are_the_models_own_parts():
    """Each LayerConfig builds the same module (same parameter shapes) as its place in the network,
    and every layer of a sampled architecture is among the space's layer configurations."""
    space = SearchSpace()
    every = {layer.key for layer in space_layers(space, RESOLUTION, CLASSES)}
    for seed in range(5):
        arch = space.sample(seed)
        layers = arch_layers(arch, RESOLUTION, CLASSES)
        assert all(layer.key in every for _, layer in layers)
        model = build_model(arch, CLASSES)
        parts = [dict(model.conv_stem.named_parameters()) | {f"bn.{k}": v for k, v in model.bn1.named_parameters()}]
        parts += [dict(layer.named_parameters()) for stage in model.blocks for layer in stage]
        shapes = [sorted(p.shape for p in part.values()) for part in parts]
        built = [sorted(p.shape for p in build_layer(layer).parameters()) for _, layer in layers[:-1]]
        assert built == shapes
        head = build_layer(layers[-1][1]).eval()
        x = torch.randn(1, layers[-1][1].cin, layers[-1][1].size, layers[-1][1].size)
        assert head(x).shape == (1, CLASSES)
    assert len(every) == 3895  # the MnasNet space: 3,895 distinct layers at any resolution


def test_live_activation_peak_counts_an_inverted_residuals_expanded_tensors():
    """At 112 px an MBConv6's expanded tensors, not its input and output, set what the memory
    planner must hold; the memory correction's 'live' features rest on this figure."""
    from mnas.layers import LayerConfig

    big, small = 112 * 112, 56 * 56
    mb = LayerConfig("layer", 16, 24, 112, 2, "mbconv6", 3).costs()  # expanded 96 x 112^2, then 96 x 56^2 after the stride
    assert mb["act_peak"] == 96 * (big + small) and mb["act_in"] + mb["act_out"] == 16 * big + 24 * small
    # an identity shortcut keeps the input alive next to the expanded tensors; an SE gate adds a scaled copy
    assert LayerConfig("layer", 24, 24, 56, 1, "mbconv6", 3, skip="identity").costs()["act_peak"] == (144 + 144 + 24) * small
    assert LayerConfig("layer", 24, 24, 56, 1, "mbconv6", 3, 0.25, skip="identity").costs()["act_peak"] == (144 + 144 + 24) * small
    assert LayerConfig("layer", 24, 24, 56, 2, "mbconv6", 3, 0.25, skip="identity").costs()["act_peak"] == 144 * (small + 28 * 28)
    assert LayerConfig("layer", 16, 24, 56, 1, "conv", 3).costs()["act_peak"] == (16 + 24) * small
    assert LayerConfig("layer", 16, 24, 56, 1, "sepconv", 3).costs()["act_peak"] == (16 + 24) * small
    every = [layer for layer in space_layers(SearchSpace(), 224, 1000) if layer.kind == "layer"]
    assert all(max(c["act_in"], c["act_out"]) < c["act_peak"] for c in map(LayerConfig.costs, every))
    held = [layer.costs() for layer in every if layer.op == "conv" or layer.skip == "pool"]  # input and output alive together
    assert len(held) > 1000 and all(c["act_peak"] >= c["act_in"] + c["act_out"] for c in held)


def test_latency_feature_sets_split_a_model_by_kind_and_feature_map_level():
    """The per-level sums put each block layer at its input's feature-map level (224 px: 112 px is
    level 1, 7 px level 5), the per-kind sums split the same figures by stem, head and op, and the
    weights and the largest weight tensor outside the head are the model's own."""
    from search.latency.predictor.features import LATENCY_FEATURES, MEMORY_FEATURES

    arch = SearchSpace().sample(7)
    layers = [layer for _, layer in arch_layers(arch, 224, 1000)]
    ms = [float(i + 1) for i in range(len(layers))]
    kind_level = LATENCY_FEATURES["layer sum per kind and per level, layer count"](ms, layers)
    kinds, levels, count = kind_level[:6], kind_level[6:11], kind_level[11]
    assert count == len(layers) and sum(kinds) == sum(ms) and sum(levels) == sum(ms) - ms[0] - ms[-1]
    assert kinds[0] == ms[0] and kinds[1] == ms[-1]  # stem, head
    by_size = {112: 0.0, 56: 0.0, 28: 0.0, 14: 0.0, 7: 0.0}
    for m, layer in zip(ms[1:-1], layers[1:-1]):
        by_size[layer.size] += m
    assert levels == list(by_size.values())
    model = build_model(arch, 1000)
    weights = LATENCY_FEATURES["layer sum, layer count, weights"](ms, layers)[2]
    assert weights * 1e6 == pytest.approx(sum(p.numel() for p in model.parameters() if p.dim() > 1), rel=0.01)
    largest = MEMORY_FEATURES["weights, head weights, largest tensor outside the head, largest live activations, layer count"](ms, layers)[2]
    assert largest == max(p.numel() for name, p in model.named_parameters() if p.dim() > 1 and not name.startswith(("conv_head", "classifier")))


def test_layer_costs_match_the_built_and_exported_layer(tmp_path):
    """A layer's multiply-adds are those its torch module runs, and its operator count is what the
    exported ONNX graph executes (nodes other than Identity and Constant), across ops, SE, skips,
    activations and head styles: the predictor's cost terms rest on both."""
    import onnx

    from mnas.export import export_model
    from mnas.layers import LayerConfig

    rng = np.random.default_rng(0)
    every = space_layers(SearchSpace(), RESOLUTION, CLASSES)
    layers = [every[i] for i in rng.choice(len(every), 24, replace=False)] + [
        LayerConfig("layer", 24, 24, 16, 1, "mbconv6", 3, 0.25, "identity", act) for act in ("relu6", "hswish", "swish")] + [
        LayerConfig("layer", 24, 40, 16, 1, "sepconv", 5, 0.25, "pool", "swish", se_style="expanded"),
        LayerConfig("head", 320, 1280, 7, classes=CLASSES, head_style="efficient"), LayerConfig("head", 320, 1280, 7, act="swish", classes=CLASSES)]
    assert {layer.op for layer in layers if layer.kind == "layer"} >= {"conv", "sepconv", "mbconv3", "mbconv6"}
    assert {layer.skip for layer in layers} >= {"none", "identity", "pool"}
    for i, layer in enumerate(layers):
        c = layer.costs()
        module = build_layer(layer)
        assert c["macs"] == conv_linear_macs(module, layer.size, layer.cin), layer.key
        assert c["macs"] == c["conv_macs"] + c["pointwise_macs"] + c["depthwise_macs"] + c["dense_macs"]
        weights = [p.numel() for p in module.parameters() if p.dim() > 1]
        assert (c["params"], c["largest_tensor"]) == (sum(weights), max(weights)), layer.key
        path = export_model(module, tmp_path / f"l{i}.onnx", "onnx", input_shape=(1, layer.cin, layer.size, layer.size))
        run = [n.op_type for n in onnx.load(str(path)).graph.node if n.op_type not in ("Identity", "Constant")]
        assert c["ops"] == len(run), (layer.key, run)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predictor")
    profile = tmp / "quick.yaml"
    profile.write_text(STEADY_PROFILE)
    out = tmp / "pred.json"
    args = ["predictor", "build", "--device", str(profile), "--resolution", str(RESOLUTION), "--num-classes", str(CLASSES),
            "--models", "10", "--profiled-models", "8", "--cache", str(tmp / "cache.sqlite")]
    first = run_cli(*args, "--layers", "40", "--out", str(out), timeout=900)
    # by default an onnxruntime profile measured here measures no layers alone (their times come from the profiles),
    # and everything comes from the measurement cache: nothing is measured twice
    again = run_cli(*args, "--out", str(tmp / "in-model.json"), timeout=900)
    return profile, out, first, again


def test_build_writes_a_complete_versioned_predictor(built):
    profile, out, first, again = built
    doc = json.loads(out.read_text())
    assert doc["format"] == FORMAT and doc["version"] == 2 and doc["model_format"] == "onnx"
    assert doc["device"]["name"] == "test-steady" and doc["runtime"]["name"] == "onnxruntime"
    part = doc["resolutions"][str(RESOLUTION)]
    assert len(part["layers"]) == 3895 and sum(m for _, m in part["layers"].values()) == 40
    assert all(ms > 0 for ms, _ in part["layers"].values())
    assert "32 px: 40 of 3895 layer configs and 10 models measured, 8 profiled (58 new)" in first.stdout
    v = part["validation"]
    assert v["layer_model"]["chosen"] in v["layer_model"]["cv_summed_abs_error_pct"] and v["latency"]["n"] == 2
    # 8 training models: too few to cross-validate a correction, so the simpler layer times (alone) stay
    assert part["layer_times"] == "alone" and set(v["layer_times"]["cv_mean_abs_error_pct"]) == {"alone", "in a model"}
    # the stored cost rates (what prices a layer off the table) land near the layers measured
    every = {layer.key: layer for layer in space_layers(SearchSpace(), RESOLUTION, CLASSES)}
    measured = [(every[key], ms) for key, (ms, exact) in part["layers"].items() if exact]
    ratio = cost_estimate(part["fallback"]["rates"], [layer for layer, _ in measured]) / np.array([ms for _, ms in measured])
    assert 0.8 < np.median(ratio) < 1.25 and np.mean(np.abs(ratio - 1) < 0.5) > 0.8, np.round(ratio, 2)


def test_layer_times_inside_models_come_from_profiles(built):
    """With no layers measured alone every layer's figure is its time inside the profiled models (the per-operator
    profile of the 8 training models, each node counted with its layer), regressed to the whole space."""
    profile, out, first, again = built
    assert "0 of 3895 layer configs and 10 models measured, 8 profiled (0 new)" in again.stdout and "layer times in a model" in again.stdout
    part = json.loads((out.parent / "in-model.json").read_text())["resolutions"][str(RESOLUTION)]
    assert part["layer_times"] == "in a model" and part["build"]["fresh_measurements"] == 0
    rng = np.random.default_rng(1)  # the build's model draw (seed 0 + 1); every fifth (0, 5) is held out
    archs = [SearchSpace().sample(rng) for _ in range(10)]
    profiled = [archs[i] for i in range(10) if i % 5]
    seen = {layer.key for arch in profiled for _, layer in arch_layers(arch, RESOLUTION, CLASSES)}
    assert {key for key, (_, exact) in part["layers"].items() if exact} == seen
    device, cache = json.loads(out.read_text())["device"]["hash"], MeasurementCache(out.parent / "cache.sqlite")
    try:
        for arch in profiled:
            key = f"profile:{RESOLUTION}:{CLASSES}:{arch.canonical()}"
            times = cache.get(device, key)["layers_ms"]
            assert len(times) == len(arch_layers(arch, RESOLUTION, CLASSES)) and min(times) > 0, times
    finally:
        cache.close()
    assert all(ms > 0 for ms, _ in part["layers"].values())
    proc = run_cli("predictor", "build", "--device", "x86-litert-1t", "--resolution", "32", "--layers", "0", "--out",
                   str(out.parent / "no.json"), check=False)
    assert proc.returncode == 2 and "need an onnxruntime device profile measured here" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # measures ten models against a small build; accuracy figures at full size are in BENCHMARKS.md
def test_unseen_architectures_are_predicted_near_their_measurement(built):
    profile, out, _, _ = built
    predictor = Predictor.load(out)
    space = SearchSpace()
    # Ten architectures the build never drew, spread over the space's range of sizes (every sixth of
    # sixty by multiply-adds): neighbours in a random draw often differ by less than the measurement
    # noise, and a ranking check on them would decide on noise.
    candidates = [space.sample(10_000 + i) for i in range(60)]
    macs = [conv_linear_macs(build_model(arch, CLASSES), RESOLUTION) for arch in candidates]
    archs = [candidates[i] for i in np.argsort(macs)[3::6]]
    source = make_measurer(device=str(profile))
    measured, predicted = [], []
    try:
        from mnas.export import export_architecture

        for i, arch in enumerate(archs):
            path = export_architecture(arch, out.parent / f"unseen{i}.onnx", "onnx", RESOLUTION, CLASSES)
            measured.append(source.measure(path)["latency_ms"])
            p = predictor.predict(arch, RESOLUTION)
            assert p.off_table == 0 and len(p.blocks) == 9
            predicted.append(p.latency_ms)
    finally:
        source.close()
    ratio = np.array(predicted) / np.array(measured)
    tau = kendalltau(predicted, measured).statistic
    # At 32 px a model runs in ~0.3 ms and one reference measurement on a shared 2-core machine moves by
    # up to 50% between runs (0.33 vs 0.52 ms for the same model here), and the whole machine drifts between
    # the build and this check. So the check is the one the hybrid search relies on: the ranking, and the
    # error left after the one scale factor it refits from real measurements (the median ratio); robust
    # statistics, so a single disturbed reference cannot decide it. The ranking of ten models whose true
    # latencies lie within ~2x of each other is itself noisy here: two CI runs under load gave tau 0.47 with
    # median calibrated errors of ~10%, so the ranking check asks for a clearly positive tau, and the
    # accuracy check is the calibrated error. Full-size accuracy figures are in BENCHMARKS.md.
    calibrated = np.abs(ratio / np.median(ratio) - 1)
    assert tau >= 0.25 and np.median(calibrated) < 0.2 and 0.6 < np.median(ratio) < 1.6, (ratio.round(3), tau)
    many = predictor.predict_many(archs, RESOLUTION)
    assert many.shape == (10,) and many[0] == pytest.approx(predictor.predict(archs[0]).latency_ms)


def test_cli_predict_and_its_refusals(built, tmp_path):
    profile, out, _, _ = built
    sampled = tmp_path / "arch.json"
    sampled.write_text(SearchSpace().sample(3).to_json())
    r = json.loads(run_cli("latency", "predict", str(sampled), "--predictor", str(out), "--json").stdout)
    assert r["latency_ms"] > 0 and r["peak_memory_mb"] > 0 and len(r["blocks_ms"]) == 9 and r["resolution"] == RESOLUTION
    assert r["off_table_layers"] == 0  # an architecture of the space: every layer is in the table
    assert r["latency_ms"] == pytest.approx(Predictor.load(out).predict(SearchSpace().sample(3)).latency_ms)
    a1 = json.loads(run_cli("latency", "predict", "mnasnet-a1", "--predictor", str(out), "--device", str(profile), "--json").stdout)
    assert a1["off_table_layers"] > 0 and a1["latency_ms"] > 0  # A1 lies off the space's grid: estimated layers
    other = tmp_path / "other.yaml"
    other.write_text(STEADY_PROFILE.replace("timed_runs: 40", "timed_runs: 41"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "mnas-latency-predictor", "version": 1')
    cases = [
        (["--device", str(other)], "was built for device test-steady"),
        (["--resolution", "64"], "covers resolutions [32], not 64"),
    ]
    for extra, message in cases:
        proc = run_cli("latency", "predict", "mobilenet-v2", "--predictor", str(out), *extra, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for path, message in ((tmp_path / "none.json", "predictor file not found"), (bad, "not a predictor file")):
        proc = run_cli("latency", "predict", "mobilenet-v2", "--predictor", str(path), check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**json.loads(out.read_text()), "version": 1}))
    with pytest.raises(PredictorError, match="format version 1; this mnas reads version 2: rebuild it"):
        Predictor.load(old)


def test_prediction_needs_no_torch_and_is_fast(built):
    import subprocess
    import sys

    _, out, _, _ = built
    code = ("import sys, time\nfrom mnas.space import SearchSpace\nfrom search.latency.predictor import Predictor\n"
            f"p = Predictor.load({str(out)!r})\narchs = [SearchSpace().sample(i) for i in range(200)]\n"
            "t = time.perf_counter()\nlat = p.predict_many(archs)\nper = (time.perf_counter() - t) / len(archs)\n"
            "print(per, 'torch' in sys.modules, float(lat.min()))")
    per, torch_loaded, lowest = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert torch_loaded == "False" and float(lowest) > 0
    assert float(per) < 5e-3  # ~0.3 ms idle: a thousand times cheaper than one measurement, even on a busy machine


def test_profile_shows_where_the_time_goes(built, tmp_path):
    profile, out, _, _ = built
    space = SearchSpace()
    arch = next(a for a in (space.sample(s) for s in range(100)) if any(b.layers == 0 for b in a.blocks))  # one with an empty block
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    r = json.loads(run_cli("latency", "profile", str(path), "--device", str(profile), "--resolution", str(RESOLUTION),
                           "--num-classes", str(CLASSES), "--predictor", str(out), "--runs", "10", "--json").stdout)
    parts = {p["part"]: p for p in r["parts"]}
    assert list(parts)[:9] == ["stem"] + [f"block {i}" for i in range(1, 8)] + ["head"]
    assert sum(p["ms"] for p in r["parts"]) == pytest.approx(r["run_ms"], rel=1e-6)  # every node is counted once, plus the gaps
    for i, block in enumerate(arch.blocks):
        assert (parts[f"block {i + 1}"]["ms"] > 0) == (block.layers > 0)  # nodes land in the block they came from
    assert parts["stem"]["ms"] > 0 and parts["head"]["ms"] > 0 and parts["stem"]["predicted_ms"] > 0
    assert all(n["part"] in parts for n in r["nodes"]) and r["predicted_latency_ms"] > 0
    litert = tmp_path / "litert.yaml"
    litert.write_text(STEADY_PROFILE.replace("backend: onnxruntime", "backend: litert"))
    for args, message in ((["--device", str(litert)], "per-operator profiling runs on onnxruntime profiles"),
                          (["--url", "http://127.0.0.1:9"], "give --device PROFILE")):
        proc = run_cli("latency", "profile", str(path), *args, "--resolution", str(RESOLUTION), check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_correction_sees_each_training_model_through_a_layer_model_fitted_without_it():
    """Cross-fitting: a model whose own profile is off (3x, as if disturbed) would pull its
    in-sample figures along; its cross-fitted figures come from the other models' profiles
    only, and the held-out models' figures are the table's."""
    space = SearchSpace()
    archs = [space.sample(100 + i) for i in range(13)]
    model_layers = [[layer for _, layer in arch_layers(a, RESOLUTION, CLASSES)] for a in archs]
    held = np.arange(13) % 5 == 0  # 10 training models: enough to cross-validate
    rates = [1e-6, 2e-6, 4e-6, 1e-5, 1e-6, 1e-6, 0.0, 2e-3, 0.05, 0.1, 0.01]  # ms per unit of each cost term
    true = [cost_estimate(rates, layers) for layers in model_layers]
    trained = np.flatnonzero(~held)
    off = trained[3]
    profiles = [(model_layers[i], list(true[i] * (3.0 if i == off else 1.0))) for i in trained]
    samples = in_model_samples(profiles)
    table = {key: [ms, 1] for key, (_, ms) in samples.items()}
    for layers in model_layers:
        table.update({layer.key: [float(ms), 0] for layer, ms in zip(layers, cost_estimate(rates, layers)) if layer.key not in table})
    figures = cross_fitted(profiles, model_layers, ~held, "cost terms", table, seed=0)
    assert all(figures[i] == [table[layer.key][0] for layer in model_layers[i]] for i in np.flatnonzero(held))
    in_sample = sum(table[layer.key][0] for layer in model_layers[off])
    assert in_sample > 1.2 * true[off].sum()  # its own disturbed profile is in the table
    assert sum(figures[off]) == pytest.approx(true[off].sum(), rel=0.05)  # but not in its cross-fitted figures


def test_the_build_commands_help_states_the_builders_defaults():
    """The CLI keeps numpy out of its start-up, so its help writes the builder's defaults as
    text; this ties them to the constants the build uses."""
    import typer.main

    from search.cli import app
    from search.latency.predictor import LAYERS_ALONE, PROFILED_MODELS

    build = typer.main.get_command(app).commands["predictor"].commands["build"]
    helps = {param.name: param.help for param in build.params}
    assert f"else {LAYERS_ALONE}" in helps["layers"] and f"default {PROFILED_MODELS};" in helps["profiled_models"]
