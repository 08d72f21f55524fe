"""Write devices/references/mnasnet-a1-64.onnx: the drift reference of the steady profiles.

    python scripts/make_reference_model.py

MnasNet-A1 at 64 px, exported by mnas, with every weight replaced by a ConstantOfShape
of zeros: onnxruntime folds those back into initializers when it loads the model, so the
graph it runs (convolutions, depthwise, SE, the classifier) is the real one, while the file
is a few KB instead of 15 MB. On CPU float kernels speed does not depend on the values, and
zeros cannot decay into slow denormals.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402

OUT = ROOT / "devices" / "references" / "mnasnet-a1-64.onnx"


def zero_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float initializer becomes ConstantOfShape(its shape) = 0."""
    graph = model.graph
    nodes = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        shape_name = f"{init.name}__shape"
        dims = numpy_helper.from_array(__import__("numpy").array(list(init.dims), dtype="int64"), shape_name)
        graph.initializer.append(dims)
        zero = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
        nodes.append(helper.make_node("ConstantOfShape", [shape_name], [init.name], value=zero))
        graph.initializer.remove(init)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_architecture(PRESETS["mnasnet-a1"], Path(tmp) / "a1.onnx", "onnx", 64, 1000)
        model = zero_weights(onnx.load(str(path)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.1f} KB)")


if __name__ == "__main__":
    main()
