"""Parameter and MAC counts against the references (torchvision, timm, the TF README)."""

import pytest
import torch
import torchvision

from mnas.costs import arch_info, count_params
from mnas.model import build_model, round_filters
from mnas.presets import PRESETS


@pytest.mark.parametrize(
    "name, params, macs, fvcore_total",
    [
        # params: timm semnasnet_100 / torchvision mnasnet1_0 / mobilenet_v2, exactly
        # macs: paper 312M (A1), 300M (MobileNetV2); fvcore totals as measured on the references
        ("mnasnet-a1", 3_887_038, 312e6, 324.1e6),
        ("mnasnet-b1", 4_383_312, 314e6, 325.3e6),
        ("mobilenet-v2", 3_504_872, 300e6, 314.2e6),
    ],
)
def test_preset_counts_match_references(name, params, macs, fvcore_total):
    info = arch_info(PRESETS[name])
    assert info["params"] == params
    assert info["macs"] == pytest.approx(macs, rel=0.01)
    assert info["fvcore_total"] == pytest.approx(fvcore_total, rel=0.01)
    assert info["blocks"] == PRESETS[name].to_timm()


def test_width_multiplier_follows_round_filters():
    assert [round_filters(c, 0.5) for c in (32, 16, 24, 40, 80, 112, 160, 320)] == [16, 8, 16, 24, 40, 56, 80, 160]
    assert [round_filters(c, 1.4) for c in (32, 16, 24, 40)] == [48, 24, 32, 56]
    model = build_model(PRESETS["mnasnet-a1"], width_mult=0.5)
    assert model.conv_stem.out_channels == 16  # stem scaled
    assert model.conv_head.out_channels == 1280  # head kept
    # TF README: A1 x0.5 2.1M params, 105M MAdds; A1 x1.4 6.1M, 592M
    small, large = arch_info(PRESETS["mnasnet-a1"], width_mult=0.5), arch_info(PRESETS["mnasnet-a1"], width_mult=1.4)
    assert small["params"] == pytest.approx(2.1e6, rel=0.02) and small["macs"] == pytest.approx(105.2e6, rel=0.03)
    assert large["params"] == pytest.approx(6.1e6, rel=0.02) and large["macs"] == pytest.approx(591.5e6, rel=0.03)


def test_resolution_and_classes():
    a1 = PRESETS["mnasnet-a1"]
    info192 = arch_info(a1, resolution=192)
    assert info192["macs"] == pytest.approx(232.0e6, rel=0.02)  # TF README: 232M MAdds at 192 px
    info32 = arch_info(a1, resolution=32, num_classes=10)
    assert info32["params"] == 3_887_038 - 1281 * 1000 + 1281 * 10
    assert info32["macs"] < info192["macs"] / 30


def test_b1_matches_torchvision_layer_by_layer():
    ours = build_model(PRESETS["mnasnet-b1"]).eval()
    ref = torchvision.models.mnasnet1_0().eval()
    ours_params = [tuple(p.shape) for p in ours.parameters()]
    ref_params = [tuple(p.shape) for p in ref.parameters()]
    assert ours_params == ref_params
    ours_convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups) for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    ref_convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups) for m in ref.modules() if isinstance(m, torch.nn.Conv2d)]
    assert ours_convs == ref_convs
    # Same weights and BN statistics in the same order -> same function (up to BN eps).
    with torch.no_grad():
        for (_, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
            a.copy_(b)
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-5  # torchvision's eps
        ref.apply(lambda m: torch.nn.init.normal_(m.running_mean) if isinstance(m, torch.nn.BatchNorm2d) else None)
        for (_, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
            a.copy_(b)
        x = torch.randn(2, 3, 224, 224)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_count_params_counts_all_trainables():
    model = build_model(PRESETS["mobilenet-v2"], num_classes=10)
    assert count_params(model) == sum(p.numel() for p in model.parameters()) == 2_236_682
