"""fit(): the paper's recipe, its checkpoints, exact resume, bad input, and the CUDA plan."""

import csv

import pytest
import torch
from torch import nn

from zfkit import models, train
from zfkit.data import TensorImages
from zfkit.train import Recipe, fit, load_checkpoint

CLASSES = tuple(str(i) for i in range(10))


def fake_images(n, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g), CLASSES)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return models.variant(models.zfnet_mini(width=0.125), fc_width=16)


def tiny_recipe(**kw):
    """fp32 unless asked: "auto" would pick bf16 on some CPUs, and these tests check fit, not the CPU."""
    return Recipe(**{"epochs": 2, "batch_size": 16, "lr": 0.05, "eval_batch_size": 32, "device": "cpu",
                     "precision": "fp32", **kw})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return fake_images(56), fake_images(24, seed=1)


def _weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- the recipe

@pytest.mark.parametrize("field, value", [("lr", 0), ("lr", -0.01), ("lr", float("nan")), ("batch_size", 0),
                                          ("batch_size", -128), ("batch_size", 12.5), ("epochs", 0),
                                          ("momentum", 1.0), ("clip_radius", 0), ("weight_decay", -1e-4),
                                          ("plateau_factor", 1.0), ("max_shift", -1), ("seed", -1)])
def test_recipe_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"Recipe.{field}"):
        Recipe(**{field: value})


def test_recipe_defaults_are_the_papers():
    r = Recipe()
    assert (r.lr, r.momentum, r.batch_size, r.clip_radius, r.feature_scale_clipping) == (1e-2, 0.9, 128, 0.1, True)


@pytest.mark.parametrize("epochs, expected", [
    (70, (1, 2, 5, 10, 20, 30, 40, 64, 70)),
    (10, (1, 3, 4, 6, 9, 10)),
    (2, (1, 2)),
    (1, (1,)),
])
def test_checkpoint_epochs_scale_the_papers_schedule(epochs, expected):
    assert Recipe(epochs=epochs).checkpoint_epochs == expected


# ---------------------------------------------------------------- clipping and augmentation

def test_clipping_rescales_only_filters_above_the_radius():
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([torch.full((2, 3, 3), v) for v in (0.05, 0.1, 0.4)]))
    before = conv.weight.detach().clone()
    train.clip_filters(nn.Sequential(conv), radius=0.1)
    rms = conv.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(rms, torch.tensor([0.05, 0.1, 0.1]))
    assert torch.equal(conv.weight[:2], before[:2])


def _naive_translate_flip(image, dy, dx, flip, m):
    padded = nn.functional.pad(image, (m, m, m, m))
    h, w = image.shape[-2:]
    out = padded[:, m - dy:m - dy + h, m - dx:m - dx + w]
    return out.flip(-1) if flip else out


def test_translate_flip_matches_a_per_image_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, 8, 8, generator=g)
    shifts = torch.randint(-2, 3, (20, 2), generator=g)
    flips = torch.rand(20, generator=g) < 0.5
    got = train.translate_flip(x, shifts, flips, 2)
    for i in range(20):
        assert torch.equal(got[i], _naive_translate_flip(x[i], *shifts[i].tolist(), bool(flips[i]), 2))


def test_translate_moves_content_down_and_right():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    out = train.translate_flip(x, torch.tensor([[1, -2]]), torch.tensor([False]), 2)
    assert out[0, 0, 3, 0] == 1 and out.sum() == 1


# ---------------------------------------------------------------- device selection (no GPU needed)

def _gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def _cpu_bf16_units(monkeypatch, fast: bool) -> None:
    monkeypatch.setattr(train, "cpu_has_fast_bf16", lambda: fast)


def test_auto_device_picks_cuda_with_bf16_and_channels_last(monkeypatch):
    _gpus(monkeypatch, 2)
    plan = train.plan_device("auto", local_rank=1)
    assert plan.device == torch.device("cuda:1")
    assert plan.autocast_dtype == torch.bfloat16 and plan.memory_format == torch.channels_last
    assert train.plan_device("cuda").device == torch.device("cuda:0")


