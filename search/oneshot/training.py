"""Train a supernet on the proxy task's stage-1 training split; resumable.

Each step trains several paths on one batch and takes one optimiser step on the summed
gradients: with the sandwich rule the largest and the smallest architecture of the space
(by multiply-adds) and ``random_paths`` uniform samples; without it, one uniform sample
(SPOS). With distillation, every path but the largest learns the largest path's softened
outputs on that batch (BigNAS in-place distillation), which the literature finds improves
how well the small paths' accuracies rank.

The checkpoint (``supernet.pt``, written atomically after every epoch) holds the weights,
the optimiser, the augmentation generator and torch's random state, so a resumed training
continues exactly where the last finished epoch left it. Paths are drawn from a generator
seeded by (seed, step), so they too are the same after a resume.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mnas.errors import MnasError
from mnas.files import atomic_path
from search.config import SearchConfig

CHECKPOINT = "supernet.pt"


@dataclass(frozen=True)
class SupernetSetup:
    """What the checkpoint must agree with to be resumed or evaluated."""

    space: dict
    recipe: dict
    supernet: dict
    num_classes: int
    data: dict

    @classmethod
    def of(cls, config: SearchConfig, num_classes: int) -> SupernetSetup:
        sn = config.supernet.model_dump(exclude={"directory", "bn_images", "eval_images"})
        data = {"spec": config.proxy.data, "val_fraction": config.proxy.val_fraction, "split_seed": config.proxy.split_seed}
        recipe = config.proxy.train_config(config.seed).model_dump(exclude={"device", "precision", "channels_last", "data_on_device", "compile"})
        return cls(config.space.build().to_file(), recipe, sn, num_classes, data)

    def to_dict(self) -> dict:
        return {"space": self.space, "recipe": self.recipe, "supernet": self.supernet, "num_classes": self.num_classes, "data": self.data}


def supernet_dir(config: SearchConfig, experiment: Path | None) -> Path:
    if config.supernet.directory:
        return Path(config.supernet.directory)
    if experiment is None:
        raise MnasError("give the supernet a directory (supernet.directory or --out)")
    return Path(experiment) / "supernet"


def read_checkpoint(directory: Path) -> dict | None:
    """The checkpoint, on the CPU whatever device saved it (random states must be CPU tensors)."""
    import torch

    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise MnasError(f"{path} is not a readable supernet checkpoint ({exc.__class__.__name__}: {exc}); delete it to train again") from None


def trained_config(directory: Path) -> SearchConfig:
    """The config a supernet directory was trained with (``supernet.json``)."""
    from search.config import parse_config

    info = Path(directory) / "supernet.json"
    if not info.is_file():
        raise MnasError(f"{directory} holds no supernet (no supernet.json); train one with mnas supernet train CONFIG --out {directory}")
    return parse_config(json.loads(info.read_text())["config"], str(info))


def is_trained(directory: Path) -> bool:
    info = Path(directory) / "supernet.json"
    return info.is_file() and json.loads(info.read_text()).get("finished", False)


def build_supernet(setup: dict):
    from mnas.recipe import TrainConfig
    from mnas.space import load_space
    from mnas.supernet import Supernet

    recipe = TrainConfig(**setup["recipe"])
    return Supernet(load_space(setup["space"]), setup["num_classes"], recipe.width_mult, recipe.dropout, recipe.cuts())


def train_supernet(config: SearchConfig, directory: Path, log=None, epochs: int | None = None, stop_after_epochs: int | None = None) -> dict:
    """Train (or resume) the supernet in ``directory``; returns its summary (``supernet.json``).

    ``epochs`` overrides the config's; ``stop_after_epochs`` ends this call early (as a kill
    would, after a checkpoint) for tests and for training in slices.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mnas.accel import plan_for
    from mnas.data import DeviceSource
    from mnas.layers import extreme_architecture
    from mnas.train import _param_groups, lr_at, model_input, place_data
    from search.trials.data import load_trial_data
    from search.trials.spec import TrialData

    log = log or (lambda line: None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    proxy, sn = config.proxy, config.supernet
    data = TrialData.of(proxy)
    train_source, _, num_classes = load_trial_data(data, stage=1)
    if epochs is not None:
        config = config.model_copy(update={"supernet": sn.model_copy(update={"epochs": epochs})})
        sn = config.supernet
    setup = SupernetSetup.of(config, num_classes).to_dict()
    cfg = proxy.train_config(config.seed)
    execution = plan_for(cfg)
    device, channels_last = execution.device, execution.channels_last
    torch.manual_seed(cfg.seed)
    net = execution.place(build_supernet(setup))
    scaler = execution.grad_scaler()
    train_source = place_data(train_source, device, cfg.data_on_device)
    on_device = isinstance(train_source, DeviceSource)
    optimizer = torch.optim.SGD(_param_groups(net, cfg.weight_decay), lr=cfg.peak_lr(), momentum=cfg.momentum, nesterov=True)
    gen = torch.Generator(device=device if on_device else "cpu").manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(train_source) / cfg.batch_size)
    total = steps_per_epoch * sn.epochs
    warmup = int(cfg.warmup_fraction * total)

    space = net.space
    largest = extreme_architecture(space, cfg.resolution, largest=True)
    smallest = extreme_architecture(space, cfg.resolution, largest=False)
    start_epoch, history = 0, []
    ckpt = read_checkpoint(directory)  # on the CPU: random states must stay CPU tensors; weights move on load
    if ckpt is not None:
        theirs = dict(ckpt["setup"])
        theirs["supernet"] = {**theirs["supernet"], "epochs": setup["supernet"]["epochs"]}  # more epochs may be asked for
        if theirs != setup:
            raise MnasError(f"{directory} holds a supernet trained with another space, recipe or data; use another directory")
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])  # casts its state to the parameters' device
        start_epoch, history = ckpt["epoch"], ckpt["history"]
        if start_epoch >= sn.epochs:
            return _summary(directory, config, setup, history, sn.epochs, finished=True)
        lost = restore_random_state(ckpt, execution, gen)
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        log(f"supernet: resuming after epoch {start_epoch}/{sn.epochs}")
        if lost:
            log(f"supernet: {'; '.join(lost)}: the resumed run goes on but is not the exact run it continues")

    started = time.perf_counter()
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, sn.epochs):
        net.train()
        t0, loss_sum, seen = time.perf_counter(), 0.0, 0
        for x, y in train_source.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch, resolution=cfg.resolution):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, cfg.peak_lr(), warmup)
            x = model_input(x, device, cfg.resolution, True, gen, channels_last, cfg.augmentation)
            y = y.to(device, non_blocking=True)
            rng = np.random.default_rng([config.seed, step])
            randoms = [space.sample(rng) for _ in range(sn.random_paths if sn.sandwich else 1)]
            paths = [largest, smallest, *randoms] if sn.sandwich else randoms
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            for k, arch in enumerate(paths):
                with execution.autocast():
                    logits = net(x, arch).float()
                if teacher is not None:
                    loss = F.kl_div(F.log_softmax(logits, 1), teacher, reduction="batchmean")
                else:
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                    if sn.distill and sn.sandwich and k == 0:
                        teacher = F.softmax(logits.detach(), 1)
                scaler.scale(loss).backward()  # fp16 scales the loss; bf16 and fp32 pass it through
                if k == 0:
                    loss_sum += loss.item() * len(y)
            # the paths' gradients add up on the shared weights; clipping their norm keeps the
            # first steps stable on spaces with deep paths without shortcuts (mnasnet: loss 4.05
            # in epoch 1 without it, digits, 16 px)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), sn.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            seen += len(y)
            step += 1
        epoch_loss = loss_sum / max(1, seen)
        if not math.isfinite(epoch_loss):
            raise MnasError(f"supernet training diverged (loss {epoch_loss}) in epoch {epoch + 1}; lower proxy.lr")
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": epoch_loss, "seconds": seconds, "images_per_s": seen * len(paths) / seconds})
        _save(directory, net, optimizer, gen, epoch + 1, history, setup, execution, scaler)
        done = epoch + 1 - start_epoch
        eta = (time.perf_counter() - started) / done * (sn.epochs - epoch - 1)
        log(f"supernet epoch {epoch + 1}/{sn.epochs}: loss {epoch_loss:.3f} ({'first path' if not sn.sandwich else 'largest path'}), "
            f"{seconds:.1f} s, {len(paths)} paths/step, ETA {eta:.0f} s")
        if stop_after_epochs is not None and done >= stop_after_epochs and epoch + 1 < sn.epochs:
            return _summary(directory, config, setup, history, sn.epochs, finished=False)
    return _summary(directory, config, setup, history, sn.epochs, finished=True)


