"""The ``paper`` profile end to end on the CPU: ``torchrun -m zfkit train --profile paper`` on a tiny ImageFolder.

Two processes (gloo) train the Fig. 3 ZFNet at 224x224 for one epoch on 8 random-pixel images in
3 classes (JPEG and PNG, smaller than 256 so the paper's resize, centre crop and 224 crops all
act), validate on 4, score them with 10-crop evaluation, write checkpoints, then resume to epoch 2.
One SGD step per epoch (the paper's batch of 128 holds all 8 images): the test proves the path,
not the learning, and takes about 30 s on 2 cores; the generous timeout only guards against a hang
(one CI run on a busy machine took over 300 s for the resumed half).
"""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from test_ddp import torchrun
from zfkit.__main__ import main
from zfkit.train import load_checkpoint

CLASSES = ("n01440764", "n01443537", "n01484850")


def _image_folder(root, counts: dict[str, int]) -> None:
    """``root/<split>/<class>/<i>.jpg|png``, torchvision's ImageFolder layout, classes taken in turn."""
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        for i in range(n):
            folder = root / split / CLASSES[i % len(CLASSES)]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")


@pytest.fixture
def imagenet(tmp_path):
    _image_folder(tmp_path / "imagenet", {"train": 8, "val": 4})
    return tmp_path / "imagenet"


@pytest.fixture
def run_dir(tmp_path):
    """The run folder, deleted afterwards: each epoch writes two 500 MB checkpoints of ZFNet."""
    yield tmp_path / "run"
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


def _train(data, out, epochs: int, *extra: str) -> None:
    torchrun("-m", "zfkit", "train", "--profile", "paper", "--data", str(data), "--epochs", str(epochs),
             "--device", "cpu", "--out", str(out), "--quiet", *extra, timeout=900)


def _rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_paper_profile_trains_zfnet_under_torchrun_on_the_cpu_and_resumes(imagenet, run_dir):
    _train(imagenet, run_dir, epochs=1)
    assert sorted(p.name for p in run_dir.iterdir()) == ["epoch_001", "last", "metrics.csv", "run.json"]
    first = _rows(run_dir / "metrics.csv")
    assert [r["epoch"] for r in first] == ["1"]
    weights = run_dir / "epoch_001" / "model.safetensors"
    written = weights.stat().st_mtime_ns

    model = load_checkpoint(run_dir / "last").build()
    conv1 = model.features.conv1
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.stride) == (3, 96, (7, 7), (2, 2))
    assert model.spec.input_size == 224 and model.spec.num_classes == 1000

    _train(imagenet, run_dir, 2, "--resume")
    rows = _rows(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0] == first[0]  # epoch 1 came from the checkpoint (its timing too), not from training again
    assert weights.stat().st_mtime_ns == written
    assert load_checkpoint(run_dir / "last").epoch == 2 and (run_dir / "epoch_002").is_dir()

    record = json.loads((run_dir / "run.json").read_text())
    assert record["profile"] == "paper" and record["recipe"]["device"] == "cpu"
    assert [r["epoch"] for r in record["history"]] == [1, 2]
    # the test split's images are 256x256, which ZFNet's fc6 takes only as 224 crops: 10-crop evaluation ran
    assert record["sizes"] == {"train": 8, "val": 4, "test": 4} and 0 <= record["test"]["accuracy"] <= 1
    for row in rows:
        assert all(0 <= float(row[k]) <= 1 for k in ("train_top1_err", "val_top1_err", "val_top5_err"))
        assert float(row["images_per_s"]) > 0


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_cli_refuses_a_bad_device_before_reading_data(device, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--profile", "paper", "--out", "unused", "--device", device])
    assert exit_.value.code == 2 and f"Recipe.device {device!r} is not a device name" in capsys.readouterr().err


def test_cli_refuses_cuda_where_there_is_none(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit):
        main(["train", "--profile", "paper", "--out", "unused", "--device", "cuda"])
    assert "CUDA is not available here; use 'auto'" in capsys.readouterr().err
