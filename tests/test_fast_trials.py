"""The fast-trial machinery, on the CPU: device-resident splits, prepared batches, tuning, packing."""

import numpy as np
import pytest
import torch

from mnas.data import ArraySource, load_dataset
from mnas.presets import PRESETS
from mnas.space import SearchSpace, load_space
from mnas.train import TrainConfig, train_model
from search.config import ConfigError, parse_config
from search.trials.run import classify_failure
from search.trials.tuning import tune


def test_device_source_yields_the_same_batches_as_the_host_arrays():
    rng = np.random.default_rng(0)
    host = ArraySource(rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8), rng.integers(0, 10, 50))
    dev = host.to_device(torch.device("cpu"))
    assert dev.x.dtype == torch.uint8 and len(dev) == 50
    for shuffle in (True, False):
        pairs = zip(host.batches(16, shuffle, 7, 8), dev.batches(16, shuffle, 7, 8))
        sizes = []
        for (hx, hy), (dx, dy) in pairs:
            assert torch.equal(hx, dx) and torch.equal(hy, dy)
            sizes.append(len(hy))
        assert sizes == [16, 16, 16, 2]


def test_training_from_a_device_resident_split_matches_the_host_path():
    ds = load_dataset("digits")
    train, val = ds.stage1()
    arch = SearchSpace().sample(2)
    cfg = TrainConfig(epochs=1, batch_size=128, resolution=16, width_mult=0.5, seed=1)
    host = train_model(arch, train, val, 10, cfg)
    dev = train_model(arch, train.to_device(torch.device("cpu")), val.to_device(torch.device("cpu")), 10, cfg)
    assert dev["data_on_device"] and not host["data_on_device"]
    assert dev["top1"] == host["top1"] and dev["train_loss"] == pytest.approx(host["train_loss"], rel=1e-6)


class _PreparedBatches:
    """A torchvision-style pipeline: batches arrive as normalised float NCHW, augmented on the CPU."""

    def __init__(self, source: ArraySource, resolution: int):
        self.source, self.resolution = source, resolution

    def __len__(self):
        return len(self.source)

    def batches(self, batch_size, shuffle, seed, resolution):
        from mnas.data import prepare_batch

        gen = torch.Generator().manual_seed(seed)
        for x, y in self.source.batches(batch_size, shuffle, seed, resolution):
            yield prepare_batch(x, resolution, train=shuffle, generator=gen), y


def test_float_batches_from_a_dataloader_style_source_train_as_they_are():
    ds = load_dataset("digits")
    train, val = ds.stage1()
    cfg = TrainConfig(epochs=3, batch_size=32, resolution=16)
    m = train_model(load_space("tiny").base, _PreparedBatches(train, 16), _PreparedBatches(val, 16), 10, cfg)  # small and quick
    assert m["top1"] > 0.3 and m["eval_images"] == len(val)  # chance is 0.1: the images reached the model intact


def test_tuning_measures_layouts_and_packing_on_the_cpu():
    r = tune({"resolution": 16, "batch_size": 32, "width_mult": 0.35}, device="cpu", seconds=1.0, counts=(1, 2))
    assert [(s["precision"], s["channels_last"]) for s in r["single"]] == [("fp32", True), ("fp32", False)]
    fastest = max(r["single"], key=lambda s: s["images_per_s"])
    assert r["channels_last"] == fastest["channels_last"] and all(s["images_per_s"] > 50 for s in r["single"])
    assert [p["trials"] for p in r["packing"]] == [1, 2]
    one, two = r["packing"]
    # two packed trials are kept only if they add at least 10% in total
    assert r["trials_per_gpu"] == (2 if two["images_per_s"] >= 1.1 * one["images_per_s"] else 1)
    assert two["per_trial"] == pytest.approx(two["images_per_s"] / 2)


def test_tuning_keeps_what_the_config_pins():
    r = tune({"resolution": 8, "batch_size": 16, "width_mult": 0.35, "precision": "fp32", "channels_last": False},
             device="cpu", seconds=0.5, counts=(1,))
    assert [(s["precision"], s["channels_last"]) for s in r["single"]] == [("fp32", False)]
    assert r["trials_per_gpu"] == 1 and r["channels_last"] is False


def test_trials_per_gpu_accepts_auto_or_a_count():
    base = {"proxy": {"data": "digits"}, "latency": {"device": "x86-ort-1t"}, "reward": {"target_ms": 1.0}, "max_trials": 2}
    assert parse_config({**base, "executor": {"trials_per_gpu": "auto"}}).executor.trials_per_gpu == "auto"
    assert parse_config({**base, "executor": {"trials_per_gpu": 4}}).executor.trials_per_gpu == 4
    for bad in (0, 17, "many"):
        with pytest.raises(ConfigError, match="trials_per_gpu"):
            parse_config({**base, "executor": {"trials_per_gpu": bad}})


