"""Training-free ("zero-cost") scores of an architecture, computed at initialization.

A search stores them beside every trial so that their rank correlation with the proxy and
reference accuracies can be measured (``mnas proxy search``, ``mnas report``), and an
optional pre-filter can skip candidates whose score is far below the rest.

- ``params``, ``macs``: the model as trained (proxy width and resolution).
- ``synflow`` (Tanaka et al. 2020; as a NAS score, Abdelfattah et al. 2021): the sum over
  weights of |w * dR/dw| for R = sum of the output of the network with every weight
  replaced by its absolute value, fed an all-ones input; data-free. Reported as log10.
- ``zico`` (Li et al., ICLR 2023): per layer, the sum over weights of mean|g| / std(g) of the
  gradients over a few training batches, log-summed over layers; high for networks whose
  gradients are large and consistent.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from mnas.arch import Architecture
from mnas.costs import conv_linear_macs, count_params
from mnas.model import build_model
from mnas.recipe import TrainConfig

SCORES = ("params", "macs", "synflow", "zico")


def synflow(model: torch.nn.Module, resolution: int) -> float:
    """log10 of the SynFlow score (in float64, BN in eval mode, so the flow is linear in each weight)."""
    model = model.double().eval()
    signs = {}
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                signs[name] = torch.sign(p)
                p.abs_()
    model.zero_grad(set_to_none=True)
    x = torch.ones(1, 3, resolution, resolution, dtype=torch.float64, device=next(model.parameters()).device)
    model(x).sum().backward()
    total = sum((p * p.grad).abs().sum().item() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name in signs:
                p.mul_(signs[name])
    return math.log10(total) if total > 0 else float("-inf")


def zico(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """ZiCo over the given (input, label) batches (at least two): sum over weight tensors of
    log(sum(mean|g| / std(g))) where the gradient's std over batches is non-zero."""
    if len(batches) < 2:
        raise ValueError("ZiCo needs at least two batches")
    model.train()
    grads: dict[str, list[torch.Tensor]] = {}
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            if p.grad is not None and p.ndim > 1:  # conv and linear weights, as the paper
                grads.setdefault(name, []).append(p.grad.detach().flatten().clone())
    score = 0.0
    for stack in grads.values():
        g = torch.stack(stack)
        std, mean = g.std(0), g.abs().mean(0)
        keep = std > 0
        value = (mean[keep] / std[keep]).sum().item()
        if value > 0:
            score += math.log(value)
    return score


def zero_cost_scores(arch: Architecture, train_source, num_classes: int, cfg: TrainConfig, device: torch.device,
                     batches: int = 2, batch_size: int = 64) -> dict:
    """Every score of ``SCORES`` for ``arch`` as the proxy trains it, plus the seconds they took.
    Uses its own freshly built model and random state, so the trial's training is unchanged."""
    from mnas.train import model_input

    started = time.perf_counter()
    cpu_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed + 12345)
        model = build_model(arch, num_classes, cfg.width_mult, cfg.dropout, cfg.cuts()).to(device)
        out = {"params": float(count_params(model)), "macs": float(conv_linear_macs(model, cfg.resolution))}
        data = []
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        for x, y in train_source.batches(min(batch_size, cfg.batch_size), shuffle=True, seed=cfg.seed + 99, resolution=cfg.resolution):
            data.append((model_input(x, device, cfg.resolution, True, gen, False), y.to(device)))
            if len(data) == batches:
                break
        out["zico"] = zico(model, data) if len(data) >= 2 else float("nan")
        out["synflow"] = synflow(model, cfg.resolution)
    finally:
        torch.random.set_rng_state(cpu_state)
    out["seconds"] = time.perf_counter() - started
    return out
