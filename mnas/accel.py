"""Where and how a training runs, decided in one place: device, precision, autocast, gradient
scaling, memory layout, synchronisation and random state.

Every trainer (proxy trial, full training, supernet and its evaluator, the preflight probe,
the tuner) asks ``plan_execution`` rather than torch.cuda, so the GPU rules are written once.
They are plain functions of a ``DeviceFacts`` (what torch reports about a device): tests pass
a GPU's facts in and check the decisions on a machine without one.

Precision "auto": bf16 autocast on a GPU with native bf16 (compute capability 8.0 and up:
A100, H100, L4, RTX 30xx and later), fp16 autocast with a gradient scaler on older GPUs (T4,
V100), fp32 on the CPU (its bf16 autocast is slower than fp32 on most CPUs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

PRECISIONS = ("fp32", "bf16", "fp16")
BF16_MIN_CAPABILITY = (8, 0)


class PrecisionError(ValueError):
    """A precision the device cannot run."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the rules need to know about a device; ``probe`` asks torch, tests write their own."""

    type: str  # "cpu", "cuda" or "mps"
    index: int | None = None
    name: str = "cpu"
    capability: tuple[int, int] | None = None  # CUDA compute capability
    memory_mb: float | None = None

    @property
    def bf16(self) -> bool:
        """bf16 autocast runs natively (a GPU of capability 8.0+, or the CPU's own kernels)."""
        return self.type == "cpu" or (self.type == "cuda" and self.capability is not None and self.capability >= BF16_MIN_CAPABILITY)

    @property
    def fp16(self) -> bool:
        return self.type in ("cuda", "mps")

    @classmethod
    def probe(cls, device) -> DeviceFacts:
        import torch

        d = torch.device(device)
        if d.type == "cuda":
            index = d.index if d.index is not None else torch.cuda.current_device()
            props = torch.cuda.get_device_properties(index)
            return cls("cuda", index, props.name, (props.major, props.minor), props.total_memory / 2**20)
        if d.type == "mps":
            return cls("mps", None, "Apple MPS")
        return cls("cpu")


def choose_precision(asked: str, facts: DeviceFacts) -> str:
    """The precision a training runs in: ``asked`` when the device can, "auto" by the rule above."""
    if asked == "auto":
        if facts.type == "cuda":
            return "bf16" if facts.bf16 else "fp16"
        return "fp32"
    if asked not in PRECISIONS:
        raise PrecisionError(f"unknown precision {asked!r}; use auto, {', '.join(PRECISIONS)}")
    if asked == "bf16" and not facts.bf16:
        cap = f" (compute capability {facts.capability[0]}.{facts.capability[1]})" if facts.capability else ""
        raise PrecisionError(f"{facts.name}{cap} has no native bf16; use precision fp16 or auto")
    if asked == "fp16" and not facts.fp16:
        raise PrecisionError(f"precision fp16 needs a GPU; this training runs on the {facts.type}: use fp32 or auto")
    return asked


@dataclass(frozen=True)
class Execution:
    """One training's device, precision and layout, and the device-specific steps that follow from them."""

    facts: DeviceFacts
    precision: str
    channels_last: bool

    @property
    def device(self):
        import torch

        return torch.device(self.facts.type, self.facts.index) if self.facts.index is not None else torch.device(self.facts.type)

    @property
    def is_cuda(self) -> bool:
        return self.facts.type == "cuda"

    def autocast(self):
        """The context a forward pass runs in (also BN recalibration, so its statistics are those evaluation sees)."""
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.facts.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def grad_scaler(self):
        """fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not (a disabled scaler passes through)."""
        import torch

        return torch.amp.GradScaler(self.facts.type, enabled=self.precision == "fp16")

    def place(self, module):
        module = module.to(self.device)
        if self.channels_last:
            import torch

            module = module.to(memory_format=torch.channels_last)
        return module

    def synchronize(self) -> None:
        """Wait for queued GPU work, so a wall-clock time covers it (a no-op on the CPU)."""
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def rng_state(self) -> dict:
        """The global random state of this training (CPU, and the GPU's own when on CUDA), as CPU tensors."""
        import torch

        state = {"cpu": torch.random.get_rng_state()}
        if self.is_cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def set_rng_state(self, state: dict) -> list[str]:
        """Restore what ``rng_state`` saved, from whatever device a checkpoint was loaded onto.

        Returns what could not be restored (a GPU's state on a CPU, or the reverse), so a caller
        can say its resumed run differs from an uninterrupted one."""
        import torch

        torch.random.set_rng_state(state["cpu"].cpu())
        missing = []
        if self.is_cuda:
            if state.get("cuda") is not None:
                torch.cuda.set_rng_state(state["cuda"].cpu(), self.device)
            else:
                missing.append("the GPU's random state (the checkpoint was saved on the CPU)")
        elif state.get("cuda") is not None:
            missing.append("the GPU's random state (the checkpoint was saved on a GPU)")
        return missing

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{self.facts.name if self.is_cuda else self.facts.type}, {self.precision}, {layout}"


def resolve_device_name(name: str, cuda_available: bool) -> str:
    """``auto``: the first GPU when there is one, else the CPU."""
    if name == "auto":
        return "cuda" if cuda_available else "cpu"
    return name


def plan_execution(device: str = "auto", precision: str = "auto", channels_last: bool | None = None,
                   facts: DeviceFacts | None = None) -> Execution:
    """Decide a training's execution; ``facts`` stands in for the device (tests), else torch is asked."""
    if facts is None:
        import torch

        facts = DeviceFacts.probe(resolve_device_name(device, torch.cuda.is_available()))
    # channels_last: 2.4-2.9x faster training on the CPU (oneDNN) as measured for A1 at 16-32 px;
    # on a GPU the search's tuning measures it, and this default holds until then
    return Execution(facts, choose_precision(precision, facts), True if channels_last is None else channels_last)


def plan_for(cfg, facts: DeviceFacts | None = None) -> Execution:
    """``plan_execution`` for a recipe (``mnas.recipe.Recipe``: its device, precision, channels_last)."""
    return plan_execution(cfg.device, cfg.precision, cfg.channels_last, facts)