def test_auto_device_falls_back_to_the_cpu_channels_last(monkeypatch):
    _gpus(monkeypatch, 0)
    plan = train.plan_device("auto")
    assert plan.device == torch.device("cpu")
    assert plan.memory_format == torch.channels_last  # measured faster on the CPU as well


def test_unusable_devices_are_refused_with_the_fix(monkeypatch):
    _gpus(monkeypatch, 0)
    with pytest.raises(ValueError, match="CUDA is not available here; use 'auto'"):
        train.plan_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        train.plan_device("gpu-please")
    _gpus(monkeypatch, 2)
    with pytest.raises(ValueError, match=r"'cuda:2' but this machine has 2 GPU\(s\), cuda:0 … cuda:1"):
        train.plan_device("cuda:2")


def test_fit_on_cuda_without_cuda_fails_before_training(tmp_path, data, monkeypatch):
    _gpus(monkeypatch, 0)
    with pytest.raises(ValueError, match="Recipe.device is 'cuda:0' but CUDA is not available"):
        fit(tiny_model(), *data, tiny_recipe(device="cuda"), tmp_path, progress=False)
    assert not (tmp_path / "metrics.csv").exists()


@pytest.mark.parametrize("gpus, device, fast_cpu, precision, bf16", [
    (1, "auto", False, "auto", True),  # CUDA: bf16
    (0, "auto", True, "auto", True),  # a CPU with bf16 units (AVX512-BF16 / AMX): bf16
    (0, "auto", False, "auto", False),  # a CPU without: fp32
    (1, "cpu", False, "auto", False),  # the CPU's rule, even beside a GPU
    (0, "cpu", False, "bf16", True),  # explicit choices win
    (0, "cpu", True, "fp32", False),
    (1, "cuda", True, "fp32", False),
])
def test_precision_auto_uses_bf16_where_it_is_faster(monkeypatch, gpus, device, fast_cpu, precision, bf16):
    _gpus(monkeypatch, gpus)
    _cpu_bf16_units(monkeypatch, fast_cpu)
    assert train.plan_device(device, precision=precision).autocast_dtype == (torch.bfloat16 if bf16 else None)


@pytest.mark.parametrize("caps, fast", [({"avx512_bf16": True}, True), ({"amx_bf16": True, "avx512_bf16": False}, True),
                                        ({"avx512_f": True, "avx512_bf16": False}, False), ({"bf16": True}, False)],
                         ids=["avx512-bf16", "amx", "avx512-without-bf16", "arm-bf16-unmeasured"])
def test_fast_bf16_needs_bf16_matrix_instructions(monkeypatch, caps, fast):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert train.cpu_has_fast_bf16.__wrapped__() is fast


