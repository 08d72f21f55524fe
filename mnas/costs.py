"""Parameter and multiply-add counts, the numbers papers report for a model.

Papers report multiply-adds of convolutions and the classifier only: ``macs`` counts those
with forward hooks on one image (a few milliseconds, so every trial records it). fvcore
counts one multiply-add as one "flop" and also counts batch norm; ``fvcore_total`` is what
its total says (a JIT trace, a fraction of a second: ``mnas arch info`` shows it).
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():  # fvcore's imports call the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from mnas.arch import Architecture
from mnas.model import build_model


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_linear_macs(model: torch.nn.Module, resolution: int = 224, channels: int = 3) -> int:
    """Multiply-adds of the convolutions and linear layers for one image at ``resolution``
    (``channels`` wide: a network takes 3, a layer alone its input width)."""
    total = 0

    def conv(m, _inp, out):
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, _inp, out):
        nonlocal total
        total += out[0].numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, resolution, resolution, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return int(total)


def count_macs(model: torch.nn.Module, resolution: int = 224) -> dict[str, int]:
    """Multiply-adds for one image at ``resolution`` (model in eval mode), and fvcore's total."""
    model = model.eval()
    x = torch.zeros(1, 3, resolution, resolution, device=next(model.parameters()).device)
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return {"macs": conv_linear_macs(model, resolution), "fvcore_total": int(flops.total())}


def arch_costs(arch: Architecture, resolution: int = 224, num_classes: int = 1000, width_mult: float = 1.0) -> dict:
    """Params and multiply-adds of ``arch`` (what every trial records; no fvcore trace)."""
    model = build_model(arch, num_classes=num_classes, width_mult=width_mult)
    return {"params": count_params(model), "macs": conv_linear_macs(model, resolution)}


def arch_info(arch: Architecture, resolution: int = 224, width_mult: float = 1.0, num_classes: int = 1000) -> dict:
    """Everything ``mnas arch info`` prints."""
    model = build_model(arch, num_classes=num_classes, width_mult=width_mult)
    return {
        "params": count_params(model),
        **count_macs(model, resolution),
        "resolution": resolution,
        "width_mult": width_mult,
        "num_classes": num_classes,
        "blocks": arch.to_timm(),
        "architecture": arch.to_dict(),
    }
