"""The model zoo and the `train` command: train once deterministically, then load from the cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zfkit import profiles, train, zoo
from zfkit.__main__ import main


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("zfkit-cache")


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("ZFKIT_CACHE", str(cache))


@pytest.fixture(scope="module")
def trained(cache):
    """zfnet-mini for the ci profile, trained once for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZFKIT_CACHE", str(cache))
        return zoo.load("zfnet-mini", "ci", progress=False)


def _same(a, b):
    """Bitwise-equal weights. Guaranteed where used: a cache load is a copy of the stored bytes, and a
    retraining repeats the first one in the same process, thread count (one_thread) and batch shapes."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_first_load_trains_and_stores_the_run(trained, cache):
    folder = cache / "ci" / "zfnet-mini"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_001", "epoch_002", "last", "metrics.csv", "run.json"]
    assert not trained.training
    record = zoo.metrics("zfnet-mini", "ci")
    assert record["sizes"] == {"train": 2000, "val": 500, "test": 500}
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert record["test"]["accuracy"] == pytest.approx(1 - record["test"]["top1_err"])
    assert record["test"]["accuracy"] > 0.2  # learning happened (chance is 0.1; ci trains 2 short epochs)
    assert record["pixel_range"] == 1.0 and record["recipe"]["feature_scale_clipping"]
    assert set(zoo.checkpoints("zfnet-mini", "ci")) == {1, 2}


def test_second_load_comes_from_the_cache(trained, monkeypatch):
    monkeypatch.setattr(zoo, "fit", lambda *a, **k: pytest.fail("retrained although cached"))
    assert _same(zoo.load("zfnet-mini", "ci"), trained)


def test_record_from_before_a_recipe_field_existed_is_still_current(trained, cache, monkeypatch):
    """A field added to Recipe later, at its behaviour-preserving default, must not retrain the zoo."""
    record_file = cache / "ci" / "zfnet-mini" / "run.json"
    original = record_file.read_text()
    record = json.loads(original)
    assert record["recipe"].pop("final_anneal_epochs") == 0
    record_file.write_text(json.dumps(record))
    monkeypatch.setattr(zoo, "fit", lambda *a, **k: pytest.fail("retrained although only a default was missing"))
    try:
        assert _same(zoo.load("zfnet-mini", "ci"), trained)
    finally:
        record_file.write_text(original)


def test_damaged_entry_is_retrained_bit_identically(trained, cache):
    weights = cache / "ci" / "zfnet-mini" / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    with pytest.warns(RuntimeWarning, match="discarding zoo entry .*corrupted"):
        again = zoo.load("zfnet-mini", "ci", progress=False)
    assert _same(again, trained)


def test_stale_entry_is_retrained(trained, cache, monkeypatch):
    record_file = cache / "ci" / "zfnet-mini" / "run.json"
    record = json.loads(record_file.read_text())
    record["recipe"]["lr"] = 0.5  # as if trained by an older zfkit with another recipe
    record_file.write_text(json.dumps(record))

    class Retrained(Exception):
        pass

    def retrain(*args):
        raise Retrained

    monkeypatch.setattr(zoo, "_train_into", retrain)
    with pytest.warns(RuntimeWarning, match="stale: recipe changed"), pytest.raises(Retrained):
        zoo.load("zfnet-mini", "ci")


def test_unknown_names_and_profiles_list_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of zfnet-mini, alexnet-mini, zfnet-mini-short, alexnet-mini-short, zfnet-mini-clip, zfnet-mini-noclip"):
        zoo.load("resnet", "ci")
    with pytest.raises(ValueError, match="choose one of ci, book, paper"):
        zoo.load("zfnet-mini", "huge")
    with pytest.raises(ValueError, match="choose one of zfnet, alexnet"):
        zoo.load("zfnet-mini", "paper")


def test_paper_models_are_not_trained_implicitly():
    with pytest.raises(ValueError, match="python -m zfkit train --profile paper"):
        zoo.load("zfnet", "paper")


def test_seeds_change_initialisation_but_not_the_split():
    a, b = zoo.prepare("zfnet-mini", "ci"), zoo.prepare("zfnet-mini", "ci", seed=1)
    assert torch.equal(a.train.targets, b.train.targets) and torch.equal(a.val.images, b.val.images)
    assert not _same(a.model, b.model) and b.recipe.seed == 1
    assert zoo.entry_dir("zfnet-mini", "ci", seed=1).name == "zfnet-mini-seed1"


def test_validation_is_held_out_of_the_training_split():
    run = zoo.prepare("zfnet-mini", "ci")
    train_rows = {tuple(x.flatten()[::7].tolist()) for x in run.train.images}
    assert not any(tuple(x.flatten()[::7].tolist()) in train_rows for x in run.val.images)


# ---------------------------------------------------------------- the train command

def test_cli_trains_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--profile", "ci", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    assert "test top-1 error" in capsys.readouterr().out
    assert main(["train", "--profile", "ci", "--out", str(out), "--epochs", "1", "--quiet"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--profile", "ci", "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert train.load_checkpoint(out / "last").epoch == 2


def test_cli_precision_overrides_the_profile(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--profile", "ci", "--out", str(out), "--epochs", "1", "--precision", "bf16", "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["recipe"]["precision"] == "bf16"


@pytest.mark.parametrize("argv", [["train", "--out", "x", "--epochs", "0"], ["train", "--profile", "huge", "--out", "x"],
                                  ["train", "--profile", "ci"], ["train", "--out", "x", "--precision", "fp16"]])
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        main(argv)


def test_cli_paper_profile_without_imagenet_explains(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ZFKIT_IMAGENET", raising=False)
    assert main(["train", "--profile", "paper", "--out", str(tmp_path / "run")]) == 1
    assert "ZFKIT_IMAGENET" in capsys.readouterr().err


@pytest.fixture
def fake_imagenet(tmp_path):
    """Two classes, two 300x300 images each, in train/ and val/ (torchvision ImageFolder layout)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.{'png' if i else 'jpg'}")
    return tmp_path


