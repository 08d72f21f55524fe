"""Accuracy after post-training int8 quantization: presets trained on CIFAR-10, then tested
in float (PyTorch) and as int8 ONNX (onnxruntime QDQ) and int8 TFLite (LiteRT).

    python benchmarks/int8_accuracy.py [--data ../shared/data/cifar10] [--archs mnasnet-a1,mobilenet-v2,mobilenet-v3-small]
                                       [--limit 10000] [--epochs 4] [--stride-cuts 1] [--json FILE]

Each preset is trained with the stage-2 recipe on a class-stratified subset of the training
set (``--limit``; the CPU cannot afford 50,000 x many epochs), quantized with 256 calibration
images of that training subset (``mnas.quantize``, as ``mnas stage2 --quantize`` does), and
all three are tested on the full 10,000-image test set. Prints top-1 per format, the drop in
points and the share of test images where the int8 model picks the float model's class.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--archs", default="mnasnet-a1,mobilenet-v2,mobilenet-v3-small")
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--stride-cuts", type=int, default=1)
    ap.add_argument("--formats", default="onnx,tflite")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from mnas.data import load_dataset, stratified_split
    from mnas.presets import load_architecture
    from mnas.quantize import file_accuracy, int8_tensors, quantize_model, source_inputs
    from mnas.train import TrainConfig, load_checkpoint, train_model

    ds = load_dataset(f"npz:{args.data}")
    train, test = ds.stage2()
    if args.limit < len(train):
        keep, _ = stratified_split(train.labels, 1 - args.limit / len(train), seed=0)
        train = train.subset(keep)
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, resolution=args.resolution, stride_cuts=args.stride_cuts, seed=0)
    rows = []
    print(machine_line(), flush=True)
    for name in args.archs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train_model(load_architecture(name), train, test, ds.num_classes, cfg, out_dir=tmp)
            train_s = time.perf_counter() - t0
            model = load_checkpoint(Path(tmp) / "checkpoint.pt")
            calibration = source_inputs(train, args.resolution, 256)
            for fmt in args.formats.split(","):
                t0 = time.perf_counter()
                path = quantize_model(model, Path(tmp) / f"q.{fmt}", fmt, args.resolution, "int8", calibration)
                quantize_s = time.perf_counter() - t0
                result = file_accuracy(path, model, test, args.resolution)
                row = {"model": name, "format": fmt, "train_s": train_s, "quantize_s": quantize_s, "int8_tensors": int8_tensors(path), **result}
                rows.append(row)
                print(f"{name} {fmt}: float {row['float_top1']:.4f}, int8 {row['top1']:.4f} ({100 * (row['top1'] - row['float_top1']):+.2f} pt), "
                      f"agreement {row['agreement']:.1%}", flush=True)
    print(f"\nCIFAR-10, {len(train):,} training images, {args.epochs} epochs at {args.resolution} px (stride cuts {args.stride_cuts}); "
          f"test on {len(test):,} images; int8 static, per-channel, 256 calibration images")
    print("| model | format | float top-1 | int8 top-1 | drop (pt) | agreement | int8 tensors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['format']} | {r['float_top1']:.4f} | {r['top1']:.4f} | {100 * (r['top1'] - r['float_top1']):+.2f} | "
              f"{r['agreement']:.1%} | {r['int8_tensors']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "settings": vars(args) | {"json": None}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
