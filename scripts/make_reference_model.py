"""Write devices/references/mnasnet-a1-R.onnx: the drift references of the steady profiles.

    python scripts/make_reference_model.py --resolution 64 --resolution 224

A reference near the search's resolution follows a candidate's drift most closely (its
working set is alike): at 224 px, 2-10 ms models re-measured with the 224 px reference spread
1-2% against 2-5% with the 64 px one.

MnasNet-A1 at R px, exported by mnas, with every weight replaced by a ConstantOfShape
of zeros: onnxruntime folds those back into initializers when it loads the model, so the
graph it runs (convolutions, depthwise, SE, the classifier) is the real one, while the file
is a few KB instead of 15 MB. On CPU float kernels speed does not depend on the values, and
zeros cannot decay into slow denormals.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnas.export import export_architecture  # noqa: E402
from mnas.presets import PRESETS  # noqa: E402

OUT_DIR = ROOT / "devices" / "references"


def zero_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float initializer becomes ConstantOfShape(its shape) = 0."""
    graph = model.graph
    nodes = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        shape_name = f"{init.name}__shape"
        dims = numpy_helper.from_array(np.array(list(init.dims), dtype=np.int64), shape_name)
        graph.initializer.append(dims)
        zero = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
        nodes.append(helper.make_node("ConstantOfShape", [shape_name], [init.name], value=zero))
        graph.initializer.remove(init)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, action="append", help="repeat for several (default: 64 and 224)")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for resolution in parser.parse_args().resolution or [64, 224]:
        out = OUT_DIR / f"mnasnet-a1-{resolution}.onnx"
        with tempfile.TemporaryDirectory() as tmp:
            path = export_architecture(PRESETS["mnasnet-a1"], Path(tmp) / "a1.onnx", "onnx", resolution, 1000)
            model = zero_weights(onnx.load(str(path)))
        onnx.save(model, str(out))
        print(f"wrote {out} ({out.stat().st_size / 1e3:.1f} KB)")


if __name__ == "__main__":
    main()
