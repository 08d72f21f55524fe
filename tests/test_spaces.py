"""Spaces as data: the shipped space files, their round trips, models built from any of them,
clear errors for bad space files, and `space around`."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli

from mnas.arch import Architecture
from mnas.errors import SpaceError
from mnas.layers import arch_layers, space_layers
from mnas.model import build_model
from mnas.presets import PRESETS
from mnas.space import SearchSpace, load_space, shipped_spaces, space_around

# size_log10 and token count of each shipped space (README "Search spaces")
SIZES = {"mnasnet": (18.4484, 42), "mobilenetv3": (7.1568, 15), "proxylessnas": (7.0545, 17), "tiny": (5.0437, 15)}


def test_shipped_spaces_and_their_sizes():
    assert shipped_spaces() == sorted(SIZES)
    for name, (size, tokens) in SIZES.items():
        space = load_space(name)
        assert space.size_log10 == pytest.approx(size, abs=1e-4) and len(space.tokens) == tokens, name
    assert load_space("mnasnet") == SearchSpace()  # the default is the paper's space, from its file


@pytest.mark.parametrize("name", sorted(SIZES))
def test_round_trips_on_every_shipped_space(name):
    space = load_space(name)
    rng = np.random.default_rng(1)
    every = {layer.key for layer in space_layers(space, 64, 10)}
    for _ in range(200):
        arch = space.decode(space.sample_indices(rng))
        indices = space.encode(arch)  # canonical: an expansion token of a block that drew sepconv reads 0
        assert space.decode(indices) == arch and space.encode(space.decode(indices)) == indices
        assert Architecture.from_json(arch.to_json()) == arch  # the stored form is the same architecture
        mutant = space.mutate(arch, rng)
        assert mutant != arch and space.contains(mutant)
        assert all(layer.key in every for _, layer in arch_layers(arch, 64, 10))  # the predictor's table covers it
    assert load_space(space.to_file()) == space  # the recorded definition rebuilds the same space


def test_mobilenetv3_space_keeps_mobilenetv3s_elements():
    space = load_space("mobilenetv3")
    arch = space.sample(0)
    assert arch.act == "hswish" and arch.se_style == "expanded" and arch.head_style == "efficient" and arch.stem == 16
    assert [arch.block_act(b) for b in arch.blocks] == ["relu"] * 3 + ["hswish"] * 4
    assert {t.name for t in space.tokens} == {"kernel", "expansion", "layers"}
    assert space.block_choices(1)["kernel"] == (3, 5, 7) and space.block_choices(1)["expansion"] == (3.0, 4.0, 6.0)
    assert space.block_choices(1)["layers"] == (2, 3, 4)
    model = build_model(arch)
    assert type(model.blocks[2][0].se.gate).__name__ == "Hardsigmoid" and type(model.act1).__name__ == "Hardswish"


@pytest.mark.parametrize("name", sorted(SIZES))
def test_sampled_architectures_of_every_space_run_and_export(name, tmp_path):
    import onnxruntime as ort
    from test_export import trained_like

    from mnas.export import export_model

    model = trained_like(load_space(name).sample(7), num_classes=10, resolution=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    path = export_model(model, tmp_path / "m.onnx", "onnx", resolution=64)
    session = ort.InferenceSession(str(path))
    out = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1].numpy()})[0] for i in range(2)])
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"base": "mobilenet-v2"}, "name: Field required"),
        ({"name": "x", "base": "mobilenet-v9"}, "base: cannot read architecture 'mobilenet-v9'"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"kernel": [3, 9]}}, "choices.kernel: kernels must be 1, 3, 5 or 7"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"op": ["conv", "dense"]}}, "choices.op: must be conv, sepconv or mbconv"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"width": [1]}}, "choices.width: Extra inputs are not permitted"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"layers": [-3, 0]}}, "blocks.1.layers: a delta of -3 empties a stride-2 block"),
        ({"name": "x", "base": "mobilenet-v2", "blocks": ["fixed"]}, "blocks: 1 entries for a base with 7 blocks"),
        ({"name": "x", "base": "mobilenet-v2", "blocks": ["fixd"] * 7}, "blocks: entry 0 must be a mapping"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"op": ["mbconv6"], "expansion": [3, 6]}}, "blocks.0.op: mbconv6 names its expansion"),
        ({"name": "x", "base": "mobilenet-v2", "choices": {"filters": [0.75, 0.7]}}, "blocks.0.filters: choices [0.75, 0.7] give repeated values"),
    ],
)
def test_bad_space_files_name_the_field(doc, words, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert words in str(err.value) and str(path) in str(err.value), str(err.value)


def test_space_cli_on_files_and_its_errors(tmp_path):
    info = json.loads(run_cli("space", "info", "mobilenetv3", "--json").stdout)
    assert info["name"] == "mobilenetv3" and info["num_tokens"] == 15 and info["choices_per_block"] == [1, 27, 27, 27, 27, 27, 1]
    arch = json.loads(run_cli("space", "sample", "tiny", "--seed", "3", "--json").stdout)
    assert load_space("tiny").encode(Architecture.from_dict(arch)) is not None
    out = tmp_path / "around.yaml"
    run_cli("space", "around", "mnasnet-a1", "--out", str(out))
    around = load_space(out)
    assert around.contains(PRESETS["mnasnet-a1"]) and around.size_log10 < SearchSpace().size_log10
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbase: mobilenet-v2\nchoices: {kernel: [2]}\n")
    proc = run_cli("space", "info", str(bad), check=False)
    assert proc.returncode == 2 and "choices.kernel" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("space", "info", "nasbench", check=False)
    assert proc.returncode == 2 and "search space 'nasbench' not found" in proc.stderr


def test_space_around_keeps_the_centre_and_its_unordered_choices():
    a1 = PRESETS["mnasnet-a1"]
    space = space_around(a1, radius=1)
    assert space.contains(a1) and space.base == a1
    block = space.block_choices(2)  # A1's ir_r3_k5_s2_e3_c40_se0.25
    assert block["kernel"] == (3, 5, 7) and block["expansion"] == (1.0, 3.0, 4.0) and block["layers"] == (2, 3, 4)
    assert block["filters"] == (24, 40, 56) and block["se"] == (0.25,) and block["op"] == ("mbconv",)
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.sample(rng)
        assert [b.se for b in arch.blocks] == [b.se for b in a1.blocks] and [b.skip for b in arch.blocks] == [b.skip for b in a1.blocks]
    with pytest.raises(SpaceError, match="radius must be at least 1"):
        space_around(a1, radius=0)


# MobileNetV3's h-swish and hard-sigmoid SE by default; the other spaces' ops are the converter path the presets test
@pytest.mark.parametrize("name", [n if n == "mobilenetv3" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(SIZES)])
def test_sampled_architectures_of_every_space_match_on_litert(name, tmp_path):
    from test_export import tflite_output, trained_like

    from mnas.export import export_model

    model = trained_like(load_space(name).sample(7), num_classes=10, resolution=64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    path = export_model(model, tmp_path / "m.tflite", "tflite", resolution=64)
    assert np.abs(tflite_output(path, x) - ref).max() <= 1e-3
