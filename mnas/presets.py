"""Reference architectures, written as the timm block strings of their reference code.

Ref impl: tensorflow/tpu models/official/mnasnet/mnasnet_models.py; timm efficientnet.py.
Paper: https://arxiv.org/abs/1807.11626 (MnasNet), https://arxiv.org/abs/1801.04381 (MobileNetV2).
"""

from mnas.arch import Architecture

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

PRESETS: dict[str, Architecture] = {
    "mobilenet-v2": Architecture.from_timm(MOBILENET_V2, act="relu6"),
    "mnasnet-a1": Architecture.from_timm(MNASNET_A1),
    "mnasnet-b1": Architecture.from_timm(MNASNET_B1),
}
