"""Chapter 11's helpers: the crop search set, Lite0 inputs, measurements, and every verdict outcome.

The verdict builders are fed synthetic measurements built so that each claim must read reproduced
(True), not reproduced (False) or inconclusive (None); a rule that could only say one of them fails.
Every row must also carry what the claim tables demand (:func:`_table_ready`): its noise, a threshold
with its source and why, ``flips_at``, and ``needed`` exactly when inconclusive.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from zfkit import data, imagenet, verdicts
from zfkit.claims import lite0
from zfkit.invariance import InvarianceResult
from zfkit.occlusion import OcclusionResult
from zfkit.results import Verdict, check_table, verdict_table
from zfkit.rf import ReceptiveField
from zfkit.sanity import Sweep
from helpers import random_mini


def _table_ready(rows, expected, unit, sources=("ours",), source="paper"):
    """Each row reads ``expected``, passes verdict_table, and carries noise, a threshold (its source one
    of ``sources``, with a why), flips_at, the claim's ``source``, and ``needed`` in ``unit`` only when inconclusive."""
    verdict_table(rows)
    for row in rows:
        assert row.holds is expected, row
        assert row.noise and row.source == source
        assert row.threshold is not None and row.threshold.source in sources and row.threshold.why
        assert row.flips_at is not None
        assert (row.needed is not None) == (expected is None), row
        if expected is None:
            assert unit in row.needed and "measured on" in row.needed


# ---------------------------------------------------------------- sizes and data

def test_sizes_per_profile():
    ci, book = imagenet.sizes("ci"), imagenet.sizes("book")
    assert imagenet.sizes("paper") == book
    assert book.crops >= 2000 and book.objects >= 150 and book.folds >= 10 and book.occlusion_sweeps >= 30 and ci.crops < book.crops
    assert max(book.shots) == 30 and min(book.shots) == 1 and book.folds >= 2
    assert set(book.unit_layers) <= set(imagenet.LAYERS) and set(book.panel_layers) <= set(imagenet.LAYERS)
    with pytest.raises(ValueError, match="unknown profile"):
        imagenet.sizes("huge")


def test_crop_boxes_are_deterministic_balanced_and_inside_the_frame():
    boxes = imagenet.crop_boxes(50, 4, (0.25, 1.0), seed=3)
    assert torch.equal(boxes, imagenet.crop_boxes(50, 4, (0.25, 1.0), seed=3))
    assert not torch.equal(boxes, imagenet.crop_boxes(50, 4, (0.25, 1.0), seed=4))
    photo, top, left, side, flip = boxes.T
    assert torch.bincount(photo).tolist() == [13, 13, 12, 12]
    assert boxes[:4].tolist() == [[p, 0, 0, 224, 0] for p in range(4)]  # each photo's whole frame first
    assert bool((side >= 56).all() and (side <= 224).all() and (top + side <= 224).all() and (left + side <= 224).all())
    assert set(flip.tolist()) == {0, 1} and side[4:].float().std() > 10  # multi-scale, both mirror images
    with pytest.raises(ValueError, match="scales"):
        imagenet.crop_boxes(10, 2, (0.0, 1.0))
    with pytest.raises(ValueError, match="count"):
        imagenet.crop_boxes(1, 2)


def test_crops_cut_the_original_photos_and_label_them_by_photo():
    photos = data.photos(["coffee", "rocket"])
    found = imagenet.crops(photos, 6, seed=0)
    assert found.images.shape == (6, 3, 224, 224) and found.classes == ("coffee", "rocket")
    assert found.targets.tolist() == [0, 1, 0, 1, 0, 1] and torch.equal(found.boxes[:, 0], found.targets)
    # the whole-frame crop is the preprocessed photo up to resampling order (crop then resize vs resize then crop)
    assert (found.images[:2] - photos.images).abs().mean() < 0.03
    shown = found.display()
    assert shown.min() >= 0 and shown.max() <= 1
    assert torch.equal(found.subset([1]).boxes, found.boxes[1:2])


