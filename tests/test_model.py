"""Every architecture in the space builds and runs, at 224 and 32 px, fp32 and bf16, channels_last."""

import numpy as np
import pytest
import torch

from mnas.arch import Architecture
from mnas.blocks import ConvLayer, DepthwiseSeparable, InvertedResidual, PoolShortcut, SqueezeExcite
from mnas.model import build_model
from mnas.presets import PRESETS
from mnas.space import SearchSpace

SPACE = SearchSpace()


@pytest.mark.parametrize("seed", range(6))
def test_sampled_architectures_run_at_224(seed):
    model = build_model(SPACE.sample(seed)).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


@pytest.mark.parametrize("seed", range(20))
def test_sampled_architectures_run_at_32_bf16_channels_last(seed):
    model = build_model(SPACE.sample(100 + seed), num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (4, 10) and torch.isfinite(y.float()).all()
    y.float().sum().backward()  # trains too
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_block_types_and_identity_parts():
    a1 = build_model(PRESETS["mnasnet-a1"])
    first = a1.blocks[0][0]
    assert isinstance(first, DepthwiseSeparable) and isinstance(first.se, torch.nn.Identity) and first.shortcut is None
    block3 = a1.blocks[2]
    assert all(isinstance(layer, InvertedResidual) for layer in block3)
    # SE width from the layer *input* channels: 24 x 0.25 = 6 on the first layer, 40 x 0.25 = 10 after
    assert isinstance(block3[0].se, SqueezeExcite) and block3[0].se.conv_reduce.out_channels == 6
    assert block3[1].se.conv_reduce.out_channels == 10 and block3[1].se.conv_reduce.in_channels == 120
    assert block3[0].shortcut is None and isinstance(block3[1].shortcut, torch.nn.Identity)
    assert isinstance(a1.dropout, torch.nn.Dropout) and a1.dropout.p == 0.2
    bn = a1.bn1
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def test_pool_skip_and_regular_conv():
    arch = Architecture.from_timm("cn_r2_k3_s2_c24_poolskip_se0.25,ir_r1_k5_s1_e3_c24_poolskip")
    model = build_model(arch, num_classes=5)
    first, second = model.blocks[0]
    assert isinstance(first, ConvLayer) and isinstance(first.shortcut, PoolShortcut)
    assert first.shortcut.pool.stride == 2 and isinstance(first.shortcut.proj, torch.nn.Conv2d)  # 32 -> 24 channels
    assert isinstance(second.shortcut.proj, torch.nn.Identity)  # same width: pool only
    assert model(torch.randn(2, 3, 33, 33)).shape == (2, 5)  # odd sizes too


def test_zero_layer_block_is_skipped():
    arch = SPACE.decode([1, 0, 0, 0, 1, 0] + [2, 0, 0, 1, 1, 1] * 5 + [3, 0, 0, 1, 1, 0])
    assert arch.blocks[0].layers == 0 and arch.blocks[6].layers == 0
    model = build_model(arch)
    assert len(model.blocks) == 5
    assert model.blocks[0][0].conv_pw.in_channels == 32  # block 2 takes the stem's output
    assert model.conv_head.in_channels == 160  # head takes block 6's output
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_tf_style_init():
    torch.manual_seed(0)
    model = build_model(PRESETS["mobilenet-v2"])
    pw = model.blocks[1][0].conv_pw  # 16 -> 96, 1x1
    assert pw.weight.std().item() == pytest.approx(np.sqrt(2 / 96), rel=0.05)
    dw = model.blocks[1][0].conv_dw  # depthwise 3x3: fan_out = 9 * 96 / 96
    assert dw.weight.std().item() == pytest.approx(np.sqrt(2 / 9), rel=0.1)
    assert model.classifier.weight.abs().max().item() <= 1 / np.sqrt(1280)
    assert model.classifier.bias.abs().sum().item() == 0


def test_stride_cuts_keep_small_inputs_spatial():
    from mnas.model import small_input_cuts

    a1 = PRESETS["mnasnet-a1"]
    full, cut = build_model(a1).eval(), build_model(a1, stride_cuts=2).eval()
    x = torch.randn(1, 3, 32, 32)
    assert full.forward_features(x).shape[-1] == 1  # ImageNet schedule: 32 px -> 1x1
    assert cut.forward_features(x).shape[-1] == 4  # stem and block 2 at stride 1: 32 px -> 4x4
    assert cut.conv_stem.stride == (1, 1) and cut.blocks[1][0].conv_dw.stride == (1, 1)
    assert cut.blocks[2][0].conv_dw.stride == (2, 2)
    assert sum(p.numel() for p in cut.parameters()) == sum(p.numel() for p in full.parameters())
    assert [small_input_cuts(r) for r in (224, 128, 96, 64, 32, 16)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("name,width", [("mobilenet-v2", 0.35), ("mobilenet-v3-small", 1.4), ("mnasnet-a1", 0.75)])
def test_a_widened_architecture_builds_the_network_at_that_width(name, width):
    from mnas.presets import PRESETS

    arch = PRESETS[name]
    widened = arch.widened(width)
    at_width = build_model(arch, 10, width_mult=width)
    alone = build_model(widened, 10)
    assert [p.shape for p in alone.parameters()] == [p.shape for p in at_width.parameters()]
    assert widened.head == arch.head and widened.stem != arch.stem  # the head is kept, as the builder keeps it
    assert arch.widened(1.0) == arch
