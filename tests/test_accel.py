"""The device rules (mnas.accel, the executors' slots) checked on the CPU with a GPU's answers passed in."""

from __future__ import annotations

import pytest
import torch

from mnas.accel import DeviceFacts, Execution, PrecisionError, choose_precision, plan_execution
from search.trials.executors import split_threads, trial_slots

H100 = DeviceFacts("cuda", 0, "NVIDIA H100 80GB HBM3", (9, 0), 81_559)
A100 = DeviceFacts("cuda", 0, "NVIDIA A100-SXM4-40GB", (8, 0), 40_536)
T4 = DeviceFacts("cuda", 1, "Tesla T4", (7, 5), 15_095)
V100 = DeviceFacts("cuda", 0, "Tesla V100-SXM2-16GB", (7, 0), 16_160)
CPU = DeviceFacts("cpu")


@pytest.mark.parametrize("facts, auto", [(H100, "bf16"), (A100, "bf16"), (T4, "fp16"), (V100, "fp16"), (CPU, "fp32"),
                                         (DeviceFacts("mps", None, "Apple MPS"), "fp32")])
def test_auto_precision_is_bf16_only_where_the_gpu_has_it(facts, auto):
    assert choose_precision("auto", facts) == auto
    assert choose_precision("fp32", facts) == "fp32"


def test_a_precision_the_device_cannot_run_is_refused_by_name():
    with pytest.raises(PrecisionError, match=r"Tesla T4 \(compute capability 7.5\) has no native bf16"):
        choose_precision("bf16", T4)
    with pytest.raises(PrecisionError, match="fp16 needs a GPU"):
        choose_precision("fp16", CPU)
    assert choose_precision("bf16", CPU) == "bf16"  # the CPU's own bf16 kernels: allowed when asked, never chosen
    assert choose_precision("fp16", T4) == "fp16"


def test_the_plan_for_each_gpu_kind():
    h100 = plan_execution("cuda", "auto", None, facts=H100)
    assert (h100.precision, h100.channels_last, h100.grad_scaler().is_enabled()) == ("bf16", True, False)
    assert str(h100.device) == "cuda:0" and h100.describe() == "NVIDIA H100 80GB HBM3, bf16, channels_last"
    t4 = plan_execution("cuda:1", "auto", False, facts=T4)
    assert t4.precision == "fp16" and str(t4.device) == "cuda:1" and not t4.channels_last
    cpu = plan_execution("cpu", "auto", None, facts=CPU)
    assert (cpu.precision, str(cpu.device), cpu.grad_scaler().is_enabled()) == ("fp32", "cpu", False)
    assert plan_execution("cpu").facts == CPU  # asking torch on this machine


def test_autocast_and_loss_scaling_run_for_real_on_the_cpu():
    from mnas.train import train_step

    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(8, 3), torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        run = Execution(CPU, precision, False)  # fp16 on the CPU: only to exercise the GPU's loss-scaling branch here
        with run.autocast():
            assert model(x).dtype == dtype
        scaler = run.grad_scaler()
        assert scaler.is_enabled() == (precision == "fp16")
        before = model.weight.detach().clone()
        loss = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, run, scaler=scaler)
        assert torch.isfinite(loss) and not torch.equal(before, model.weight)
        if precision == "fp16":
            assert scaler.get_scale() == 65536.0  # the first scale, kept: the step found finite gradients


def test_bn_is_recalibrated_in_the_precision_evaluation_uses():
    import numpy as np

    from mnas.data import ArraySource
    from mnas.model import build_model
    from mnas.presets import PRESETS
    from mnas.recipe import TrainConfig
    from mnas.train import calibrate_bn

    model = build_model(PRESETS["mnasnet-a1"], 10, 0.35, 0.0, 2)
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    images = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    source = ArraySource(images, np.zeros(64, np.int64))
    cfg = TrainConfig(resolution=16, batch_size=32, bn_calibration_images=64)
    calibrate_bn(model, source, cfg, Execution(CPU, "bf16", True))
    assert seen and set(seen) == {torch.bfloat16}


def test_random_state_round_trips_and_names_what_another_device_kind_cannot_restore():
    run = Execution(CPU, "fp32", True)
    torch.manual_seed(7)
    state = run.rng_state()
    expected = torch.rand(3)
    assert set(state) == {"cpu"}
    assert run.set_rng_state(state) == [] and torch.equal(torch.rand(3), expected)
    # saved on a GPU (its CUDA state beside the CPU one): the CPU part still restores, the GPU part is named
    gpu_saved = {**state, "cuda": torch.zeros(16, dtype=torch.uint8)}
    lost = run.set_rng_state(gpu_saved)
    assert lost == ["the GPU's random state (the checkpoint was saved on a GPU)"] and torch.equal(torch.rand(3), expected)


def test_gpu_slots_spread_over_every_gpu_and_split_the_cores():
    slots = trial_slots(gpus=8, trials_per_gpu=6, max_parallel=16, cores=64, host="node")
    gpus = [s["env"]["CUDA_VISIBLE_DEVICES"] for s in slots]
    assert len(slots) == 16 and sorted(set(gpus)) == [str(g) for g in range(8)] and all(gpus.count(str(g)) == 2 for g in range(8))
    assert [s["name"] for s in slots[:3]] == ["gpu0.0@node", "gpu1.0@node", "gpu2.0@node"] and slots[8]["name"] == "gpu0.1@node"
    assert {s["threads"] for s in slots} == {4} and {s["env"]["OMP_NUM_THREADS"] for s in slots} == {"4"}
    few = trial_slots(gpus=2, trials_per_gpu=3, max_parallel=100, cores=16, host="h")
    assert [s["name"].split("@")[0] for s in few] == ["gpu0.0", "gpu1.0", "gpu0.1", "gpu1.1", "gpu0.2", "gpu1.2"]
    assert {s["threads"] for s in few} == {2}
    cpu = trial_slots(gpus=0, trials_per_gpu=4, max_parallel=2, cores=2, host="h", cap="1")
    assert [(s["name"], s["env"]["CUDA_VISIBLE_DEVICES"], s["threads"]) for s in cpu] == [("cpu0@h", "", 1), ("cpu1@h", "", 1)]
    assert split_threads(2, 16) == 1 and split_threads(64, 3, cap="8") == 8


def test_cuda_graphs_are_refused_with_the_reason():
    from pydantic import ValidationError

    from mnas.recipe import TrainConfig

    with pytest.raises(ValidationError, match="BatchNorm updates its running statistics in place"):
        TrainConfig(compile="reduce-overhead")
    assert TrainConfig(compile=False).compile == "off" and TrainConfig(precision="fp16").precision == "fp16"


def test_the_first_step_is_timed_after_the_device_finished_it(monkeypatch):
    """first_step_seconds (compile time included) must cover the step's GPU work, not only its launch."""
    import numpy as np

    from mnas.data import ArraySource
    from mnas.presets import PRESETS
    from mnas.recipe import TrainConfig
    from mnas.train import train_model

    calls = []
    monkeypatch.setattr(Execution, "synchronize", lambda self: calls.append(self.precision))
    images = np.random.default_rng(0).integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
    source = ArraySource(images, np.arange(64) % 10)
    m = train_model(PRESETS["mnasnet-a1"], source, source, 10, TrainConfig(epochs=1, batch_size=32, resolution=8, width_mult=0.35,
                                                                             bn_calibration_images=32, device="cpu"))
    assert calls == ["fp32"] and 0 < m["first_step_seconds"] <= m["train_seconds"]
