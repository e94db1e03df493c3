"""zfkit.distill: the student's architecture, the losses and measures in closed form, a deterministic
ci distillation, and the zoo entry ``zfnet-scenes`` through its cache."""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from zfkit import distill, models, scenes, zoo
from zfkit.efficientnet import normalize
from zfkit.topk import topk_layers
from zfkit.train import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

CI = distill.config("ci")


def _needs_scenes():
    missing = scenes.missing_packages()
    if missing:
        pytest.skip(f"the scenes' Debian packages are not installed ({', '.join(missing)}; `make setup`)")


# ---------------------------------------------------------------- architecture

@pytest.mark.parametrize("profile", ["ci", "book"])
def test_student_is_a_zfnet_style_colour_imagenet_net(profile):
    cfg = distill.config(profile)
    net = distill.student(cfg)
    names = [n for n, _ in net.features.named_children()]
    assert [n for n in names if n.startswith("conv")] == list(distill.LAYERS)
    assert all(f"relu{i}" in names for i in range(1, 6))
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert [n for n in names if n.startswith("pool")] == ["pool1", "pool2", "pool5"]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping windows, as ZFNet's
    assert net.in_channels == 3 and net.input_size == cfg.size
    assert net(torch.zeros(2, 3, cfg.size, cfg.size)).shape == (2, 1000)
    assert models.build(net.spec).spec == net.spec  # rebuilt from its spec, as the zoo's checkpoints are


def test_student_init_is_seeded_and_starts_conv1_small():
    a, b, c = (distill.student(CI, seed).requires_grad_(False) for seed in (None, None, 1))
    assert torch.equal(a.features.conv1.weight, b.features.conv1.weight)
    assert not torch.equal(a.features.conv1.weight, c.features.conv1.weight)
    he = math.sqrt(2 / a.features.conv1.weight[0].numel())
    assert float(a.features.conv1.weight.std()) == pytest.approx(CI.conv1_init * he, rel=0.2)
    conv2 = a.features.conv2.weight
    assert float(conv2.std()) == pytest.approx(math.sqrt(2 / conv2[0].numel()), rel=0.2)


def test_zfnet_scenes_rejects_sizes_its_pools_cannot_take():
    with pytest.raises(ValueError, match="multiple of 16"):
        models.zfnet_scenes(input_size=100)


# ---------------------------------------------------------------- losses

def test_distillation_loss_is_t_squared_kl_at_temperature():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g) * 3
    for T in (1.0, 3.0):
        p_t, p_s = (t / T).softmax(1), (s / T).softmax(1)
        definition = T**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
        assert distill.distillation_loss(s, t, T) == pytest.approx(float(definition), rel=1e-5)
    assert distill.distillation_loss(t, t, 3.0) == pytest.approx(0.0, abs=1e-6)
    assert distill.distillation_loss(s, t, 3.0) > 0
    assert distill.distillation_loss(s + 5.0, s, 3.0) == pytest.approx(0.0, abs=1e-5)  # softmax ignores a shift
    with pytest.raises(ValueError, match="temperature"):
        distill.distillation_loss(s, t, 0.0)


def test_hint_loss_standardises_the_teachers_map():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(8, 5, 3, 3, generator=g) * 7 + 2
    mean, std = target.mean((0, 2, 3), keepdim=True), target.std((0, 2, 3), keepdim=True)
    assert distill.hint_loss((target - mean) / (std + 1e-3), target) == pytest.approx(0.0, abs=1e-8)
    assert distill.hint_loss(torch.zeros_like(target), target) == pytest.approx(1.0, rel=0.05)  # unit variance


# ---------------------------------------------------------------- measures

def test_agreement_in_closed_form():
    t = torch.tensor([[5.0, 4, 3, 2, 1, 0, -1], [0, 1, 2, 3, 4, 5, 6]])
    assert distill.agreement(t, t, k=5) == {"top1": 1.0, "top5_overlap": 1.0, "teacher_top1_in_top5": 1.0, "n": 2}
    reversed_ = distill.agreement(-t, t, k=3)  # the student's top 3 are the teacher's bottom 3
    assert reversed_["top1"] == 0.0 and reversed_["top3_overlap"] == 0.0
    swapped = t.clone()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]  # first image: top-1 swapped with the runner-up, same top-5
    a = distill.agreement(swapped, t, k=5)
    assert a["top1"] == 0.5 and a["top5_overlap"] == 1.0 and a["teacher_top1_in_top5"] == 1.0
    with pytest.raises(ValueError, match="logits"):
        distill.agreement(t[:1], t)