def test_fast_bf16_needs_onednn(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert train.cpu_has_fast_bf16.__wrapped__() is False


@pytest.mark.parametrize("env, allowed", [
    ({}, True), ({"ONEDNN_MAX_CPU_ISA": "ALL"}, True), ({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False), ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, False),
    ({"DNNL_MAX_CPU_ISA": "AVX2"}, False), ({"DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "ALL"}, True),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, True),  # caps ATen's element-wise kernels, not oneDNN's: measured no loss
])
def test_a_onednn_cap_below_its_bf16_instructions_means_fp32(env, allowed):
    assert train._onednn_allows_bf16(env) is allowed


def test_bf16_recipe_trains_on_the_cpu_and_keeps_fp32_weights(tmp_path, data, monkeypatch):
    """"auto" is fp32 or bf16 bit for bit, as the CPU's units decide; bf16 really autocasts, into fp32 weights."""
    runs = {p: fit(tiny_model(), *data, tiny_recipe(epochs=1, precision=p), tmp_path / p, progress=False).model
            for p in ("fp32", "bf16")}
    assert not _weights_equal(runs["bf16"], runs["fp32"])
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in runs["bf16"].parameters())
    for fast, same_as in ((False, "fp32"), (True, "bf16")):
        _cpu_bf16_units(monkeypatch, fast)
        auto = fit(tiny_model(), *data, tiny_recipe(epochs=1, precision="auto"), tmp_path / f"auto-{fast}",
                   progress=False).model
        assert _weights_equal(auto, runs[same_as])


def test_evaluation_by_device_name_stays_fp32_on_a_bf16_cpu(monkeypatch):
    _cpu_bf16_units(monkeypatch, True)
    model, images = tiny_model().eval(), fake_images(8)
    fp32 = train.DevicePlan(torch.device("cpu"), None, channels_last=True)
    assert train.evaluate(model, images, device="cpu") == train.evaluate(model, images, device=fp32)


def test_the_book_recipe_leaves_precision_to_the_machine():
    from zfkit import profiles

    assert profiles.BOOK_RECIPE["precision"] == "auto"
    assert profiles.get("paper").device == "auto"  # a GPU when there is one, the CPU otherwise


def test_gpu_code_path_runs_on_cpu(tmp_path, data, monkeypatch):
    """bf16 autocast + channels_last, the CUDA plan, exercised on the CPU (autocast supports both)."""
    gpu_like = train.DevicePlan(torch.device("cpu"), torch.bfloat16, channels_last=True)
    monkeypatch.setattr(train, "plan_device", lambda *args, **kw: gpu_like)
    result = fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, progress=False)
    assert result.model.features.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert load_checkpoint(tmp_path / "last").epoch == 1


# ---------------------------------------------------------------- fit

def test_fit_writes_metrics_and_scheduled_checkpoints(tmp_path, data):
    result = fit(tiny_model(), *data, tiny_recipe(epochs=3), tmp_path, checkpoints=[2], progress=False)
    rows = _rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == list(train.METRICS_COLUMNS)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0 <= float(r["val_top1_err"]) <= 1 and float(r["images_per_s"]) > 0 for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_002", "last", "metrics.csv"]
    ck = load_checkpoint(result.checkpoint())
    assert ck.epoch == 3 and ck.extra["recipe"]["lr"] == 0.05
    assert _weights_equal(ck.build(), result.model)


def test_fit_is_deterministic(tmp_path, data):
    a = fit(tiny_model(), *data, tiny_recipe(), tmp_path / "a", progress=False)
    b = fit(tiny_model(), *data, tiny_recipe(), tmp_path / "b", progress=False)
    assert _weights_equal(a.model, b.model)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    assert strip(a.history) == strip(b.history)


def test_resume_after_an_epoch_is_bit_identical(tmp_path, data):
    whole = fit(tiny_model(), *data, tiny_recipe(), tmp_path / "whole", progress=False)
    fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path / "split", progress=False)
    fresh = tiny_model(seed=123)  # different initial weights: everything must come from the checkpoint
    resumed = fit(fresh, *data, tiny_recipe(), tmp_path / "split", resume=True, progress=False)
    assert _weights_equal(whole.model, resumed.model)
    assert [r["epoch"] for r in _rows(tmp_path / "split" / "metrics.csv")] == ["1", "2"]
    assert [r["val_loss"] for r in whole.history] == [r["val_loss"] for r in resumed.history]


@pytest.mark.parametrize("final_anneal", [0, 1], ids=["plateau-only", "crash-in-the-annealed-epoch"])
def test_resume_after_a_crash_mid_epoch_is_bit_identical(tmp_path, data, monkeypatch, final_anneal):
    recipe = tiny_recipe(epochs=3, final_anneal_epochs=final_anneal)
    whole = fit(tiny_model(), *data, recipe, tmp_path / "whole", progress=False)
    real_clip, calls = train.clip_filters, []

    def crash_in_epoch_3(model, radius):
        calls.append(1)
        if len(calls) == 9:  # 4 steps per epoch: the first step of epoch 3
            raise KeyboardInterrupt
        real_clip(model, radius)

    monkeypatch.setattr(train, "clip_filters", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(), *data, recipe, tmp_path / "crash", progress=False)
    monkeypatch.setattr(train, "clip_filters", real_clip)
    (tmp_path / "crash" / ".tmp-last-0badc0de").mkdir()  # what a kill during a save leaves behind
    resumed = fit(tiny_model(), *data, recipe, tmp_path / "crash", resume=True, progress=False)
    assert _weights_equal(whole.model, resumed.model)
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in whole.history]
    assert not list((tmp_path / "crash").glob(".tmp-*"))