def test_to_lite0_makes_grey_images_model_inputs():
    digits = data.subset(data.digits(size=32), 20, seed=0)
    lite = imagenet.to_lite0(digits)
    assert lite.images.shape == (20, 3, 224, 224) and torch.equal(lite.targets, digits.targets)
    assert torch.equal(lite.images[:, 0], lite.images[:, 2])  # grey in all three channels
    pixels = lite.display()
    assert pixels.min() >= 0 and pixels.max() <= 1
    small = torch.nn.functional.interpolate(pixels[:, :1], size=(32, 32), mode="area")
    assert (small - digits.display()).abs().mean() < 0.05  # the same digits, only larger


def test_untrained_is_seeded_and_not_the_imagenet_model():
    a, b, c = imagenet.untrained(0), imagenet.untrained(0), imagenet.untrained(1)
    wa, wb, wc = (m.stem.conv.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc) and not a.training


def test_probes_read_lite0_pooled_features_directly():
    """The probes take Lite0 as it is: its "pool" layer is the pooled head, flattened."""
    from zfkit import probes

    model = imagenet.untrained(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = x
        for name in ("stem", *(f"stage{i}" for i in range(1, 8)), "head", "pool"):
            pooled = getattr(model, name)(pooled)
    digits = imagenet.LiteImages(x, torch.tensor([0, 1]), ("a", "b"))
    assert np.allclose(probes.features(model, digits, "pool", batch_size=1), pooled.flatten(1).numpy(), atol=1e-5)


class _Logits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def test_top5_names_the_classes_and_marks_the_correct_ones():
    classes = tuple(f"c{i}" for i in range(10))
    photos = data.Photos(torch.zeros(2, 3, 4, 4), torch.tensor([3, 7]), classes, names=("a", "b"),
                         correct=((3, 4), (7,)), boxes=torch.zeros(2, 4, dtype=torch.long))
    logits = torch.full((2, 10), -10.0)
    logits[0, [3, 4, 5]] = torch.tensor([2.0, 1.0, 3.0])  # a: c5 first, its correct classes second and third
    logits[1, :5] = torch.tensor([5.0, 4, 3, 2, 1])  # b: its correct class c7 is not in the top 5
    rows = imagenet.top5(_Logits(logits), photos)
    assert rows[0]["classes"][:3] == ["c5", "c3", "c4"] and rows[0]["correct"][:3] == [False, True, True]
    assert (rows[0]["top1"], rows[0]["top5"], rows[1]["top5"]) == (False, True, False)
    p = logits.softmax(1)
    assert rows[0]["p_correct"] == pytest.approx(float(p[0, 3] + p[0, 4]))
    assert (rows[0]["target"], rows[1]["target"]) == (3, 7)  # the correct class the model prefers
    table = imagenet.top5_markdown(rows)
    assert "**c3** " in table and "| b |" in table and len(table.splitlines()) == 4
    fig = imagenet.draw_photos(photos, rows)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 1  # each photo with its box


@pytest.mark.parametrize("hits, expected", [([True] * 8, True), ([False] * 8, False), ([True] * 5 + [False] * 3, None)])
def test_recognised_check_outcomes(hits, expected):
    share, noise, holds = imagenet.recognised(hits)
    assert share == pytest.approx(sum(hits) / 8) and noise == pytest.approx(verdicts.share_noise(8))
    assert holds is expected


# ---------------------------------------------------------------- Fig. 1/2

def test_unit_patch_cuts_small_fields_and_takes_the_image_for_large_ones():
    image = torch.arange(3 * 64 * 64, dtype=torch.float32).view(3, 64, 64)
    small = ReceptiveField(size=9, jump=2, start=0.0)
    assert torch.equal(imagenet.unit_patch(image, small, 10, 5, size=48), small.patch(image, 10, 5))
    large = ReceptiveField(size=300, jump=32, start=0.0)
    whole = imagenet.unit_patch(image, large, 0, 0, size=16)
    assert whole.shape == (3, 16, 16)
    assert torch.allclose(whole, torch.nn.functional.interpolate(image[None], size=(16, 16), mode="bilinear",
                                                                 antialias=True, align_corners=False)[0])


def test_on_image_puts_receptive_field_tiles_back_on_the_image():
    image = torch.arange(2 * 6 * 6, dtype=torch.float32).view(2, 6, 6) + 1
    field = ReceptiveField(size=10, jump=2, start=0.0)
    boxes = [field.box(0, 0), field.box(2, 3)]
    tiles = torch.stack([field.patch(image, 0, 0), field.patch(image, 2, 3)])
    back = imagenet.on_image(tiles, boxes, 6)
    for k, (top, left, bottom, right) in enumerate(boxes):  # the image where the field covers it, 0 elsewhere
        covered = torch.zeros(6, 6, dtype=torch.bool)
        covered[max(top, 0):min(bottom, 6), max(left, 0):min(right, 6)] = True
        assert torch.equal(back[k], torch.where(covered, image, torch.zeros(())))


def test_fit_to_image_changes_only_panels_wider_than_the_image():
    from zfkit.gallery import Panel
    from zfkit.topk import TopK

    scan = TopK(torch.ones(1, 2), torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    panel = Panel("x", 0, torch.ones(2), torch.tensor([0, 1]), torch.randn(2, 3, 10, 10), torch.randn(2, 3, 10, 10),
                  torch.tensor([0, 1]))
    assert imagenet.fit_to_image([panel], scan, ReceptiveField(10, 2, 0.0), side=12)[0] is panel
    fitted = imagenet.fit_to_image([panel], scan, ReceptiveField(10, 2, 0.0), side=6)[0]
    assert fitted.patches.shape == fitted.projections.shape == (2, 3, 6, 6) and fitted.channel == 0


def test_map_measures_give_one_value_per_active_map():
    from zfkit.topk import topk_layers

    model = random_mini()
    dataset = data.TensorImages(torch.randn(30, 1, 32, 32), torch.arange(30) % 3, ("a", "b", "c"))
    scans = topk_layers(model, dataset, ["conv2", "conv5"], k=9, progress=False)
    measured = imagenet.map_measures(model, dataset, scans, size=8)
    for layer, scan in scans.items():
        active = int((scan.values[:, 8] > 0).sum())
        assert len(measured[layer]["grouping"]) == len(measured[layer]["classes"]) == active
        assert bool((measured[layer]["classes"] >= 1).all() and (measured[layer]["classes"] <= 3).all())


def test_strongest_units_and_their_projections_stay_in_the_receptive_field():
    from zfkit.deconv import Deconvnet
    from zfkit.rf import receptive_field
    from zfkit.topk import layer_activations

    model = random_mini()
    images = torch.randn(3, 1, 32, 32)
    channels, ys, xs = imagenet.strongest_units(model, images, "conv2")
    acts = layer_activations(model, images, "conv2")
    for i in range(3):
        assert acts[i, channels[i], ys[i], xs[i]] == acts[i].max()
    field = receptive_field(model, "conv2")
    projection = Deconvnet(model).project(images[:1], "conv2", channels=[int(channels[0])], mode="max")[0, 0]
    assert imagenet.outside_field(projection, field, ys[0], xs[0]) == 0
    spread = torch.ones_like(projection)
    top, left, bottom, right = field.box(int(ys[0]), int(xs[0]))
    inside = (min(bottom, 32) - max(top, 0)) * (min(right, 32) - max(left, 0))
    assert imagenet.outside_field(spread, field, ys[0], xs[0]) == pytest.approx(1 - inside / 32 ** 2)
    fig = imagenet.draw_stage_projections(images, {"conv2": projection.expand(3, -1, -1, -1)}, {"conv2": channels},
                                          ["a", "b", "c"])
    assert len(fig.axes) == 6


def _maps(grouping, classes, n=40, spread=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return {"grouping": grouping + spread * rng.standard_normal(n), "classes": classes + spread * rng.standard_normal(n)}


@pytest.mark.parametrize("trained, control, expected", [
    ({"low": _maps(0.3, 6), "high": _maps(0.3, 2)}, {"low": _maps(0.1, 6, seed=1), "high": _maps(0.1, 5, seed=2)}, True),
    ({"low": _maps(0.1, 6), "high": _maps(0.1, 5)}, {"low": _maps(0.3, 6, seed=1), "high": _maps(0.3, 2, seed=2)}, False),
    ({"low": _maps(0.2, 4, spread=1), "high": _maps(0.2, 4, spread=1)},
     {"low": _maps(0.2, 4, spread=1, seed=1), "high": _maps(0.2, 4, spread=1, seed=2)}, None),
])
def test_hierarchy_claims_outcomes(trained, control, expected):
    grouping, invariance = imagenet.hierarchy_claims(trained, control, "low", "high")
    assert grouping.claim == lite0.GROUPING and invariance.claim == lite0.INVARIANCE
    _table_ready([grouping, invariance], expected, "maps per layer and net")
    assert "(measured on 40)" in (grouping.needed or "(measured on 40)")
    assert "photos" in invariance.measured  # the ImageNet chapter counts photos, not classes


def test_hierarchy_claims_need_both_stages_in_both_networks():
    maps = {"low": _maps(0.3, 6), "high": _maps(0.3, 2)}
    with pytest.raises(ValueError, match="untrained measurements have no"):
        imagenet.hierarchy_claims(maps, {"low": maps["low"]}, "low", "high")


# ---------------------------------------------------------------- Fig. 7

def _occlusion(prob, patch=4, stride=4, size=8, base=0.8, target=2):
    prob = torch.as_tensor(prob, dtype=torch.float32)
    ys = torch.arange(0, size - patch + 1, stride)
    top = torch.full(prob.shape, target, dtype=torch.long)
    top[0, 0] = 5
    return OcclusionResult(activity=torch.zeros(prob.shape), prob=prob, top_class=top, channel=0,
                           projection=torch.zeros(3, size, size), ys=ys, xs=ys.clone(), patch=patch, layer="stage7",
                           target=target, base_activity=1.0, base_prob=base, macs=0, full_macs=0)


def test_box_mask():
    mask = imagenet.box_mask([1, 2, 4, 3], size=(5, 6))
    assert mask.shape == (5, 6) and mask.sum() == 3 and bool(mask[2, 1:4].all())
    for bad in ([0, 0, 7, 3], [3, 0, 3, 2], [-1, 0, 2, 2]):
        with pytest.raises(ValueError, match="box"):
            imagenet.box_mask(bad, size=(5, 6))


def test_background_drop_splits_positions_by_the_occluder_centre():
    result = _occlusion([[0.2, 0.8], [0.8, 0.6]])  # occluders at (0, 0), (0, 4), (4, 0), (4, 4); centres 2 px in
    on, off = imagenet.background_drop(result, imagenet.box_mask([1, 1, 3, 3], 8))  # a 2-px box under the first centre
    assert on == pytest.approx(1 - 0.2 / 0.8) and off == pytest.approx((0 + 0 + 0.25) / 3)
    on, off = imagenet.background_drop(result, imagenet.box_mask([6, 0, 7, 8], 8))  # a thin box under the right column
    assert on == pytest.approx((0 + 0.25) / 2) and off == pytest.approx((0.75 + 0) / 2)
    assert imagenet.background_drop(result, imagenet.box_mask([0, 0, 8, 8], 8)) is None  # no background left
    assert imagenet.background_drop(result, imagenet.box_mask([0, 0, 1, 1], 8)) is None  # no centre on the object


@pytest.mark.parametrize("drops, expected", [
    ([(0.5, 0.1), (0.6, 0.1), (0.4, 0.05), (0.55, 0.2)], True),
    ([(0.1, 0.5), (0.1, 0.6), (0.05, 0.4), (0.2, 0.55)], False),
    ([(0.5, 0.1), (0.1, 0.5), (0.3, 0.25), None], None),
])
def test_object_contrast_outcomes(drops, expected):
    mean, se, n, holds = imagenet.object_contrast(drops)
    assert n == sum(d is not None for d in drops) and se > 0
    assert holds is expected


def test_object_contrast_needs_two_photos():
    with pytest.raises(ValueError, match="at least 2 images"):
        imagenet.object_contrast([(0.5, 0.1), None])


def test_compact_classes_renumbers_the_classes_present_target_first():
    result = _occlusion([[0.2, 0.8], [0.8, 0.6]], target=7)
    compact, names = imagenet.compact_classes(result, [f"c{i}" for i in range(10)])
    assert names == ["c7", "c5"] and compact.target == 0
    assert compact.top_class.tolist() == [[1, 0], [0, 0]] and result.top_class[0, 0] == 5  # the original is kept


@pytest.mark.parametrize("largest, contrast, overlap, expected", [
    ([0.9, 0.8, 0.95, 0.85, 0.9, 0.92], (0.4, 0.05, 6, True), [0.3, 0.25, 0.35, 0.3, 0.28, 0.32], True),
    ([0.1, 0.2, 0.05, 0.15, 0.1, 0.08], (-0.4, 0.05, 6, False), [-0.3, -0.25, -0.35, -0.3, -0.28, -0.32], False),
    ([0.1, 0.9, 0.2, 0.8, 0.5, 0.6], (0.05, 0.2, 6, None), [0.3, -0.3, 0.2, -0.25, 0.1, 0.0], None),
])
def test_occlusion_claims_outcomes(largest, contrast, overlap, expected):
    rows = imagenet.occlusion_claims(largest, contrast, overlap, draws=200)
    assert [r.claim for r in rows] == [lite0.DROPS, lite0.LOCALISES, lite0.OVERLAP]
    _table_ready(rows, expected, "scenes")
    assert rows[0].threshold.value == 0.5 and "drops significantly" in rows[0].threshold.why
    assert "6 scenes" in rows[0].noise and "200 resamples" in rows[0].noise and "paired" in rows[1].noise


# ---------------------------------------------------------------- Fig. 5

def test_paper_layers_renames_lite0_layers():
    d = {"stem": torch.ones(2, 3), "pool": torch.zeros(2, 3), "stage4": torch.ones(2, 3)}
    r = InvarianceResult("translate", torch.tensor([0.0, 1.0, 2.0]), d, d, torch.ones(2, 3), torch.tensor([0, 1]))
    renamed = imagenet.paper_layers(r)
    assert set(renamed.normalized) == set(renamed.distance) == {"conv1", "fc7"}
    assert torch.equal(renamed.normalized["conv1"], d["stem"]) and set(r.normalized) == {"stem", "pool", "stage4"}
    with pytest.raises(ValueError, match="did not measure"):
        imagenet.paper_layers(r, first="stem", last="head")


def _measured(value: float, noise: float) -> dict:
    """Every measurement of invariance_claims on the side its claim predicts (value > 0), or the other."""
    good = {"ratio": 1 - value, "learned": -value, "linearity": 0.9 + value / 10, "steeper": -value,
            "kept": 0.8 + value / 10}
    out = {f"{name}/{kind}": (v, noise) for name, v in good.items() for kind in ("translate", "scale")}
    out["kept/rotate"] = (0.8 - value / 10, noise)
    out["rotate_vs_others"] = (-value, noise)
    out["spearman"] = (value, noise)
    return out


@pytest.mark.parametrize("measured, expected", [(_measured(0.5, 0.01), True), (_measured(-0.5, 0.01), False),
                                                (_measured(0.05, 0.2), None)])
def test_invariance_claims_outcomes(measured, expected):
    rows = imagenet.invariance_claims(measured, images=8)
    assert [r.claim for r in rows] == [lite0.INV_LAYERS, lite0.INV_LINEAR, lite0.INV_STABLE,
                                       lite0.INV_ROTATE, lite0.INV_SYMMETRY]
    _table_ready(rows, expected, "scenes", sources=("paper", "ours"))
    assert all("8 scenes" in r.noise for r in rows)


def test_invariance_claims_name_the_part_that_decides_and_its_threshold_source():
    ratio_fails = _measured(0.5, 0.01) | {"ratio/scale": (1.5, 0.01)}  # layer 7 moves more than layer 1 under scaling
    row = imagenet.invariance_claims(ratio_fails, images=8)[0]
    assert row.holds is False and row.threshold.value == 1 and row.threshold.source == "paper"
    assert "pool" in row.threshold.why and "stem" in row.threshold.why  # Lite0's layers stand for layers 1 and 7
    steady_control = _measured(0.5, 0.01) | {"learned/translate": (0.3, 0.01)}  # the untrained net is steadier
    row = imagenet.invariance_claims(steady_control, images=8)[0]
    assert row.holds is True and row.threshold.value == 1  # shown, not judged: the claim is about the trained net
    assert row.flips_at == pytest.approx(0.5 + verdicts.k_for(8) * 0.01)


def test_invariance_claims_name_missing_measurements():
    measured = _measured(0.5, 0.01)
    del measured["kept/rotate"]
    with pytest.raises(ValueError, match="kept/rotate"):
        imagenet.invariance_claims(measured, images=8)


def test_invariance_claims_widen_the_noise_for_few_photos():
    measured = _measured(0.5, 0.01) | {"spearman": (0.5, 0.22)}  # 2.27 noise above 0: clears 2, not 2.36 (8 photos)
    assert verdicts.exceeds(0.5, 0, 0.22) is True
    row = imagenet.invariance_claims(measured, images=8)[-1]
    assert row.holds is None and row.needed == "9 scenes (measured on 8)"  # t(8) 2.31 x 0.22 x sqrt(8/9) < 0.5


# ---------------------------------------------------------------- §5.2

@pytest.mark.parametrize("margins, expected", [([40, 42, 38, 41], True), ([-5, -3, -4, -6], False), ([5, 30, 10, 20], None)])
def test_transfer_claim_outcomes(margins, expected):
    row = imagenet.transfer_claim(margins, (1, 30), "pool")
    assert row.claim == lite0.TRANSFER
    _table_ready([row], expected, "folds")
    assert f"{np.mean(margins):+.1f}" in row.measured and row.threshold.value == 10 and "4 folds" in row.noise


# ---------------------------------------------------------------- randomisation

def test_weight_groups_and_grouped_cascade():
    model = random_mini()
    groups = imagenet.weight_groups(model)
    assert list(groups) == ["fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1"]
    steps = list(imagenet.grouped_cascade(model, {"top": ["fc8", "fc7"], "conv5": ["conv5"]}, seed=0))
    assert [name for name, _ in steps] == ["top", "conv5"]
    top, conv5 = (m for _, m in steps)
    changed = lambda m, layer: not torch.equal(getattr(m.classifier if layer.startswith("fc") else m.features, layer).weight,  # noqa: E731
                                               getattr(model.classifier if layer.startswith("fc") else model.features, layer).weight)
    assert changed(top, "fc8") and changed(top, "fc7") and not changed(top, "fc6") and not changed(top, "conv5")
    assert changed(conv5, "conv5") and torch.equal(conv5.classifier.fc8.weight, top.classifier.fc8.weight)


def test_weight_groups_of_lite0_run_from_the_classifier_to_the_stem():
    groups = imagenet.weight_groups(imagenet.untrained())
    assert list(groups) == ["fc", "head", "stage7", "stage6", "stage5", "stage4", "stage3", "stage2", "stage1", "stem"]
    assert sum(len(v) for v in groups.values()) == 50 and groups["stem"] == ["stem.conv"]


def _sweep(ssim, spearman, noise, pairs=8):
    rng = np.random.default_rng(0)
    rules = ("deconvnet", "guided", "gradient")
    jitter = lambda v: v + noise * rng.standard_normal(pairs) * np.sqrt(pairs)  # noqa: E731
    scores = {r: {"ssim": np.stack([jitter(ssim[r]), jitter(0.1)]), "spearman_abs": np.zeros((2, pairs)),
                  "spearman": np.stack([jitter(spearman[r]), jitter(0.0)])} for r in rules}
    floor = {r: {"ssim": 0.1, "spearman_abs": 0.0, "spearman": 0.0} for r in rules}
    return Sweep("fc", ["classifier", "head"], rules, scores, floor, {})


@pytest.mark.parametrize("ssim, spearman, noise, expected", [
    ({"guided": 0.98, "deconvnet": 0.97, "gradient": 0.2}, {"guided": 0.9, "deconvnet": 0.9, "gradient": 0.0}, 0.005, True),
    ({"guided": 0.3, "deconvnet": 0.2, "gradient": 0.95}, {"guided": 0.2, "deconvnet": 0.1, "gradient": 0.9}, 0.005, False),
    ({"guided": 0.9, "deconvnet": 0.9, "gradient": 0.6}, {"guided": 0.5, "deconvnet": 0.5, "gradient": 0.2}, 0.05, None),
])
def test_sanity_claims_outcomes(ssim, spearman, noise, expected):
    rows = imagenet.sanity_claims(_sweep(ssim, spearman, noise), "classifier")
    assert [r.claim for r in rows] == [lite0.SANITY_GUIDED, lite0.SANITY_GRADIENT, lite0.SANITY_DECONV]
    _table_ready(rows[:2], expected, "scenes", source="Adebayo 2018")
    _table_ready(rows[2:], expected, "scenes", source="Sixt 2020")
    assert [r["source"] for r in verdict_table(rows).records()] == ["Adebayo 2018", "Adebayo 2018", "Sixt 2020"]


@pytest.mark.parametrize("hits, cosine, expected", [([True] * 8, 1.0, True), ([False] * 8, 0.9, False)])
def test_checks_outcomes(hits, cosine, expected):
    predicted = [{"top5": h, "top1": h} for h in hits]
    rows = imagenet.checks(predicted, {"stage3": cosine})
    assert [r.holds for r in rows] == [expected] * 2 and all(r.noise for r in rows)
    assert check_table(rows).records()[0]["verdict"] == ("passed" if expected else "failed")
    with pytest.raises(ValueError, match="oracle cosine"):
        imagenet.checks(predicted, {})
    scenes = imagenet.Recognition(torch.tensor(hits), torch.tensor(hits), torch.zeros(8), torch.ones(8))
    rows = imagenet.checks(predicted, {"stage3": cosine}, scenes=scenes)
    assert [r.holds for r in rows] == [expected] * 3 and "8 scenes" in rows[1].measured


def test_recognise_follows_the_correct_class_the_model_prefers():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 3.0, 1.0, 2.0, 5.0, 6.0], [4.0, 3.0, 0.0, -1.0, -2.0, -3.0]])

    scenes = data.Scenes(torch.zeros(2, 3, 4, 4), torch.tensor([2, 1]), tuple("abcdef"), correct=((2, 3), (1,)))
    r = imagenet.recognise(Fixed(), scenes)
    assert r.targets.tolist() == [3, 1] and r.top1.tolist() == [False, False] and r.top5.tolist() == [True, True]
    assert r.p_target[0] == pytest.approx(torch.tensor([0.0, 3.0, 1.0, 2.0, 5.0, 6.0]).softmax(0)[3].item())
    assert r.recognised() == [0, 1]


