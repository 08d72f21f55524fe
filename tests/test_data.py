import numpy as np
import pytest
import torch
from PIL import Image

from mnas.data import load_dataset, prepare_batch, random_crop_flip, stratified_split
from mnas.errors import DataError


def test_digits():
    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.test), ds.num_classes) == (1437, 360, 10)
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (8, 8, 3) and ds.train.x.max() == 255
    tr, va = ds.stage1(seed=0)
    assert len(tr) + len(va) == 1437 and len(va) == 144
    assert np.bincount(va.y).min() >= 14  # every class in the held-out 10%
    tr2, va2 = ds.stage1(seed=0)
    assert np.array_equal(va.y, va2.y) and np.array_equal(va.x, va2.x)
    _, va3 = ds.stage1(seed=1)
    assert not np.array_equal(va.x, va3.x)


def test_stratified_split_keeps_class_shares():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 1000
    assert np.bincount(labels[val]).tolist() == [10, 20, 30, 40]


def write_npz(path, n=30, shape=(16, 16, 3), classes=3, **override):
    rng = np.random.default_rng(0)
    data = {"x": rng.integers(0, 255, (n, *shape), dtype=np.uint8), "y": np.arange(n) % classes}
    data.update(override)
    np.savez(path, **data)


def test_npz_folder(tmp_path):
    write_npz(tmp_path / "train_0.npz")
    write_npz(tmp_path / "train_1.npz", shape=(16, 16, 1))
    write_npz(tmp_path / "test.npz", n=12)
    ds = load_dataset(f"npz:{tmp_path}")
    assert len(ds.train) == 60 and len(ds.test) == 12 and ds.num_classes == 3
    assert ds.train.x.shape == (60, 16, 16, 3)  # grey images become RGB


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "no train"),
        (lambda d: write_npz(d / "train.npz"), "no test.npz"),
        (lambda d: (write_npz(d / "train.npz", x=np.zeros((30, 4, 4, 3), np.float32)), write_npz(d / "test.npz")), "'x' must be uint8"),
        (lambda d: (write_npz(d / "train.npz", y=np.zeros(5)), write_npz(d / "test.npz")), "'y' must be integers"),
        (lambda d: ((d / "train.npz").write_bytes(b"not a zip"), write_npz(d / "test.npz")), "not a readable .npz"),
        (lambda d: (np.savez(d / "train.npz", images=np.zeros(3)), write_npz(d / "test.npz")), "missing array"),
    ],
)
def test_npz_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{tmp_path}")


def test_missing_data_and_bad_specs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="unknown data spec"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ["cat", "dog"] and len(ds.train) == 12 and len(ds.test) == 4
    ds.train.workers = 0
    x, y = next(ds.train.batches(5, shuffle=False, seed=0, resolution=16))
    assert x.shape == (5, 16, 16, 3) and x.dtype == torch.uint8 and y.tolist() == [0, 0, 0, 0, 0]
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(DataError, match="not in train"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_prepare_batch_resizes_normalises_and_augments():
    x = torch.tensor([124, 116, 104], dtype=torch.uint8).expand(8, 8, 8, 3).contiguous()
    out = prepare_batch(x, 32, train=False)
    assert out.shape == (8, 3, 32, 32) and out.abs().max() < 0.02  # the ImageNet mean colour maps to ~0
    gen = torch.Generator().manual_seed(0)
    aug = prepare_batch(x, 32, train=True, generator=gen, channels_last=True)
    assert aug.is_contiguous(memory_format=torch.channels_last)
    # zero padding shows up at the borders of shifted images
    assert (aug == 0).any()


def test_random_crop_flip_is_a_crop_of_the_padded_image():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(1)
    out = random_crop_flip(x, 1, gen)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, a : a + 4, b : b + 4] for a in range(3) for b in range(3)]
        candidates = windows + [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in candidates)


def test_real_cifar10_npz(cifar10_dir):
    ds = load_dataset(f"npz:{cifar10_dir}")
    assert (len(ds.train), len(ds.test), ds.num_classes) == (50000, 10000, 10)
    assert ds.classes[0] == "airplane"
    tr, va = ds.stage1()
    assert (len(tr), len(va)) == (45000, 5000)
    assert np.bincount(va.y).tolist() == [500] * 10


def test_random_resized_crop_flip_is_seeded_and_resamples_inside_the_image():
    import torch

    from mnas.data import random_resized_crop_flip

    x = torch.arange(4 * 3 * 16 * 16, dtype=torch.float32).reshape(4, 3, 16, 16)
    whole = random_resized_crop_flip(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    for img, out in zip(x, whole):  # the whole image: each output is the image or its mirror
        assert torch.allclose(out, img, atol=1e-3) or torch.allclose(out, img.flip(-1), atol=1e-3)
    a = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    b = random_resized_crop_flip(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)
    assert a.min() >= x.min() and a.max() <= x.max()  # bilinear inside the image: no values from outside
