"""Train and evaluate one architecture: the proxy trial of stage 1 and the full run of stage 2.

The recipe is fixed on purpose (architecture search must not mix in hyperparameter
search): SGD with Nesterov momentum 0.9, lr 0.2 x batch/256 with cosine decay to 0 and a
linear warm-up over the first 3% of steps, weight decay 4e-5 (not on BN or biases),
optional label smoothing. The model's BN layers use TF's slow running averages (decay
0.99), which lag behind in a short proxy run, so before every evaluation the BN statistics
are recomputed from up to 2,048 training images (precise BN, as Once-for-All does).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from mnas.accel import Execution, plan_for, resolve_device_name
from mnas.arch import Architecture
from mnas.data import DeviceSource, prepare_batch
from mnas.files import atomic_path, write_atomic
from mnas.model import build_model
from mnas.recipe import TrainConfig  # noqa: F401  (declared torch-free; trainers import it from here)


def resolve_device(name: str = "auto") -> torch.device:
    return torch.device(resolve_device_name(name, torch.cuda.is_available()))


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1 + math.cos(math.pi * progress))


def train_step(model: torch.nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, execution: Execution,
               label_smoothing: float = 0.0, scaler=None) -> torch.Tensor:
    """One optimiser step; returns the detached loss. search.trials.tuning times this same step.

    ``scaler``: the training's ``execution.grad_scaler()``, kept across steps (fp16 scales the loss;
    a disabled scaler, as bf16 and fp32 get, passes the loss and the step through unchanged)."""
    scaler = execution.grad_scaler() if scaler is None else scaler
    with execution.autocast():
        loss = F.cross_entropy(model(x).float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def model_input(x: torch.Tensor, device: torch.device, resolution: int, train: bool, gen, channels_last: bool,
                augmentation: str = "crop") -> torch.Tensor:
    """A source's batch as the model's input: uint8 NHWC is prepared on the device; a float
    batch arrives ready (e.g. from a torchvision DataLoader pipeline) and is only moved."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return prepare_batch(x, resolution, train=train, generator=gen, channels_last=channels_last, augmentation=augmentation)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def calibrate_bn(model: torch.nn.Module, source, cfg: TrainConfig, execution: Execution) -> None:
    """Recompute BN running statistics as exact averages over a few training batches, in the
    precision evaluation runs in (the statistics of the activations it will normalise)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or cfg.bn_calibration_images <= 0:
        return
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    seen = 0
    for x, _ in source.batches(cfg.batch_size, shuffle=True, seed=cfg.seed + 7, resolution=cfg.resolution):
        with execution.autocast():
            model(model_input(x, execution.device, cfg.resolution, False, None, execution.channels_last))
        seen += len(x)
        if seen >= cfg.bn_calibration_images:
            break
    for bn, m in zip(bns, saved):
        bn.momentum = m


@torch.no_grad()
def evaluate(model, source, cfg: TrainConfig, execution: Execution) -> dict:
    model.eval()
    device = execution.device
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in source.batches(cfg.batch_size * 2, shuffle=False, seed=0, resolution=cfg.resolution):
        y = y.to(device)
        with execution.autocast():
            logits = model(model_input(x, device, cfg.resolution, False, None, execution.channels_last))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return {"top1": correct / max(1, total), "loss": loss_sum / max(1, total), "images": total}


class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN or inf loss); a search records the trial as failed."""


