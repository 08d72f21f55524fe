"""Layer modules, one per block type, each with a straight-line ``forward``.

Absent parts are ``nn.Identity`` so that no ``forward`` branches on configuration, except
for the shortcut, which is either ``None`` (no skip) or a module (identity or pooled).
BatchNorm uses the TF reference settings (decay 0.99 -> PyTorch momentum 0.01, eps 1e-3).
"""

from __future__ import annotations

import torch
from torch import nn

from mnas.arch import has_shortcut, make_divisible, mid_channels

BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


_ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "swish": nn.SiLU}


def activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name](inplace=True)


class SqueezeExcite(nn.Module):
    """Channel attention: pool, reduce, act, expand, gate (sigmoid, or hard sigmoid for MobileNetV3)."""

    def __init__(self, channels: int, reduced: int, act: str = "relu", hard_gate: bool = False):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = activation(act)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid() if hard_gate else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * self.gate(s)


def se_reduced(channels: int, in_chs: int, se_ratio: float, style: str) -> int:
    """Reduced width: from the layer input (TF MnasNet, EfficientNet) or the SE's own width, rounded to 8 (MobileNetV3)."""
    return make_divisible(channels * se_ratio) if style == "expanded" else max(1, int(in_chs * se_ratio))


def squeeze_excite(channels: int, in_chs: int, se_ratio: float, act: str, style: str = "input") -> nn.Module:
    if not se_ratio:
        return nn.Identity()
    if style == "expanded":
        return SqueezeExcite(channels, se_reduced(channels, in_chs, se_ratio, style), "relu", hard_gate=True)
    return SqueezeExcite(channels, se_reduced(channels, in_chs, se_ratio, style), act)


class PoolShortcut(nn.Module):
    """The ``pool`` skip: 3x3 average pool with the layer's stride, 1x1 conv + BN if widths differ."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1)
        self.proj = nn.Identity() if in_chs == out_chs else nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn = nn.Identity() if in_chs == out_chs else batch_norm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.proj(self.pool(x)))


def shortcut(skip: str, in_chs: int, out_chs: int, stride: int) -> nn.Module | None:
    """The shortcut module for one layer, or None when the layer has no skip."""
    if not has_shortcut(skip, in_chs, out_chs, stride):
        return None
    return PoolShortcut(in_chs, out_chs, stride) if skip == "pool" else nn.Identity()


class _Layer(nn.Module):
    """Adds the shortcut (if any) to the body's output."""

    shortcut: nn.Module | None

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return out


class ConvLayer(_Layer):
    """Regular kxk convolution + BN + activation (op ``conv``, timm ``cn``)."""

    def __init__(self, in_chs, out_chs, kernel, stride, se_ratio=0.0, skip="identity", act="relu", se_style="input"):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, bias=False)
        self.bn1 = batch_norm(out_chs)
        self.act1 = activation(act)
        self.se = squeeze_excite(out_chs, in_chs, se_ratio, act, se_style)
        self.shortcut = shortcut(skip, in_chs, out_chs, stride)

    def body(self, x):
        return self.se(self.act1(self.bn1(self.conv(x))))


class DepthwiseSeparable(_Layer):
    """Depthwise kxk + BN + act, [SE], linear 1x1 projection + BN (op ``sepconv``, timm ``ds``)."""

    def __init__(self, in_chs, out_chs, kernel, stride, se_ratio=0.0, skip="identity", act="relu", se_style="input"):
        super().__init__()
        # Depth-wise convolution
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, kernel // 2, groups=in_chs, bias=False)
        self.bn1 = batch_norm(in_chs)
        self.act1 = activation(act)
        # Squeeze-and-excitation
        self.se = squeeze_excite(in_chs, in_chs, se_ratio, act, se_style)
        # Point-wise linear projection
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = batch_norm(out_chs)
        self.shortcut = shortcut(skip, in_chs, out_chs, stride)

    def body(self, x):
        x = self.act1(self.bn1(self.conv_dw(x)))
        x = self.se(x)
        return self.bn2(self.conv_pw(x))


class InvertedResidual(_Layer):
    """MBConv: 1x1 expand + BN + act, depthwise kxk + BN + act, [SE], linear 1x1 + BN (timm ``ir``)."""

    def __init__(self, in_chs, out_chs, kernel, stride, expansion, se_ratio=0.0, skip="identity", act="relu", se_style="input"):
        super().__init__()
        mid = mid_channels(in_chs, expansion)
        # Point-wise expansion
        self.conv_pw = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.bn1 = batch_norm(mid)
        self.act1 = activation(act)
        # Depth-wise convolution
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = batch_norm(mid)
        self.act2 = activation(act)
        # Squeeze-and-excitation
        self.se = squeeze_excite(mid, in_chs, se_ratio, act, se_style)
        # Point-wise linear projection
        self.conv_pwl = nn.Conv2d(mid, out_chs, 1, bias=False)
        self.bn3 = batch_norm(out_chs)
        self.shortcut = shortcut(skip, in_chs, out_chs, stride)

    def body(self, x):
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.se(x)
        return self.bn3(self.conv_pwl(x))
