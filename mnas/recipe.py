"""The training recipe as data: every setting of a proxy or full training, declared once.

This module imports no torch, so that reading a search config (``mnas status``,
``mnas report``) stays fast. ``TrainConfig`` (one training run) and the search's
``ProxyConfig`` (the proxy task) are both built on ``Recipe``: a field and its bounds are
written here and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

WIDTH_MULT_MAX = 8.0
WidthMult = Annotated[float, Field(gt=0, le=WIDTH_MULT_MAX, description="width multiplier (TF round_filters, divisor 8; head kept)")]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["off", "default"]


def check_width_mult(value: float) -> float:
    """The one rule for a width multiplier, for callers outside pydantic (CLI, model builder)."""
    if not 0 < value <= WIDTH_MULT_MAX:
        raise ValueError(f"width_mult must be in (0, {WIDTH_MULT_MAX:g}] (got {value})")
    return value


def small_input_cuts(resolution: int) -> int:
    """How many leading stride-2 steps to drop at a proxy resolution (0 at 128 px and up).

    The ImageNet stride schedule (/32) collapses a 32 px input to 1x1 by block 6; with
    the stem and the first downsampling block at stride 1, 32 px ends at 4x4, as the
    CIFAR versions of these networks do.
    """
    return 0 if resolution >= 128 else 1 if resolution >= 64 else 2


class Recipe(BaseModel):
    """Training settings; the defaults are the documented recipe (see mnas.train)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    resolution: int = Field(default=32, ge=8, le=1024)
    lr: float | None = Field(default=None, gt=0, description="peak learning rate; default 0.2 x batch/256")
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=4e-5, ge=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    warmup_fraction: float = Field(default=0.03, ge=0, lt=1)
    width_mult: WidthMult = 1.0
    dropout: float = Field(default=0.2, ge=0, lt=1)
    stride_cuts: int | None = Field(default=None, ge=0, le=6, description="leading stride-2 steps run at stride 1; default by resolution")
    bn_calibration_images: int = Field(default=2048, ge=0)
    augmentation: Literal["crop", "resized_crop"] = Field(
        default="crop", description="crop: padded random crop + flip (CIFAR); resized_crop: random-resized crop + flip (ImageNet-style shards)")
    device: str = "auto"
    precision: Precision = Field(default="auto", description="auto: bf16 autocast on a GPU with native bf16, fp16 with loss scaling on older GPUs, fp32 on the CPU (mnas.accel)")
    channels_last: bool | None = Field(default=None, description="None: on (2.4-2.9x faster on the CPU); a search measures it on the GPU")
    data_on_device: bool | None = Field(default=None, description="hold the split on the GPU as uint8; default when it fits")
    compile: CompileMode = Field(default="off", description="torch.compile the training step (default mode)")

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        if value == "reduce-overhead":  # CUDA graphs: torch skips them for this step, or re-records them every epoch
            raise ValueError("reduce-overhead (CUDA graphs) cannot capture a training step: BatchNorm updates its running "
                             "statistics in place and an epoch's last batch is smaller; use compile: default")
        return "off" if value is False else value  # YAML reads a bare `off` as false

    def cuts(self) -> int:
        return self.stride_cuts if self.stride_cuts is not None else small_input_cuts(self.resolution)

    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 0.2 * self.batch_size / 256

    def recipe(self) -> dict:
        """The recipe's fields alone (a subclass's own fields left out)."""
        return self.model_dump(include=set(Recipe.model_fields))


class TrainConfig(Recipe):
    """One training run: the recipe and its seed."""

    seed: int = 0