def test_out_of_memory_fails_only_as_its_own_kind():
    assert classify_failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "cuda_oom"
    assert classify_failure(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")) == "oom"
    assert classify_failure(ValueError("something else")) == "error"


@pytest.mark.slow
def test_compiled_training_step_computes_what_eager_does():
    from mnas.model import build_model
    from mnas.train import step_module

    torch.manual_seed(0)
    model = build_model(PRESETS["mnasnet-a1"], 10, 0.5, 0.0, 2).train()
    fast = step_module(model, "default")
    assert step_module(model, "off") is model and list(fast.parameters())[0] is list(model.parameters())[0]
    x = torch.randn(8, 3, 16, 16)
    torch.testing.assert_close(fast(x), model(x), rtol=1e-3, atol=1e-3)
    # and a whole compiled proxy run trains (this tiny setting is too chaotic to compare runs step by step)
    ds = load_dataset("digits")
    train, val = ds.stage1()
    m = train_model(PRESETS["mnasnet-a1"], train, val, 10, TrainConfig(epochs=3, batch_size=128, resolution=16, width_mult=0.5, compile="default"))
    losses = [h["train_loss"] for h in m["history"]]
    assert m["compile"] == "default" and losses[-1] < losses[0] and m["top1"] > 0.12


def test_proxy_speed_settings_in_yaml(tmp_path):
    import yaml

    text = "proxy: {data: digits, compile: off, precision: bf16, channels_last: false, data_on_device: true}\n" \
           "latency: {device: x86-ort-1t}\nreward: {target_ms: 1}\nmax_trials: 2\n"
    cfg = parse_config(yaml.safe_load(text))
    assert cfg.proxy.compile == "off" and not cfg.proxy.tunable()
    train = cfg.proxy.train_config(seed=3, epochs=2)
    assert train.seed == 3 and train.epochs == 2 and train.momentum == 0.9
    assert (train.precision, train.channels_last, train.data_on_device, train.compile) == ("bf16", False, True, "off")
    with pytest.raises(ConfigError, match="proxy.compile"):
        parse_config(yaml.safe_load(text.replace("compile: off", "compile: fast")))


def test_trials_run_the_measured_choice_only_where_the_config_says_auto(tmp_path):
    from search_helpers import tiny_config

    from search.trials.spec import TrialContext
    from search.trials.tuning import Tuning, slots_per_gpu

    measured = Tuning(precision="bf16", channels_last=False, trials_per_gpu=4)  # as read from DIR/tuning.json on a GPU machine
    auto = parse_config(tiny_config(tmp_path, executor={"trials_per_gpu": "auto"}))
    spec = TrialContext.create(auto, 10, tuning=measured).spec(1, PRESETS["mnasnet-a1"])
    assert (spec.train.precision, spec.train.channels_last, slots_per_gpu(auto.executor, measured)) == ("bf16", False, 4)
    assert spec.train.epochs == auto.proxy.epochs and spec.train.seed == auto.seed and spec.latency.num_classes == 10
    pinned = parse_config(tiny_config(tmp_path, proxy={"precision": "fp32", "channels_last": True}, executor={"trials_per_gpu": 2}))
    spec = TrialContext.create(pinned, 10, tuning=measured).spec(1, PRESETS["mnasnet-a1"], stage=2, epochs=7)
    assert (spec.train.precision, spec.train.channels_last, slots_per_gpu(pinned.executor, measured)) == ("fp32", True, 2)
    assert spec.train.epochs == 7 and spec.latency is None  # stage 2 trains only
    assert slots_per_gpu(auto.executor, None) == 1  # nothing measured: one trial per GPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_nothing_is_measured(tmp_path):
    from search_helpers import tiny_config

    from search.trials.tuning import measured_settings

    cfg = parse_config(tiny_config(tmp_path, executor={"trials_per_gpu": "auto"}))
    assert cfg.proxy.tunable() and measured_settings(cfg, tmp_path) is None
    assert not (tmp_path / "tuning.json").exists()


def test_a_resumed_search_reuses_its_tuning_file(tmp_path, monkeypatch):
    import json

    from search_helpers import tiny_config

    import search.trials.executors
    import search.trials.tuning

    monkeypatch.setattr(search.trials.executors, "gpu_count", lambda: 1)  # as on a GPU machine

    def must_not_measure(*args, **kwargs):
        raise AssertionError("the tuning was measured again")

    monkeypatch.setattr(search.trials.tuning, "tune", must_not_measure)
    (tmp_path / "tuning.json").write_text(json.dumps({"precision": "bf16", "channels_last": True, "trials_per_gpu": 6, "seconds": 40.0}))
    cfg = parse_config(tiny_config(tmp_path, executor={"trials_per_gpu": "auto"}))
    tuned = search.trials.tuning.measured_settings(cfg, tmp_path)
    assert (tuned.precision, tuned.channels_last, tuned.trials_per_gpu) == ("bf16", True, 6)
    pinned = parse_config(tiny_config(tmp_path, proxy={"precision": "fp32", "channels_last": False}))
    assert search.trials.tuning.measured_settings(pinned, tmp_path) is None  # nothing left to measure