def test_final_anneal_divides_the_rate_for_the_last_epochs(tmp_path, data):
    """Patience too long for the plateau rule to fire: only the final anneal changes the rate."""
    run = fit(tiny_model(), *data, tiny_recipe(epochs=4, final_anneal_epochs=2, plateau_patience=99,
                                               plateau_factor=0.5), tmp_path, progress=False)
    assert [r["lr"] for r in run.history] == [0.05, 0.05, 0.025, 0.025]
    assert [float(r["lr"]) for r in _rows(tmp_path / "metrics.csv")] == [0.05, 0.05, 0.025, 0.025]


def test_final_anneal_does_not_stack_on_a_plateau_anneal(tmp_path, data, monkeypatch):
    """Validation never improves: the plateau rule halves the rate after epochs 2 and 3. The final
    anneal (from epoch 3) finds the rate already at factor x lr and leaves it."""
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"loss": 1.0, "top1_err": 0.5, "top5_err": 0.1})
    run = fit(tiny_model(), *data, tiny_recipe(epochs=4, final_anneal_epochs=2, plateau_patience=0,
                                               plateau_factor=0.5), tmp_path, progress=False)
    assert [r["lr"] for r in run.history] == [0.05, 0.05, 0.025, 0.0125]


def test_final_anneal_must_leave_an_epoch_at_the_starting_rate():
    with pytest.raises(ValueError, match="final_anneal_epochs .3. must be smaller than epochs .3."):
        Recipe(epochs=3, final_anneal_epochs=3)
    with pytest.raises(ValueError, match="Recipe.final_anneal_epochs"):
        Recipe(final_anneal_epochs=-1)


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, data):
    fit(tiny_model(), *data, tiny_recipe(), tmp_path / "whole", progress=False)
    run = tmp_path / "run"
    fit(tiny_model(), *data, tiny_recipe(epochs=2), run, checkpoints=[1], progress=False)
    (run / "last" / "model.safetensors").write_bytes(b"\0" * 10)  # epoch 2 damaged: resume from epoch_001
    with pytest.warns(RuntimeWarning, match="last"):
        resumed = fit(tiny_model(), *data, tiny_recipe(), run, resume=True, progress=False)
    assert _weights_equal(resumed.model, load_checkpoint(tmp_path / "whole" / "last").build())


def test_resume_with_nothing_to_resume_starts_afresh(tmp_path, data):
    result = fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1]


def test_resume_refuses_a_different_recipe(tmp_path, data):
    fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.1"):
        fit(tiny_model(), *data, tiny_recipe(lr=0.1), tmp_path, resume=True, progress=False)


def test_resume_refuses_another_architecture(tmp_path, data):
    fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, progress=False)
    other = models.variant(models.zfnet_mini(width=0.125), fc_width=32)
    with pytest.raises(ValueError, match="different architecture: fc_widths"):
        fit(other, *data, tiny_recipe(), tmp_path, resume=True, progress=False)


def test_existing_run_is_not_overwritten(tmp_path, data):
    fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(tiny_model(), *data, tiny_recipe(epochs=1), tmp_path, progress=False)


class _ExplodesLater(nn.Module):
    """Wraps a model; its training forward returns NaN from the ``after``-th call on."""

    def __init__(self, inner, after):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                return out * float("nan")
        return out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data):
    model = _ExplodesLater(tiny_model(), after=6)  # epoch 1 has 4 steps: fails in epoch 2
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 2, step 2"):
        fit(model, *data, tiny_recipe(), tmp_path, progress=False)
    ck = load_checkpoint(tmp_path / "last")
    assert ck.epoch == 1
    assert all(torch.isfinite(v).all() for v in ck.model_state.values())
    assert [r["epoch"] for r in _rows(tmp_path / "metrics.csv")] == ["1"]


def test_huge_learning_rate_diverges_with_a_clear_error(tmp_path, data):
    with pytest.raises(FloatingPointError, match="Lower Recipe.lr"):
        fit(tiny_model(), *data, tiny_recipe(lr=1e12, feature_scale_clipping=False), tmp_path, progress=False)