def train_model(
    arch: Architecture,
    train_source,
    eval_source,
    num_classes: int,
    cfg: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    before_step: Callable[[], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    init_weights: str | Path | None = None,
) -> dict:
    """Train ``arch`` on ``train_source``, evaluate on ``eval_source``; return metrics.

    With ``out_dir`` it writes ``checkpoint.pt`` (architecture, weights, config) and
    ``metrics.json`` there. ``before_step`` runs before every optimiser step (a search uses
    it to pause training while another trial measures latency on the same CPU). ``on_epoch``
    gets each epoch's evaluation (epoch, top1, loss, train_loss, seconds): the learning curve a
    search stops hopeless trials by. Those evaluations leave the training itself unchanged (the
    random state is restored after each), so the final accuracy is the same with or without.
    """
    cfg = cfg or TrainConfig()
    execution = plan_for(cfg)
    device, channels_last = execution.device, execution.channels_last
    torch.manual_seed(cfg.seed)
    model = build_model(arch, num_classes, cfg.width_mult, cfg.dropout, cfg.cuts())
    if init_weights is not None:
        model.load_state_dict(torch.load(init_weights, map_location="cpu", weights_only=True))
    model = execution.place(model)
    train_source, eval_source = place_data(train_source, device, cfg.data_on_device), place_data(eval_source, device, cfg.data_on_device)
    on_device = isinstance(train_source, DeviceSource)
    # training runs the compiled module; BN calibration and evaluation run the eager one
    step_model = step_module(model, cfg.compile)

    scaler = execution.grad_scaler()
    steps_per_epoch = math.ceil(len(train_source) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_fraction * total_steps)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.peak_lr(), momentum=cfg.momentum, nesterov=True)
    gen = torch.Generator(device=device if on_device else "cpu").manual_seed(cfg.seed)

    history, step, images, train_seconds, first_step_s = [], 0, 0, 0.0, 0.0
    with _progress_bar(progress) as bar:
        for epoch in range(cfg.epochs):
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, loss=float("nan"), ips=0.0) if bar else None
            model.train()
            t0 = time.perf_counter()
            loss_sum, seen = torch.zeros((), device=device), 0
            for x, y in train_source.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch, resolution=cfg.resolution):
                if before_step is not None:
                    before_step()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, total_steps, cfg.peak_lr(), warmup)
                x = model_input(x, device, cfg.resolution, True, gen, channels_last, cfg.augmentation)
                y = y.to(device, non_blocking=True)
                loss = train_step(step_model, optimizer, x, y, execution, cfg.label_smoothing, scaler)
                loss_sum += loss * len(y)
                seen += len(y)
                step += 1
                if step == 1:
                    execution.synchronize()  # the step's GPU work, not only its launch
                    first_step_s = time.perf_counter() - t0  # holds the compile time when compiling
                if bar:
                    bar.update(task, advance=1, loss=loss.item(), ips=seen / (time.perf_counter() - t0))
            epoch_loss = (loss_sum / max(1, seen)).item()
            if not math.isfinite(epoch_loss):
                raise NonFiniteLoss(f"training loss became {epoch_loss} in epoch {epoch + 1}")
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            images += seen
            history.append({"epoch": epoch + 1, "train_loss": epoch_loss, "seconds": seconds})
            if on_epoch is not None and epoch + 1 < cfg.epochs:
                history[-1].update(_evaluate_keeping_rng(model, train_source, eval_source, cfg, execution))
                on_epoch(dict(history[-1]))

    t_eval = time.perf_counter()
    calibrate_bn(model, train_source, cfg, execution)
    result = evaluate(model, eval_source, cfg, execution)
    history[-1].update(top1=result["top1"], loss=result["loss"])
    if on_epoch is not None:
        on_epoch(dict(history[-1]))
    metrics = {
        "top1": result["top1"],
        "eval_loss": result["loss"],
        "eval_images": result["images"],
        "train_loss": history[-1]["train_loss"],
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t_eval,
        "images_per_s": images / train_seconds if train_seconds else 0.0,
        "train_images": len(train_source),
        "epochs": cfg.epochs,
        "device": execution.facts.name if execution.is_cuda else str(device),
        "precision": execution.precision,
        "channels_last": channels_last,
        "data_on_device": on_device,
        "compile": cfg.compile,
        "first_step_seconds": first_step_s,
        "stride_cuts": cfg.cuts(),
        "history": history,
        "config": cfg.model_dump(),
        "architecture": arch.to_dict(),
    }
    if out_dir is not None:
        save_checkpoint(model, arch, num_classes, cfg, metrics, out_dir)
    return metrics


def _evaluate_keeping_rng(model, train_source, eval_source, cfg: TrainConfig, execution: Execution) -> dict:
    """Mid-training evaluation (BN calibrated as at the end) that leaves the random state as it was."""
    state = execution.rng_state()
    calibrate_bn(model, train_source, cfg, execution)
    result = evaluate(model, eval_source, cfg, execution)
    execution.set_rng_state(state)
    return {"top1": result["top1"], "loss": result["loss"]}


def step_module(model: torch.nn.Module, compile_mode: str) -> torch.nn.Module:
    """The module the training loop calls: ``model`` itself, or it compiled (same parameters)."""
    if compile_mode == "off":
        return model
    return torch.compile(model, mode=None if compile_mode == "default" else compile_mode)


def place_data(source, device: torch.device, wanted: bool | None):
    """Move an in-memory split onto a CUDA device when asked, or by default when it fits.

    "Fits" means the uint8 arrays take under a quarter of the GPU's free memory, leaving the
    rest to the model and to the other trials packed on the same GPU.
    """
    if device.type != "cuda" or wanted is False or not hasattr(source, "to_device"):
        return source
    if wanted is None:
        free, _ = torch.cuda.mem_get_info(device)
        if source.nbytes() > free / 4:
            return source
    return source.to_device(device)


def save_checkpoint(model, arch: Architecture, num_classes: int, cfg: TrainConfig, metrics: dict, out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / "checkpoint.pt") as tmp:
        torch.save({"architecture": arch.to_dict(), "num_classes": num_classes, "train_config": cfg.model_dump(), "state_dict": state}, tmp)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))  # last: marks the training done


def load_checkpoint(path: str | Path) -> torch.nn.Module:
    """Rebuild a trained model from ``checkpoint.pt`` (eval mode, CPU)."""
    return load_trained(path)[0]


def load_trained(path: str | Path) -> tuple[torch.nn.Module, TrainConfig]:
    """The model of ``checkpoint.pt`` (eval mode, CPU) and the recipe it was trained with."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig(**ckpt["train_config"])
    model = build_model(Architecture.from_dict(ckpt["architecture"]), ckpt["num_classes"], cfg.width_mult, cfg.dropout, cfg.cuts())
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), cfg


def _progress_bar(enabled: bool):
    if not enabled:
        import contextlib

        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(),
    )
