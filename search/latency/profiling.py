"""``mnas latency profile``: an architecture's measured time per part (stem, blocks, head),
from the runtime's per-operator profile, next to a predictor's per-block figures.

The exporter names each node after its module (``/blocks/blocks.S/blocks.S.L/...``, where S
counts the *non-empty* blocks), so nodes map back to the architecture's blocks; nodes the
runtime adds itself (layout reorders) and the time between nodes are listed as such.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mnas.arch import Architecture

STAGE = re.compile(r"^/blocks/blocks\.(\d+)/")
LAYER = re.compile(r"^/blocks/blocks\.(\d+)/blocks\.\d+\.(\d+)/")
STEM = ("/conv_stem/", "/bn1/", "/act1/")
HEAD = ("/conv_head/", "/bn2/", "/act2/", "/classifier/", "/ReduceMean", "/Gemm")


def stage_blocks(arch: Architecture) -> list[int]:
    """The block index of each exported stage S: the exporter numbers only the non-empty blocks."""
    return [i for i, block in enumerate(arch.blocks) if block.layers]


def part_names(arch: Architecture) -> list[str]:
    return ["stem"] + [f"block {i + 1}" for i in range(len(arch.blocks))] + ["head"]


def part_of(node: str, stage_to_block: list[int]) -> str:
    match = STAGE.match(node)
    if match:
        return f"block {stage_to_block[int(match.group(1))] + 1}"
    if node.startswith(STEM):
        return "stem"
    if node.startswith(HEAD):
        return "head"
    return "runtime (layout reorders)"


def layer_times(arch: Architecture, nodes: list[dict], resolution: int, num_classes: int) -> list[float]:
    """Each layer's time inside the model (ms, in ``mnas.layers.arch_layers`` order) from a
    profile's nodes, which come in execution order: a layer's own nodes, plus the nodes the
    runtime adds itself (layout reorders) after them, which it pays for where it runs."""
    from mnas.layers import arch_layers

    layers = arch_layers(arch, resolution, num_classes)
    stages = stage_blocks(arch)
    index, seen = {}, {}
    for k, (block, layer) in enumerate(layers):
        if layer.kind == "layer":
            index[(block, seen.get(block, 0))] = k
            seen[block] = seen.get(block, 0) + 1
    times, current = [0.0] * len(layers), 0
    for node in nodes:
        name, match = node["node"], LAYER.match(node["node"])
        if match:
            current = index[(stages[int(match.group(1))], int(match.group(2)))]
        elif name.startswith(STEM):
            current = 0
        elif name.startswith(HEAD):
            current = len(layers) - 1
        times[current] += node["ms"]
    return times


def profile_architecture(arch: Architecture, profile, resolution: int, num_classes: int, runs: int = 30, predictor=None) -> dict:
    """Measured ms per part (and per node), with the predictor's per-block layer sums if given."""
    from devices.profiling import profile_model
    from mnas.export import export_architecture

    with tempfile.TemporaryDirectory(prefix="mnas-profile-") as tmp:
        path = export_architecture(arch, Path(tmp) / "model.onnx", "onnx", resolution, num_classes)
        result = profile_model(profile, path, runs=runs)
    stage_to_block = stage_blocks(arch)
    names = part_names(arch)
    measured = {name: 0.0 for name in names}
    for node in result["nodes"]:
        part = part_of(node["node"], stage_to_block)
        node["part"] = part
        measured[part] = measured.get(part, 0.0) + node["ms"]
    between = result["run_ms"] - sum(n["ms"] for n in result["nodes"])
    measured["runtime (between nodes)"] = max(0.0, between)
    predicted = predictor.predict(arch, resolution).blocks if predictor else None
    parts = []
    for i, (name, ms) in enumerate(measured.items()):
        row = {"part": name, "ms": ms, "share": ms / result["run_ms"] if result["run_ms"] else 0.0}
        if predicted is not None:
            row["predicted_ms"] = predicted[i] if i < len(predicted) else None
        parts.append(row)
    out = {"run_ms": result["run_ms"], "runs": result["runs"], "parts": parts, "nodes": sorted(result["nodes"], key=lambda n: -n["ms"]),
           "device": {"name": profile.name, "hash": profile.settings_hash()}, "runtime": result["runtime"], "resolution": resolution}
    if predictor:
        out["predicted_latency_ms"] = predictor.predict(arch, resolution).latency_ms
    return out
