"""Data lookup (DESIGN §6), MD5 verification, preprocessing, subsets, profiles."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zfkit import data, profiles

FILES = list(data.FASHION_FILES)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path):
    """Point the env var and the Debian folder at empty places unless a test sets them."""
    monkeypatch.delenv("ZFKIT_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "no-debian")
    data._read_idx.cache_clear()
    data._train_mean.cache_clear()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A tiny Fashion-MNIST in the real file format, with the checksums patched to match it."""
    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(20) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(10) % 10,
    }
    sums = {}
    for stem, arr in arrays.items():
        _write_idx(folder / f"{stem}.gz", arr)
        with gzip.open(folder / f"{stem}.gz", "rb") as f:
            import hashlib
            sums[stem] = hashlib.md5(f.read()).hexdigest()
    monkeypatch.setattr(data, "FASHION_FILES", sums)
    return folder, arrays


def test_missing_data_names_the_three_ways():
    with pytest.raises(data.DataNotFoundError) as err:
        data.fashion_mnist("train")
    msg = str(err.value)
    assert "root=" in msg and "ZFKIT_DATA" in msg and "dataset-fashion-mnist" in msg


def test_lookup_order_root_then_env_then_debian(fake_fashion, tmp_path, monkeypatch):
    folder, _ = fake_fashion
    monkeypatch.setattr(data, "DEBIAN_FASHION", folder)
    assert data.find_fashion_mnist() == folder
    env = tmp_path / "env"
    shutil.copytree(folder, env / "fashion-mnist")
    monkeypatch.setenv("ZFKIT_DATA", str(env))
    assert data.find_fashion_mnist() == env / "fashion-mnist"
    explicit = tmp_path / "explicit"
    shutil.copytree(folder, explicit)
    assert data.find_fashion_mnist(explicit) == explicit


def test_partial_folder_names_the_missing_files(fake_fashion):
    folder, _ = fake_fashion
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.fashion_mnist("test", root=folder)


def test_corrupted_file_fails_md5_naming_it(fake_fashion):
    folder, arrays = fake_fashion
    broken = arrays["train-images-idx3-ubyte"].copy()
    broken[0, 0, 0] ^= 1
    _write_idx(folder / "train-images-idx3-ubyte.gz", broken)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz failed its MD5"):
        data.fashion_mnist("train", root=folder)


def test_truncated_gzip_is_reported(fake_fashion):
    folder, _ = fake_fashion
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="t10k-images"):
        data.fashion_mnist("test", root=folder)


def test_images_are_padded_and_mean_subtracted(fake_fashion):
    folder, arrays = fake_fashion
    train = data.fashion_mnist("train", root=folder)
    test = data.fashion_mnist("test", root=folder, pixel_range=255.0)
    assert train.images.shape == (20, 1, 32, 32) and test.images.shape == (10, 1, 32, 32)
    assert torch.allclose(train.images.mean(0), torch.zeros(1, 32, 32), atol=1e-5)  # per-pixel mean removed
    assert torch.equal(train.targets, torch.arange(20) % 10)
    restored = test.images[0, 0] + test.mean[0]  # paper's range: raw 0..255 pixel values come back
    assert torch.allclose(restored[2:30, 2:30], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][0]).float(), atol=1e-3)
    assert torch.allclose(restored[:2], torch.zeros(2, 32), atol=1e-4)  # zero padding border
    assert torch.allclose(test.display()[0, 0, 2:30, 2:30] * 255, restored[2:30, 2:30], atol=1e-2)


@pytest.mark.parametrize("kwargs, words", [({"split": "val"}, "split"), ({"split": "train", "size": 20}, "size")])
def test_bad_arguments(fake_fashion, kwargs, words):
    with pytest.raises(ValueError, match=words):
        data.fashion_mnist(root=fake_fashion[0], **kwargs)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_verifies(monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION", Path("/usr/share/datasets/fashion-mnist"))
    test = data.fashion_mnist("test")
    assert test.images.shape == (10000, 1, 32, 32)
    assert torch.bincount(test.targets).tolist() == [1000] * 10  # Fashion-MNIST's balanced test set


def test_digits_resized_and_labelled():
    d = data.digits(32)
    assert d.images.shape == (1797, 1, 32, 32) and set(d.targets.tolist()) == set(range(10))
    assert torch.allclose(d.images.mean(0), torch.zeros(1, 32, 32), atol=1e-5)


def test_subset_is_deterministic_and_stratified():
    ds = data.TensorImages(torch.randn(100, 1, 4, 4), torch.arange(100) % 5, tuple("abcde"))
    a, b = data.subset(ds, 23, seed=3), data.subset(ds, 23, seed=3)
    assert torch.equal(a.images, b.images) and len(a) == 23  # exact: subsets copy pixels, no arithmetic
    assert sorted(torch.bincount(a.targets).tolist()) == [4, 4, 5, 5, 5]
    assert not torch.equal(data.subset(ds, 23, seed=4).images, a.images)
    with pytest.raises(ValueError, match="dataset of 100"):
        data.subset(ds, 101)


def test_ten_crop_corners_centre_and_flips():
    img = torch.arange(36.0).reshape(1, 1, 6, 6)
    crops = data.ten_crop(img, 4)
    assert crops.shape == (1, 10, 1, 4, 4)  # crops and flips copy pixels: exact comparisons
    assert torch.equal(crops[0, 0, 0], img[0, 0, :4, :4])  # top-left
    assert torch.equal(crops[0, 4, 0], img[0, 0, 1:5, 1:5])  # centre
    flipped = img.flip(-1)
    assert any(torch.equal(crops[0, i, 0], flipped[0, 0, :4, :4]) for i in range(5, 10))
    with pytest.raises(ValueError, match="larger"):
        data.ten_crop(img, 8)


def test_imagenet_folder_preprocessing(tmp_path):
    for cls in ("cat", "dog"):
        for split in ("train", "val"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(tmp_path / split / cls / "a.png")
    train = data.imagenet(tmp_path, "train")
    x, y = train[0]
    assert x.shape == (3, 224, 224) and y == 0 and train.classes == ["cat", "dog"]
    assert data.imagenet(tmp_path, "val256")[1][0].shape == (3, 256, 256)
    with pytest.raises(data.DataNotFoundError, match="ImageFolder"):
        data.imagenet(tmp_path / "nowhere", "train")


def test_profiles():
    assert profiles.get("book").dataset == "fashion-mnist"
    assert profiles.get("paper").model == "zfnet" and profiles.get("paper").input_size == 224
    assert profiles.get("ci").train_subset < 10_000
    with pytest.raises(ValueError, match="ci, book, paper"):
        profiles.get("fast")


def test_keep_classes_relabels_in_the_order_given():
    images = torch.arange(6.0).view(6, 1, 1, 1)
    dataset = data.TensorImages(images, torch.tensor([0, 1, 2, 0, 2, 1]), ("a", "b", "c"))
    kept = data.keep_classes(dataset, [2, 0])
    assert kept.classes == ("c", "a")
    assert kept.images.flatten().tolist() == [0.0, 2.0, 3.0, 4.0]  # exact: selected, not computed
    assert kept.targets.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("classes", [[], [0, 0], [3], [-1]])
def test_keep_classes_rejects_bad_labels(classes):
    dataset = data.TensorImages(torch.zeros(3, 1, 1, 1), torch.tensor([0, 1, 2]), ("a", "b", "c"))
    with pytest.raises(ValueError, match="distinct labels in 0..2"):
        data.keep_classes(dataset, classes)
