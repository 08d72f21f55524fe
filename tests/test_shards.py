"""Image folders prepared into memory-mapped shards: end to end with a corrupt image and an
empty class, resume after an interruption, content equal to a direct decode, training on
them, and one clear error for a missing or damaged shard."""

import json

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from mnas.data import load_dataset
from mnas.errors import DataError
from mnas.shards import ShardSource, decode_image, prepare_shards

CLASSES = ("cat", "dog", "fox")  # fox has validation images only: an empty training class


def make_folder(root, per_class=7, val_per_class=2):
    """A small ImageNet-style folder: JPEG and PNG files of different sizes, one corrupt file."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            if split == "train" and name == "fox":
                continue
            for i in range(n):
                h, w = int(rng.integers(12, 40)), int(rng.integers(12, 40))
                base = np.full((h, w, 3), 60 * c, np.uint8) + rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
                Image.fromarray(base).save(folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    (root / "train" / "cat" / "zzz-corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


def test_prepare_end_to_end_equals_a_direct_decode_and_trains(folder, tmp_path):
    out = tmp_path / "shards"
    r = run_cli("data", "prepare", f"imagefolder:{folder}", "--resolution", "16", "--out", str(out), "--shard-size", "4",
                "--workers", "2", "--no-progress")
    assert "14 train + 6 val images" in r.stdout and "1 skipped" in r.stdout and "class fox has no training images" in r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert train["per_class"] == [7, 7, 0] and manifest["empty_classes"] == ["fox"]
    assert [s["file"] for s in train["skipped"]] == ["train/cat/zzz-corrupt.jpg"]
    assert len(train["shards"]) == 4  # 15 files in shards of 4, the corrupt one left out of the second

    ds = load_dataset(f"shards:{out}")
    assert ds.num_classes == 3 and ds.classes == list(CLASSES) and len(ds.train) == 14 and len(ds.test) == 6
    rows = [line for s in train["shards"] for line in (out / s["files"]).read_text().splitlines()]
    direct = np.stack([decode_image(folder / f, 16) for f in rows])
    x, y = next(ds.train.batches(100, shuffle=False, seed=0, resolution=16))
    assert np.array_equal(x.numpy(), direct) and y.tolist() == [0] * 7 + [1] * 7

    train_split, val_split = ds.stage1(seed=0, val_fraction=0.3)  # views over the same memory maps: no copy
    assert isinstance(train_split, ShardSource) and train_split.parts[0] is ds.train.parts[0]
    assert sorted(np.concatenate([train_split.rows, val_split.rows]).tolist()) == list(range(14))

    info = json.loads(run_cli("data", "info", f"shards:{out}", "--verify", "--json").stdout)
    assert info["train"]["per_class"] == [7, 7, 0] and info["image_size"] == [16, 16] and info["memory_bytes"] == 20 * 16 * 16 * 3
    assert info["damaged_shards"] == [] and any("without training images: fox" in w for w in info["warnings"])

    from mnas.space import load_space
    from mnas.train import TrainConfig, train_model

    cfg = TrainConfig(epochs=1, batch_size=8, resolution=16, width_mult=0.35, bn_calibration_images=16, augmentation="resized_crop")
    metrics = train_model(load_space("tiny").base, train_split, val_split, ds.num_classes, cfg)
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["images_per_s"] > 0


def test_an_interrupted_prepare_continues_to_the_same_shards(folder, tmp_path):
    whole = prepare_shards(folder, 12, tmp_path / "whole", shard_size=3)
    calls = []

    def stop_after_two_shards(done, total):
        calls.append(done)
        if len(calls) == 3:  # the start, then two shards written
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        prepare_shards(folder, 12, out, shard_size=3, progress=stop_after_two_shards)
    assert not (out / "manifest.json").exists() and sorted(p.name for p in (out / "train").glob("done-*")) == ["done-00000.json", "done-00001.json"]
    (out / "train" / "x-00002.npy.tmp").write_bytes(b"torn write")  # as a kill mid-write leaves it
    with pytest.raises(DataError, match="run the same mnas data prepare again"):
        load_dataset(f"shards:{out}")
    seen = []
    resumed = prepare_shards(folder, 12, out, shard_size=3, progress=lambda done, total: seen.append(done))
    assert seen[0] == 6  # two shards of 3 files were kept
    assert [s["sha256"] for s in resumed["splits"]["train"]["shards"]] == [s["sha256"] for s in whole["splits"]["train"]["shards"]]
    with pytest.raises(DataError, match="prepared with other settings"):
        prepare_shards(folder, 16, out, shard_size=3)


def test_a_missing_or_damaged_shard_is_one_clear_error(folder, tmp_path):
    out = tmp_path / "shards"
    prepare_shards(folder, 8, out, shard_size=5)
    (out / "train" / "y-00001.npy").unlink()
    r = run_cli("data", "info", f"shards:{out}", check=False)
    assert r.returncode == 2 and "missing shard file" in r.stderr and "y-00001.npy" in r.stderr and "Traceback" not in r.stderr
    prepare_shards(folder, 8, out2 := tmp_path / "again", shard_size=5)
    x = out2 / "train" / "x-00000.npy"
    x.write_bytes(x.read_bytes()[:-100])
    with pytest.raises(DataError, match="damaged shard file .*x-00000.npy"):
        load_dataset(f"shards:{out2}")
    r = run_cli("data", "prepare", "digits", "--resolution", "8", "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "reads an image folder" in r.stderr
