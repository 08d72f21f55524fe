"""The supernet: every architecture of a space runs through it, and an extracted model computes
exactly what the supernet's path computes (eval mode, the same BN statistics)."""

import json

import numpy as np
import pytest
import torch

from mnas.errors import ArchitectureError
from mnas.space import load_space
from mnas.supernet import Supernet, extreme_architecture

torch.set_num_threads(1)


def _calibrate(module, batches):
    """A few training-mode passes so that BN statistics differ from their initial values."""
    module.train()
    with torch.no_grad():
        for x in batches:
            module(x)
    module.eval()


def _paths(space, n_random: int):
    yield "base", space.base
    yield "largest", extreme_architecture(space, 32, largest=True)
    yield "smallest", extreme_architecture(space, 32, largest=False)
    rng = np.random.default_rng(0)
    for k in range(n_random):
        yield f"random{k}", space.sample(rng)


@pytest.mark.parametrize("space_name,width,cuts", [("mnasnet", 0.35, 2), ("proxylessnas", 0.5, 1), ("mobilenetv3", 0.35, 2), ("tiny", 1.0, 0)])
def test_extracted_models_equal_the_supernet_path(space_name, width, cuts):
    space = load_space(space_name)
    net = Supernet(space, num_classes=10, width_mult=width, stride_cuts=cuts)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 32, 32, generator=gen) for _ in range(2)]
    probe = torch.randn(4, 3, 32, 32, generator=gen)
    for name, arch in _paths(space, 4):
        path = net.path(arch)
        _calibrate(path, batches)
        with torch.no_grad():
            expected = path(probe)
            model = net.extract(arch).eval()
            got = model(probe)
        assert got.shape == (4, 10)
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4), (space_name, name, (got - expected).abs().max().item())
        # the extracted model is the ordinary one: same parameter count as building it from scratch
        from mnas.model import build_model

        fresh = build_model(arch, 10, width, 0.2, cuts)
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in fresh.parameters())


def test_the_supernet_holds_the_largest_model_and_trains_every_kind():
    space = load_space("mnasnet")
    net = Supernet(space, num_classes=10, width_mult=0.35, stride_cuts=2)
    largest = extreme_architecture(space, 32, largest=True)
    from mnas.model import build_model

    assert sum(p.numel() for p in net.parameters()) > sum(p.numel() for p in build_model(largest, 10, 0.35, 0.2, 2).parameters())
    # a path's loss reaches only that path's weights: a conv block's gradients leave its sepconv weights alone
    arch = space.sample(3)
    net.train()
    loss = net(torch.randn(4, 3, 32, 32), arch).square().mean()
    loss.backward()
    block = next(i for i, b in enumerate(arch.blocks) if b.layers)
    used = net.blocks[block][0].kinds[arch.blocks[block].family]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in used.parameters())
    for family, kind in net.blocks[block][0].kinds.items():
        if family != arch.blocks[block].family:
            assert all(p.grad is None for p in kind.parameters()), family


def test_an_architecture_off_the_space_is_refused_by_name():
    space = load_space("tiny")
    net = Supernet(space, num_classes=10)
    other = load_space("mnasnet").base
    with pytest.raises(ArchitectureError, match="blocks"):
        net.path(other)


# ----- training, evaluation and the one-shot search (digits, the tiny space) --------------------
from conftest import run_cli  # noqa: E402
from search_helpers import tiny_config, write_config  # noqa: E402

from search.config import parse_config  # noqa: E402
from search.experiment.store import Store  # noqa: E402


def oneshot_config(tmp_path, batch_size: int = 32, epochs: int = 3):
    """Digits at its own 8 px, the tiny space: 3 epochs train the supernet in ~18 s here."""
    cfg = tiny_config(tmp_path, space="tiny", evaluator="supernet", controller={"type": "evolution", "population": 6, "tournament": 3},
                      supernet={"epochs": epochs, "random_paths": 1, "bn_images": 256}, max_trials=6)
    cfg["proxy"] = {**cfg["proxy"], "width_mult": 1.0, "batch_size": batch_size, "data_fraction": 1.0}
    return cfg


def test_supernet_training_resumes_after_a_stop_with_the_same_state(tmp_path):
    from search.oneshot.training import CHECKPOINT, read_checkpoint, train_supernet

    config = parse_config(oneshot_config(tmp_path, batch_size=128, epochs=2))
    straight = train_supernet(config, tmp_path / "straight")
    first = train_supernet(config, tmp_path / "resumed", stop_after_epochs=1)
    assert (first["finished"], first["epochs_done"]) == (False, 1)
    again = train_supernet(config, tmp_path / "resumed")
    assert (again["finished"], again["epochs_done"], straight["epochs_done"]) == (True, 2, 2)
    a, b = read_checkpoint(tmp_path / "straight")["model"], read_checkpoint(tmp_path / "resumed")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in again["history"]]
    # a different recipe does not silently continue someone else's supernet
    base = oneshot_config(tmp_path, batch_size=128, epochs=2)
    other = parse_config({**base, "proxy": {**base["proxy"], "width_mult": 0.5}})
    from mnas.errors import MnasError

    with pytest.raises(MnasError, match="another space, recipe or data"):
        train_supernet(other, tmp_path / "resumed")
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()