def restore_random_state(ckpt: dict, execution, gen) -> list[str]:
    """Put back the global random states and the augmentation generator's, from CPU tensors.

    A checkpoint saved on another kind of device (a GPU run resumed on the CPU, or the reverse)
    restores what applies; the rest is returned, named, so the resume can say so."""
    rng = ckpt["rng"] if isinstance(ckpt["rng"], dict) else {"cpu": ckpt["rng"]}  # older checkpoints: the CPU state alone
    lost = execution.set_rng_state(rng)
    try:
        gen.set_state(ckpt["generator"].cpu())
    except RuntimeError:  # a CUDA generator's state does not fit a CPU generator, nor the reverse
        lost.append(f"the augmentation generator's state (saved for a {ckpt.get('generator_device', 'different')} generator, "
                    f"this run's is on the {gen.device.type})")
    return lost


def _save(directory: Path, net, optimizer, gen, epoch: int, history: list, setup: dict, execution, scaler) -> None:
    """Write the checkpoint beside, then rename it over the old one (a kill leaves one whole file)."""
    import torch

    state = {"model": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "optimizer": optimizer.state_dict(),
             "generator": gen.get_state().cpu(), "generator_device": gen.device.type, "rng": execution.rng_state(),
             "scaler": scaler.state_dict() if scaler.is_enabled() else None, "epoch": epoch, "history": history, "setup": setup}
    with atomic_path(directory / CHECKPOINT) as tmp:
        torch.save(state, tmp)


def _summary(directory: Path, config: SearchConfig, setup: dict, history: list, epochs: int, finished: bool) -> dict:
    summary = {"finished": finished, "epochs_done": len(history), "epochs": epochs, "history": history,
               "train_seconds": sum(h["seconds"] for h in history), "setup": setup, "config": config.model_dump(mode="json")}
    (directory / "supernet.json").write_text(json.dumps(summary, indent=2))
    return summary


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