def test_legibility_in_closed_form():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 2:6] = True  # 8 of 64 pixels: area share 1/8
    masks[1, :4] = True  # half the image
    on = torch.randn(2, 3, 8, 8) * masks[:, None]  # all energy on the mask
    uniform = torch.ones(2, 3, 8, 8)
    assert distill.legibility(on, masks).tolist() == pytest.approx([8.0, 2.0])  # 1 / area share
    assert distill.legibility(uniform, masks).tolist() == pytest.approx([1.0, 1.0])
    off = torch.ones(2, 3, 8, 8) * ~masks[:, None]
    assert distill.legibility(off, masks).tolist() == pytest.approx([0.0, 0.0])
    both = torch.stack([on, uniform], 1)  # (B, K, C, H, W), as Deconvnet.project returns
    assert distill.legibility(both, masks).flatten().tolist() == pytest.approx([8.0, 1.0, 2.0, 1.0])
    assert math.isnan(distill.legibility(torch.zeros(1, 3, 8, 8), masks[:1])[0])
    with pytest.raises(ValueError, match="masks"):
        distill.legibility(on, masks[:1])


def test_purity_in_closed_form():
    labels = ["duck", "duck", "duck", "fox", "fox", "pear"]
    indices = torch.tensor([[0, 1, 2], [0, 3, 5], [3, 4, 0]])
    assert distill.purity(indices, labels) == pytest.approx((1 + 1 / 3 + 2 / 3) / 3)
    assert distill.purity(indices, labels, active=torch.tensor([True, False, False])) == 1.0
    assert math.isnan(distill.purity(indices, labels, active=torch.zeros(3, dtype=torch.bool)))


# ---------------------------------------------------------------- a ci distillation

@pytest.fixture(scope="module")
def labelled():
    _needs_scenes()
    teacher = models.efficientnet_lite0(pretrained=True)
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        return teacher, distill.label(CI, teacher, CI.scenes, CI.seed, progress=False)


def test_labelled_scenes_carry_images_logits_and_hint_maps(labelled):
    _, data = labelled
    side = distill.hint_grid(CI)
    assert data.pixels.shape == (CI.scenes, 3, CI.size, CI.size) and data.pixels.dtype == torch.uint8
    assert data.logits.shape == (CI.scenes, 1000) and data.hints.shape[2:] == (side, side)
    assert data.hints.shape[1] == 112  # Lite0's stage5
    assert data.pixels.float().std() > 10  # real pictures, not blank frames


def test_ci_training_is_deterministic_and_learns(labelled):
    _, data = labelled
    a, b = distill.student(CI), distill.student(CI)
    start = {k: v.clone() for k, v in a.state_dict().items()}
    seen = []
    ha = distill.fit_student(a, data, CI, progress=False,
                             on_epoch=lambda e, m: seen.append((e, {k: v.clone() for k, v in m.state_dict().items()})))
    hb = distill.fit_student(b, data, CI, progress=False)
    assert ha == hb
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training and ha[-1]["kd_loss"] < ha[0]["kd_loss"] * 1.05
    assert [e for e, _ in seen] == list(range(CI.epochs + 1))  # Fig. 4's snapshots: the start, then each epoch
    assert all(torch.equal(seen[0][1][k], start[k]) for k in start)
    assert all(torch.equal(seen[-1][1][k], v) for k, v in a.state_dict().items())
    assert not torch.equal(seen[1][1]["features.conv1.weight"], start["features.conv1.weight"])


def test_teacher_view_pastes_the_object_alone_on_grey():
    _needs_scenes()
    drawn = distill.draw_scenes(CI, 3, seed=5)
    assert distill.teacher_view(drawn, "scene") is drawn.images
    alone = distill.teacher_view(drawn, "object")
    inside = drawn.masks[:, None].expand_as(alone)
    assert torch.equal(alone[inside], drawn.images[inside])  # the object's pixels as drawn
    grey = normalize(torch.full((1, 3, 1, 1), 0.5)).expand_as(alone)
    assert torch.equal(alone[~inside], grey[~inside])  # everything else mid-grey
    assert (drawn.images[~inside] != grey[~inside]).float().mean() > 0.9  # where the wallpaper was
    with pytest.raises(ValueError, match="'scene' or 'object'"):
        distill.teacher_view(drawn, "background")


def test_measures_run_on_the_student_and_its_untrained_control(labelled):
    teacher, data = labelled
    net = distill.student(CI)
    distill.fit_student(net, data, CI, progress=False)
    big, small = distill.held_out(CI, 6)
    assert small.images.shape[-1] == CI.size and small.masks.shape[-1] == CI.size and small.masks.any((1, 2)).all()
    control = distill.untrained(net)
    assert control.spec == net.spec and not torch.equal(control.features.conv3.weight, net.features.conv3.weight)
    scores = distill.layer_legibility(net, small.images, small.masks, layers=("conv1", "conv5"), top=2)
    assert set(scores) == {"conv1", "conv5"} and all(v >= 0 for v in scores.values())
    purity = distill.layer_purity(control, small, layers=("conv2",), k=3)
    assert 1 / 3 <= purity["conv2"] <= 1
    scan = topk_layers(control, small, ["conv2"], k=3, progress=False)  # one scan, grouped two ways
    assert distill.scan_purity(scan, small) == purity
    assert distill.scan_purity(scan, small, "background_names") == distill.layer_purity(
        control, small, layers=("conv2",), k=3, key="background_names")
    agree = distill.agreement_on(net, teacher, small.images, big.images)
    assert agree["n"] == 6 and 0 <= agree["top1"] <= 1


