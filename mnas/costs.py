"""Parameter and multiply-add counts (fvcore), the numbers papers report for a model.

fvcore counts one multiply-add as one "flop" and also counts batch norm; papers report
multiply-adds of convolutions and the classifier only. We give both: ``macs`` (conv +
linear, the paper's convention) and ``fvcore_total`` (what fvcore's total says).
"""

from __future__ import annotations

import warnings

import torch

with warnings.catch_warnings():  # fvcore's imports call the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

from mnas.arch import Architecture
from mnas.model import build_model

MAC_OPERATORS = ("conv", "linear", "matmul", "einsum", "bmm")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, resolution: int = 224) -> dict[str, int]:
    """Multiply-adds for one image at ``resolution`` (model in eval mode, on the CPU)."""
    model = model.eval()
    x = torch.zeros(1, 3, resolution, resolution, device=next(model.parameters()).device)
    flops = FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    return {
        "macs": int(sum(v for k, v in by_op.items() if k in MAC_OPERATORS)),
        "fvcore_total": int(flops.total()),
    }


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