def test_paper_profile_builds_zfnet_on_imagenet_with_the_papers_preprocessing(fake_imagenet, monkeypatch):
    monkeypatch.setenv("ZFKIT_IMAGENET", str(fake_imagenet))
    run = zoo.prepare("zfnet", "paper")
    assert run.model.spec.name == "zfnet" and run.test_ten_crop == 224
    assert (run.recipe.lr, run.recipe.batch_size, run.recipe.epochs) == (1e-2, 128, 70)
    x, y = run.train[0]
    assert x.shape == (3, 224, 224) and y == 0
    assert run.val[0][0].shape == (3, 224, 224) and run.test[0][0].shape == (3, 256, 256)
    assert x.abs().max() > 50  # per-pixel mean subtracted from [0, 255] pixels: the paper's [-128, 128]
    assert len(run.train) == 4 and len(run.test) == 4


def test_clipping_pair_differs_only_in_clipping():
    clip, noclip = zoo.prepare("zfnet-mini-clip", "ci"), zoo.prepare("zfnet-mini-noclip", "ci")
    assert clip.recipe.feature_scale_clipping and not noclip.recipe.feature_scale_clipping
    assert clip.recipe.differences(noclip.recipe) == ["feature_scale_clipping: False -> True"]
    assert _same(clip.model, noclip.model)
    assert clip.pixel_range == 255.0 and clip.train.images.abs().max() > 100  # the paper's [-128, 128] range


def test_short_budget_entries_shrink_only_the_book_run():
    short, full = zoo.prepare("alexnet-mini-short", "book"), zoo.prepare("alexnet-mini", "book")
    assert (len(short.train), short.recipe.epochs) == zoo.SHORT_BUDGET
    assert len(full.train) == 55_000 and full.recipe.epochs == profiles.get("book").epochs == 16
    assert len(short.test) == len(full.test) == 10_000  # scored on the same full test split
    # the book recipe is for the full-length run; the short run keeps the Recipe defaults
    assert {k: getattr(full.recipe, k) for k in profiles.BOOK_RECIPE} == profiles.BOOK_RECIPE
    assert short.recipe.differences(train.Recipe(epochs=2, seed=0)) == []
    ci = zoo.prepare("alexnet-mini-short", "ci")
    assert len(ci.train) == len(zoo.prepare("alexnet-mini", "ci").train)  # ci is already small