# ---------------------------------------------------------------- the zoo entry

def test_zoo_trains_zfnet_scenes_once_then_loads_it_from_the_cache(tmp_path, monkeypatch):
    _needs_scenes()
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path))
    assert "zfnet-scenes" in zoo.NAMES
    first = zoo.load("zfnet-scenes", "ci", progress=False)
    folder = tmp_path / "ci" / "zfnet-scenes"
    record = json.loads((folder / "run.json").read_text())
    assert record["config"] == json.loads(json.dumps(dataclasses.asdict(CI)))
    assert record["label_seconds"] > 0 and record["train_seconds"] > 0 and record["held_out"]["n"] == CI.val_scenes
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.joinpath("ci").iterdir())  # renamed into place
    monkeypatch.setattr(distill, "distill", lambda *a, **k: pytest.fail("retrained although cached"))
    again = zoo.load("zfnet-scenes", "ci")
    assert not again.training and again.spec == first.spec
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), again.state_dict().values()))
    assert zoo.metrics("zfnet-scenes", "ci")["held_out"] == record["held_out"]
    snapshots = zoo.checkpoints("zfnet-scenes", "ci")  # Fig. 4: the untrained start, then every epoch
    assert sorted(snapshots) == list(range(CI.epochs + 1))
    start, end = (load_checkpoint(snapshots[e]).build() for e in (0, CI.epochs))
    assert all(torch.equal(x, y) for x, y in zip(start.state_dict().values(), distill.student(CI).state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(end.state_dict().values(), first.state_dict().values()))


def test_zoo_retrains_zfnet_scenes_when_its_config_changed(tmp_path, monkeypatch):
    _needs_scenes()
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path))
    folder = tmp_path / "ci" / "zfnet-scenes"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"config": {"size": 1}, "arch": None}))
    calls = []

    def fake(cfg, **kwargs):
        calls.append(cfg)
        return distill.Result(distill.student(cfg), [], 1.0, 1.0, {"n": 0})

    monkeypatch.setattr(distill, "distill", fake)
    with pytest.warns(RuntimeWarning, match="stale"):
        zoo.load("zfnet-scenes", "ci", progress=False)
    assert calls == [CI]


def test_zoo_retrains_zfnet_scenes_when_the_curated_objects_changed(tmp_path, monkeypatch):
    """Same config, architecture and snapshots, but learnt from another catalogue of objects: stale."""
    _needs_scenes()
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path))
    folder = tmp_path / "ci" / "zfnet-scenes"
    folder.mkdir(parents=True)
    record = {"config": dataclasses.asdict(CI), "arch": distill.student(CI).spec.to_dict(),
              "snapshots": list(range(CI.epochs + 1)), "scenes": "0" * 64}
    (folder / "run.json").write_text(json.dumps(record))
    assert scenes.catalogue_digest() != record["scenes"]
    calls = []
    monkeypatch.setattr(distill, "distill", lambda cfg, **k: calls.append(cfg) or distill.Result(
        distill.student(cfg), [], 1.0, 1.0, {"n": 0}))
    with pytest.warns(RuntimeWarning, match="stale: scenes changed"):
        zoo.load("zfnet-scenes", "ci", progress=False)
    assert calls == [CI] and json.loads((folder / "run.json").read_text())["scenes"] == scenes.catalogue_digest()


def test_catalogue_digest_follows_what_the_objects_are_not_the_prose(monkeypatch):
    catalogue = scenes._catalogue()
    before = scenes.catalogue_digest()
    catalogue["about"] += " reworded"
    catalogue["objects"][0]["why"] = "reworded"
    monkeypatch.setattr(scenes, "_catalogue", lambda: catalogue)
    assert scenes.catalogue_digest() == before
    catalogue["objects"][0]["imagenet"] = [1]
    assert scenes.catalogue_digest() != before


def test_zfnet_scenes_is_not_a_fashion_mnist_run():
    with pytest.raises(ValueError, match="distilled from EfficientNet-Lite0"):
        zoo.prepare("zfnet-scenes", "ci")
    with pytest.raises(ValueError, match="no distillation budget"):
        distill.config("paper")


def test_chapter_sizes_per_profile():
    ci, book = distill.sizes("ci"), distill.sizes("book")
    assert ci.held_out < book.held_out and ci.viz_steps < book.viz_steps and distill.sizes("paper") == book
    assert book.legibility >= 30  # a paired difference over scenes needs a few dozen to decide
    with pytest.raises(ValueError, match="unknown profile"):
        distill.sizes("huge")


def test_real_photos_are_chapter_11s_then_gcompris_photographs():
    _needs_scenes()
    from zfkit import data

    five = distill.real_photos(limit=5)
    assert five.shape == (8 + 5, 3, 224, 224)
    assert torch.equal(five[:8], data.photos().images) and torch.equal(five[8:], data.unlabelled_photos(limit=5).images)