def test_a_supernet_saved_on_a_gpu_resumes_on_the_cpu_and_says_what_differs(tmp_path):
    """The checkpoint loads on the CPU whatever saved it; a GPU's random states (a CUDA RNG state, a
    CUDA generator's 16-byte Philox state) cannot apply here: the resume names them and goes on."""
    from search.oneshot.training import CHECKPOINT, read_checkpoint, train_supernet

    config = parse_config(oneshot_config(tmp_path, batch_size=128, epochs=2))
    train_supernet(config, tmp_path / "sn", stop_after_epochs=1)
    ckpt = read_checkpoint(tmp_path / "sn")
    assert set(ckpt["rng"]) == {"cpu"} and ckpt["generator_device"] == "cpu" and ckpt["rng"]["cpu"].device.type == "cpu"
    ckpt["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)
    ckpt["generator"], ckpt["generator_device"] = torch.zeros(16, dtype=torch.uint8), "cuda"
    torch.save(ckpt, tmp_path / "sn" / CHECKPOINT)
    lines = []
    done = train_supernet(config, tmp_path / "sn", log=lines.append)
    assert done["finished"] and done["epochs_done"] == 2
    said = next(line for line in lines if "not the exact run" in line)
    assert "the GPU's random state (the checkpoint was saved on a GPU)" in said and "saved for a cuda generator" in said


def test_oneshot_search_evaluates_through_the_supernet_and_reports(tmp_path):
    cfg = write_config(tmp_path / "oneshot.yaml", oneshot_config(tmp_path))
    out = tmp_path / "exp"
    proc = run_cli("search", str(cfg), "--out", str(out), "--no-progress", timeout=600)
    assert "max_trials reached" in proc.stdout, proc.stdout
    store = Store(out)
    done = store.trials(status="succeeded")
    assert len(done) == 6
    evaluated = [t for t in done if t["worker"] != "store"]  # a repeated proposal is answered from the store
    assert len(evaluated) >= 4 and all(t["metrics"]["evaluator"] == "supernet" and t["worker"] == "supernet" for t in evaluated)
    accuracies = [t["accuracy"] for t in done]
    assert max(accuracies) > 0.25 and len(set(accuracies)) > 3  # digits has 10 classes: trained paths beat chance and differ
    assert all(t["latency_ms"] > 0 for t in done)
    assert (out / "supernet" / "supernet.pt").is_file()
    run_cli("report", str(out))
    assert (out / "report" / "index.html").is_file()
    # the extracted winner is an ordinary checkpoint that export reads, with the supernet's accuracy
    best = store.best_trial(1)
    arch_file = tmp_path / "best.json"
    arch_file.write_text(json.dumps(best["architecture"]))
    run_cli("supernet", "extract", str(out / "supernet"), str(arch_file), "--out", str(tmp_path / "winner"))
    metrics = json.loads((tmp_path / "winner" / "metrics.json").read_text())
    assert metrics["top1"] == pytest.approx(best["accuracy"])
    from mnas.train import load_checkpoint

    assert sum(p.numel() for p in load_checkpoint(tmp_path / "winner" / "checkpoint.pt").parameters()) > 1000
    # stage 2 may start the winner from its shared weights: a trial of its own beside the scratch one
    proc = run_cli("stage2", str(out), "--top", "1", "--epochs", "1", "--init", "shared", timeout=600)
    assert "from the supernet's weights" in proc.stdout
    (s2,) = Store(out).trials(stage=2)
    assert s2["status"] == "succeeded" and s2["meta"]["init"] == "shared" and s2["arch_key"].endswith("@shared")
    assert (out / "trials" / str(s2["id"]) / "init.pt").is_file() and s2["accuracy"] > 0.25


def test_a_oneshot_pareto_search_sweeps_latency_targets_in_one_run(tmp_path):
    cfg = oneshot_config(tmp_path, epochs=1)
    cfg.update(reward={"mode": "pareto", "target_ms": 0.6, "min_target_ms": 0.1, "accuracy_threshold": 0.1},
               controller={"type": "random"}, max_trials=8)
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "pareto.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    done = Store(out).trials(status="succeeded")
    targets = {t["meta"].get("target_ms") for t in done if t["worker"] == "supernet"}
    assert len(done) == 8 and len(targets) >= 3  # a latency target of its own per proposal: one run covers the range
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    assert status["front_size"] >= 1 and status["hypervolume"] > 0
