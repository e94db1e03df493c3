"""data.photos(): every listed photo loads, with valid classes, honest metadata and boxes; what the model gets right."""

import json
import warnings

import pytest
import torch

from zfkit import data, models
from zfkit import efficientnet as E

ENTRIES = json.loads(data.PHOTOS_JSON.read_text(encoding="utf8"))
PHOTOS = [e["name"] for e in ENTRIES["photos"]]
# Measured on a 2-core AMD EPYC (fp32); every margin between a correct and a wrong class is wide.
TOP1_CORRECT = {"chelsea", "coffee", "rocket", "motorcycle", "china", "flower", "grace_hopper"}
TOP5_CORRECT = TOP1_CORRECT  # the astronaut photo's only ImageNet object, a small shuttle model, is missed


@pytest.fixture(scope="module")
def photos():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a changed photo file would warn: fail instead
        return data.photos()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The pretrained model, its weights cached in a temporary folder (tests write nothing elsewhere)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZFKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        return models.efficientnet_lite0()


@pytest.fixture(scope="module")
def logits(photos, model):
    with torch.no_grad():
        return model(photos.images)


def test_every_entry_loads_with_metadata(photos):
    assert len(photos) == len(PHOTOS) >= 8 and photos.names == tuple(PHOTOS) and len(set(PHOTOS)) == len(PHOTOS)
    assert isinstance(photos, data.TensorImages)
    assert photos.images.shape == (len(PHOTOS), 3, 224, 224) and torch.isfinite(photos.images).all()
    assert photos.images.std(dim=(1, 2, 3)).min() > 0.2  # real pictures, not blanks
    assert all(s.strip() for s in photos.sources) and all(lic.strip() for lic in photos.licences)
    for e in ENTRIES["photos"]:
        assert {"name", "package", "pip", "file", "loader", "sha256", "object", "source", "licence", "classes",
                "box"} <= set(e)
    image, target = photos[0]
    assert image.shape == (3, 224, 224) and int(target) in photos.correct[0]


def test_class_sets_are_valid_imagenet_classes(photos):
    names = E.imagenet_classes()
    assert photos.classes == names and len(names) == 1000
    for e, correct, target in zip(ENTRIES["photos"], photos.correct, photos.targets):
        assert e["classes"] and len(set(correct)) == len(correct)
        for index, name in e["classes"]:
            assert 0 <= index < 1000 and names[index] == name, (e["name"], index, name)
        assert int(target) == correct[0]


def test_boxes_lie_inside_the_preprocessed_frame(photos):
    assert ENTRIES["frame"] == {"resize": E.RESIZE, "crop": E.CROP}  # boxes were measured in this frame
    x0, y0, x1, y1 = photos.boxes.T
    assert ((0 <= x0) & (x0 < x1) & (x1 <= 224) & (0 <= y0) & (y0 < y1) & (y1 <= 224)).all()
    assert photos.boxes.dtype == torch.long


def test_display_and_subsets(photos):
    shown = photos.display()
    assert shown.shape == photos.images.shape and shown.min() >= 0 and shown.max() <= 1
    assert torch.allclose(E.preprocess(shown[3]), photos.images[3], atol=1e-5)
    part = photos.subset([2, 0])
    assert part.names == ("astronaut", "chelsea") and torch.equal(part.boxes, photos.boxes[[2, 0]])
    assert part.correct == (photos.correct[2], photos.correct[0]) and torch.equal(part.images[1], photos.images[0])
    picked = data.photos(["rocket", "coffee"])
    assert picked.names == ("rocket", "coffee") and torch.equal(picked.images[1], photos.images[1])
    with pytest.raises(ValueError, match="choose from"):
        data.photos(["lena"])


def _write_entries(tmp_path, monkeypatch, **change):
    entries = json.loads(json.dumps(ENTRIES))
    entries["photos"] = [{**entries["photos"][0], **change}]
    path = tmp_path / "photos.json"
    path.write_text(json.dumps(entries))
    monkeypatch.setattr(data, "PHOTOS_JSON", path)


def test_a_missing_package_names_the_fix(tmp_path, monkeypatch):
    _write_entries(tmp_path, monkeypatch, package="zfkit_no_such_package", pip="zfkit-no-such-package")
    with pytest.raises(data.DataNotFoundError, match="pip install zfkit-no-such-package"):
        data.photos()


def test_a_changed_photo_file_warns(tmp_path, monkeypatch):
    _write_entries(tmp_path, monkeypatch, sha256="0" * 64)
    with pytest.warns(UserWarning, match="box may be off"):
        assert len(data.photos()) == 1


def test_which_photos_the_pretrained_model_gets_right(photos, logits):
    top1 = {n for n, hit in zip(photos.names, photos.hits(logits, k=1)) if hit}
    top5 = {n for n, hit in zip(photos.names, photos.hits(logits, k=5)) if hit}
    assert top1 == TOP1_CORRECT and top5 == TOP5_CORRECT


def test_the_default_normalisation_is_the_measured_winner(photos, logits, model):
    """The module docstring's table: mean log p(correct set) is best for the defaults (mean/std 0.5, crop 1.0)."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    def mean_log_p(lg):
        p = lg.softmax(1)
        return sum(p[i, list(c)].sum().log().item() for i, c in enumerate(photos.correct)) / len(photos)

    raw = []
    for e in ENTRIES["photos"]:
        folder = Path(next(iter(importlib.util.find_spec(e["package"]).submodule_search_locations)))
        with Image.open(folder / e["file"]) as im:
            raw.append(im.convert("RGB"))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    scores = {"default": mean_log_p(logits)}
    with torch.no_grad():
        for name, (mean, std), resize in [("half, 0.875", (E.MEAN, E.STD), 256), ("imagenet, 1.0", imagenet, 224),
                                          ("imagenet, 0.875", imagenet, 256)]:
            x = torch.stack([E.preprocess(im, mean, std, resize=resize) for im in raw])
            scores[name] = mean_log_p(model(x))
    assert max(scores, key=scores.get) == "default", scores
    assert scores["default"] == pytest.approx(-1.28, abs=0.02)