@pytest.mark.parametrize("epochs, annealed", [(16, 4), (32, 8), (8, 2), (7, 2), (3, 1), (1, 0)])
def test_the_final_anneal_keeps_its_share_of_a_longer_or_shorter_run(epochs, annealed):
    """The book's 4 of 16 epochs is a quarter of the run, rounded, and never the whole run."""
    assert (profiles.get("book").epochs, profiles.BOOK_RECIPE["final_anneal_epochs"]) == (16, 4)
    assert zoo.prepare("zfnet-mini", "book", epochs=epochs).recipe.final_anneal_epochs == annealed


def test_incomplete_entry_folder_is_discarded(cache):
    folder = cache / "ci" / "older-layout"
    folder.mkdir(parents=True)
    (folder / "leftover.txt").write_text("an older layout")
    with pytest.warns(RuntimeWarning, match="incomplete"):
        assert zoo._load_cached(folder) is None
    assert not folder.exists()


@pytest.mark.parametrize("name", sorted(zoo.TABLE3))
def test_table3_rows_change_only_what_they_name(name):
    """Every Table 3 row keeps the baseline's recipe and data; the architecture differs as named."""
    base_name = "zfnet-mini-short" if name.startswith("zfnet") else "alexnet-mini-short"
    row, base = zoo.prepare(name, "book"), zoo.prepare(base_name, "book")
    assert row.recipe == base.recipe
    assert torch.equal(row.train.targets, base.train.targets) and len(row.test) == len(base.test)
    change = zoo.TABLE3[name][1]
    convs = {c.name: c.out_channels for c in row.model.spec.convs}
    base_convs = {c.name: c.out_channels for c in base.model.spec.convs}
    assert set(base_convs) - set(convs) == {n for n in change.get("remove", ()) if n.startswith("conv")}
    assert set(base.model.spec.fc_names) - set(row.model.spec.fc_names) == {
        n for n in change.get("remove", ()) if n.startswith("fc")}
    for conv, factor in change.get("conv_scale", {}).items():
        assert convs[conv] == round(base_convs[conv] * factor)
    if "fc_scale" in change:
        assert set(row.model.spec.fc_widths) == {round(512 * change["fc_scale"])}
    assert row.model(row.test.images[:2]).shape == (2, 10)


def test_table3_widths_scale_with_the_ci_profile():
    book, ci = zoo.prepare("zfnet-mini-conv-wide", "book"), zoo.prepare("zfnet-mini-conv-wide", "ci")
    assert [c.out_channels for c in book.model.spec.convs] == [32, 96, 171, 341, 192]  # 128*4/3, 128*8/3, 96*2
    assert [c.out_channels for c in ci.model.spec.convs] == [16, 48, 85, 171, 96]


def test_transfer_source_sees_only_its_five_classes():
    run = zoo.prepare("zfnet-mini-fashion5", "book")
    assert run.model.spec.num_classes == 5 and run.train.classes == run.test.classes
    assert run.test.classes == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    assert set(run.train.targets.tolist()) == set(run.test.targets.tolist()) == {0, 1, 2, 3, 4}
    assert len(run.test) == 5000  # all test images of the five classes


def test_shuffled_labels_randomise_training_labels_only():
    shuffled, true = zoo.prepare("zfnet-mini-shuffled", "ci"), zoo.prepare("zfnet-mini", "ci")
    assert torch.equal(shuffled.test.targets, true.test.targets)  # scored against the true labels
    agree = (shuffled.val.targets == true.val.targets).float().mean().item()
    assert agree < 0.2  # a random permutation keeps ~10% of labels by chance
    assert shuffled.recipe.augment is False
    book = zoo.prepare("zfnet-mini-shuffled", "book")
    assert (len(book.train), book.recipe.epochs, len(book.val)) == (*zoo.SHUFFLED_BUDGET, 500)
    assert not book.recipe.feature_scale_clipping and book.recipe.weight_decay == 0 and book.recipe.batch_size == 32