# ---------------------------------------------------------------- side by side

def test_compare_with_fashion_reads_the_other_chapters(tmp_path):
    from zfkit.results import save_results

    row = lambda claim, measured, holds: Verdict(claim, measured, holds, noise="± 0.01 over 5 seeds",  # noqa: E731
                                                 needed=None if holds is not None else "10 seeds")
    save_results("05_x", {"verdicts": verdict_table([row(lite0.INV_STABLE, "a", False), row("only there", "b", True)])},
                 tmp_path)
    save_results("11_imagenet", {"verdicts": verdict_table([row(lite0.INV_STABLE, "c", True)])}, tmp_path)
    (tmp_path / "notes.txt").write_text("not json")
    fashion = imagenet.fashion_verdicts(tmp_path)
    assert fashion == {lite0.INV_STABLE: ("05_x", "not reproduced"), "only there": ("05_x", "reproduced")}
    ours = verdict_table([row(lite0.INV_STABLE, "m", True), row("new here", "n", None)])
    rows = imagenet.compare_with_fashion(ours, fashion)
    assert rows == [{"claim": lite0.INV_STABLE, "chapter": "05_x", "fashion": "not reproduced", "imagenet": "reproduced",
                     "changed": True, "differs": imagenet.REASONS[lite0.INV_STABLE]}]
    table = imagenet.comparison_markdown(rows)
    assert table.splitlines()[0].startswith("| Claim |") and "**yes**" in table
    assert not table.startswith("| Paper's claim |")  # not to be mistaken for a saved verdict table
    with pytest.raises(FileNotFoundError):
        imagenet.fashion_verdicts(tmp_path / "missing")


def test_every_compared_claim_has_a_reason_and_the_fashion_chapters_use_the_same_texts():
    from pathlib import Path

    texts = [lite0.GROUPING, lite0.INVARIANCE, lite0.DROPS, lite0.LOCALISES, lite0.OVERLAP,
             lite0.INV_LAYERS, lite0.INV_LINEAR, lite0.INV_STABLE, lite0.INV_ROTATE, lite0.INV_SYMMETRY,
             lite0.TRANSFER, lite0.SANITY_GUIDED, lite0.SANITY_GRADIENT, lite0.SANITY_DECONV]
    assert set(imagenet.REASONS) == set(texts)
    committed = imagenet.fashion_verdicts(Path(__file__).resolve().parents[1] / "book" / "results")
    assert set(texts) <= set(committed), f"claims the Fashion-MNIST chapters word differently: {set(texts) - set(committed)}"