def test_unwritable_out_dir_fails_before_training(tmp_path, data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write to out_dir"):
        fit(tiny_model(), *data, tiny_recipe(), blocker / "run", progress=False)


@pytest.mark.parametrize("which", ["train", "val"])
@pytest.mark.parametrize("bad", [None, fake_images(0)])
def test_missing_or_empty_data_is_refused(tmp_path, data, which, bad):
    train_set, val_set = (bad, data[1]) if which == "train" else (data[0], bad)
    role = "training" if which == "train" else "validation"
    with pytest.raises(ValueError, match=f"{role} dataset is (missing|empty)"):
        fit(tiny_model(), train_set, val_set, tiny_recipe(), tmp_path, progress=False)


def test_bad_checkpoint_epochs_are_refused(tmp_path, data):
    with pytest.raises(ValueError, match="between 1 and 2"):
        fit(tiny_model(), *data, tiny_recipe(), tmp_path, checkpoints=[0, 3], progress=False)


class _Plain(torch.utils.data.Dataset):
    """A dataset that is not in memory as tensors: exercises fit's DataLoader path."""

    def __init__(self, images):
        self.images_ = images

    def __len__(self):
        return len(self.images_)

    def __getitem__(self, i):
        return self.images_.images[i], int(self.images_.targets[i])


def test_generic_datasets_train_like_tensor_datasets(tmp_path, data):
    recipe = tiny_recipe(augment=False)
    fast = fit(tiny_model(), *data, recipe, tmp_path / "fast", progress=False)
    plain = fit(tiny_model(), _Plain(data[0]), _Plain(data[1]), recipe, tmp_path / "plain", progress=False)
    assert _weights_equal(fast.model, plain.model)


# ---------------------------------------------------------------- evaluation

def test_ten_crop_evaluation_averages_the_softmax_of_ten_views():
    from zfkit.data import ten_crop
    from zfkit.models import init_he

    model = tiny_model().eval()
    init_he(model)  # the paper's init gives near-uniform outputs: ties would make top-1 ambiguous
    images = fake_images(6, size=36)
    got = train.evaluate(model, images, batch_size=4, device="cpu", ten_crop=32)
    with torch.no_grad():
        views = ten_crop(images.images, 32)
        probs = torch.stack([model(views[:, i]).softmax(1) for i in range(10)]).mean(0)
    loss = nn.functional.nll_loss(probs.log(), images.targets).item()
    top1 = (probs.argmax(1) != images.targets).float().mean().item()
    assert got["loss"] == pytest.approx(loss, rel=1e-5) and got["top1_err"] == pytest.approx(top1)


def test_ten_crop_of_a_constant_image_equals_plain_evaluation():
    model = tiny_model().eval()
    constant = TensorImages(torch.ones(3, 1, 36, 36), torch.tensor([1, 2, 3]), CLASSES)
    centre = TensorImages(torch.ones(3, 1, 32, 32), torch.tensor([1, 2, 3]), CLASSES)
    a = train.evaluate(model, constant, device="cpu", ten_crop=32)
    b = train.evaluate(model, centre, device="cpu")
    assert a == pytest.approx(b, rel=1e-5)


def test_per_image_errors_mark_the_images_evaluate_counts():
    from zfkit.models import init_he

    model = tiny_model()
    init_he(model)  # the paper's init gives near-uniform outputs: ties would make top-1 ambiguous
    images = fake_images(23)
    got = train.per_image_errors(model, images, top=(5, 1), batch_size=4, device="cpu")
    assert model.training  # scored in eval mode, the caller's mode restored
    rates = train.evaluate(model, images, batch_size=4, device="cpu")
    assert sorted(got) == [1, 5] and got[1].dtype == torch.bool and got[1].shape == (23,)
    assert got[1].double().mean().item() == pytest.approx(rates["top1_err"])
    assert got[5].double().mean().item() == pytest.approx(rates["top5_err"])
    assert bool((got[5] <= got[1]).all())  # missing the top 5 means missing the top 1
    with torch.no_grad():
        wrong = model.eval()(images.images).argmax(1) != images.targets
    assert torch.equal(got[1], wrong)  # image by image, in dataset order


def test_per_image_errors_refuse_a_bad_top():
    with pytest.raises(ValueError, match="top must list positive ints"):
        train.per_image_errors(tiny_model(), fake_images(4), top=(0,))
