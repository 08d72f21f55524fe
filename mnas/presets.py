"""Reference architectures, written as the timm block strings of their reference code.

A timm stage with different layers is written as several mnas blocks (one per string).
Ref impl: tensorflow/tpu models/official/mnasnet/mnasnet_models.py; timm efficientnet.py and
mobilenetv3.py. Papers: MnasNet arXiv:1807.11626, MobileNetV2 arXiv:1801.04381, MobileNetV3
arXiv:1905.02244, EfficientNet arXiv:1905.11946, Single-Path NAS arXiv:1904.02877, FBNet
arXiv:1812.03443. Parameter and multiply-add counts match timm's models (tests/test_presets.py).
"""

import re
from pathlib import Path

from mnas.arch import Architecture
from mnas.errors import ArchitectureError

MOBILENET_V2 = [
    "ds_r1_k3_s1_c16",  # stage 1, 112x112 in
    "ir_r2_k3_s2_e6_c24",  # stage 2, 112x112 in
    "ir_r3_k3_s2_e6_c32",  # stage 3, 56x56 in
    "ir_r4_k3_s2_e6_c64",  # stage 4, 28x28 in
    "ir_r3_k3_s1_e6_c96",  # stage 5, 14x14 in
    "ir_r3_k3_s2_e6_c160",  # stage 6, 14x14 in
    "ir_r1_k3_s1_e6_c320",  # stage 7, 7x7 in
]

MNASNET_A1 = [
    "ds_r1_k3_s1_e1_c16_noskip",
    "ir_r2_k3_s2_e6_c24",
    "ir_r3_k5_s2_e3_c40_se0.25",
    "ir_r4_k3_s2_e6_c80",
    "ir_r2_k3_s1_e6_c112_se0.25",
    "ir_r3_k5_s2_e6_c160_se0.25",
    "ir_r1_k3_s1_e6_c320",
]

MNASNET_B1 = [
    "ds_r1_k3_s1_c16_noskip",
    "ir_r3_k3_s2_e3_c24",
    "ir_r3_k5_s2_e3_c40",
    "ir_r3_k5_s2_e6_c80",
    "ir_r2_k3_s1_e6_c96",
    "ir_r4_k5_s2_e6_c192",
    "ir_r1_k3_s1_e6_c320_noskip",
]

MOBILENET_V3_LARGE = [  # act hswish unless nre; SE on the expanded width, hard-sigmoid gate
    "ds_r1_k3_s1_e1_c16_nre",
    "ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre",
    "ir_r3_k5_s2_e3_c40_se0.25_nre",
    "ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80",
    "ir_r2_k3_s1_e6_c112_se0.25",
    "ir_r3_k5_s2_e6_c160_se0.25",
    "cn_r1_k1_s1_c960",
]

MOBILENET_V3_SMALL = [
    "ds_r1_k3_s2_e1_c16_se0.25_nre",
    "ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre",
    "ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25",
    "ir_r2_k5_s1_e3_c48_se0.25",
    "ir_r3_k5_s2_e6_c96_se0.25",
    "cn_r1_k1_s1_c576",
]

EFFICIENTNET_B0 = [  # swish; SE from the block input width
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r2_k3_s2_e6_c24_se0.25",
    "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25",
    "ir_r3_k5_s1_e6_c112_se0.25",
    "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
]

SPNASNET_100 = [
    "ds_r1_k3_s1_c16_noskip",
    "ir_r3_k3_s2_e3_c24",
    "ir_r1_k5_s2_e6_c40", "ir_r3_k3_s1_e3_c40",
    "ir_r1_k5_s2_e6_c80", "ir_r3_k3_s1_e3_c80",
    "ir_r1_k5_s1_e6_c96", "ir_r3_k5_s1_e3_c96",
    "ir_r4_k5_s2_e6_c192",
    "ir_r1_k3_s1_e6_c320_noskip",
]

FBNET_C = [
    "ir_r1_k3_s1_e1_c16",
    "ir_r1_k3_s2_e6_c24", "ir_r2_k3_s1_e1_c24",
    "ir_r1_k5_s2_e6_c32", "ir_r1_k5_s1_e3_c32", "ir_r1_k5_s1_e6_c32", "ir_r1_k3_s1_e6_c32",
    "ir_r1_k5_s2_e6_c64", "ir_r1_k5_s1_e3_c64", "ir_r2_k5_s1_e6_c64",
    "ir_r3_k5_s1_e6_c112", "ir_r1_k5_s1_e3_c112",
    "ir_r4_k5_s2_e6_c184",
    "ir_r1_k3_s1_e6_c352",
]

PRESETS: dict[str, Architecture] = {
    "mobilenet-v2": Architecture.from_timm(MOBILENET_V2, act="relu6"),
    "mnasnet-a1": Architecture.from_timm(MNASNET_A1),
    "mnasnet-b1": Architecture.from_timm(MNASNET_B1),
    "mobilenet-v3-large": Architecture.from_timm(MOBILENET_V3_LARGE, stem=16, head=1280, act="hswish", se_style="expanded",
                                                 head_style="efficient"),
    "mobilenet-v3-small": Architecture.from_timm(MOBILENET_V3_SMALL, stem=16, head=1024, act="hswish", se_style="expanded",
                                                 head_style="efficient"),
    "efficientnet-b0": Architecture.from_timm(EFFICIENTNET_B0, act="swish"),
    "spnasnet-100": Architecture.from_timm(SPNASNET_100),
    "fbnet-c": Architecture.from_timm(FBNET_C, stem=16, head=1984),
}


def load_architecture(ref: str | Path) -> Architecture:
    """Resolve a preset name, a JSON file path, or comma-separated timm block strings."""
    text = str(ref).strip()
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise ArchitectureError(f"architecture file not found: {path}")
        return Architecture.from_json(path.read_text())
    if text.startswith("{"):
        return Architecture.from_json(text)
    if re.match(r"^(cn|ds|ir)_", text):
        return Architecture.from_timm(text)
    raise ArchitectureError(
        f"cannot read architecture {text!r}: not a preset ({', '.join(PRESETS)}), "
        "not a JSON file, and not timm block strings like 'ds_r1_k3_s1_c16,ir_r2_k3_s2_e6_c24'"
    )
