"""Safe checkpoints: round trip, hashes that name the damaged file, no unpickling, atomic replace."""

import json
import os
import pickle

import pytest
import torch

from zfkit import models
from zfkit.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(width=0.125):
    return models.variant(models.zfnet_mini(width=width), fc_width=16)


def _trained_state(model):
    """An optimizer with momentum buffers and a scheduler that has seen a few epochs."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
    model(torch.randn(4, 1, 32, 32)).sum().backward()
    opt.step()
    for err in (0.5, 0.6, 0.7):
        sched.step(err)
    return opt, sched


def test_round_trip_restores_everything(tmp_path):
    model = _tiny()
    opt, sched = _trained_state(model)
    save_checkpoint(tmp_path / "ck", model, opt, sched, epoch=3, extra={"history": [{"epoch": 1, "loss": 0.5}]})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.epoch == 3 and ck.extra["history"][0]["loss"] == 0.5
    rebuilt = ck.build()
    # exact: safetensors stores the bytes, so loading is a copy (no arithmetic)
    for (k, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.SGD(rebuilt.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck.optimizer_state)
    for p, q in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(p["momentum_buffer"], q["momentum_buffer"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    sched2 = torch.optim.lr_scheduler.ReduceLROnPlateau(opt2)
    sched2.load_state_dict(ck.scheduler_state)
    assert sched2.state_dict() == sched.state_dict()


def test_files_on_disk_are_safetensors_and_json(tmp_path):
    save_checkpoint(tmp_path / "ck", _tiny(), epoch=1)
    assert sorted(os.listdir(tmp_path / "ck")) == ["meta.json", "model.safetensors", "state.safetensors"]
    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())
    assert set(meta["files"]) == {"model.safetensors", "state.safetensors"}
    assert meta["arch"]["name"] == "zfnet_mini"


@pytest.mark.parametrize("victim", ["model.safetensors", "state.safetensors"])
def test_corrupted_tensor_file_is_named(tmp_path, victim):
    model = _tiny()
    opt, _ = _trained_state(model)
    save_checkpoint(tmp_path / "ck", model, opt, epoch=1)
    path = tmp_path / "ck" / victim
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=victim):
        load_checkpoint(tmp_path / "ck")


def test_truncated_file_and_tampered_metadata_are_detected(tmp_path):
    save_checkpoint(tmp_path / "a", _tiny(), epoch=1)
    model_file = tmp_path / "a" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupted or truncated"):
        load_checkpoint(tmp_path / "a")

    save_checkpoint(tmp_path / "b", _tiny(), epoch=1)
    meta_file = tmp_path / "b" / "meta.json"
    meta_file.write_text(meta_file.read_text().replace('"epoch": 1', '"epoch": 7'))
    with pytest.raises(CheckpointError, match="meta.json is corrupted"):
        load_checkpoint(tmp_path / "b")
    meta_file.write_text("{ not json")
    with pytest.raises(CheckpointError, match="meta.json is corrupted"):
        load_checkpoint(tmp_path / "b")


class _Payload:
    """Unpickling this creates a file: proof that a loader ran foreign code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(evil)
    # the same payload dressed as a checkpoint folder is refused too
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "meta.json").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)
    assert not marker.exists()


def test_missing_and_foreign_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "run" / "last", _tiny(), epoch=1)
    with pytest.raises(CheckpointError, match="latest_checkpoint"):
        load_checkpoint(tmp_path / "run")


def test_other_architecture_is_rejected_naming_the_difference(tmp_path):
    save_checkpoint(tmp_path / "ck", _tiny(0.125), epoch=1)
    ck = load_checkpoint(tmp_path / "ck")
    with pytest.raises(ValueError, match="convs"):
        ck.load_into(_tiny(0.25))
    with pytest.raises(ValueError, match="name: checkpoint has 'zfnet_mini', model has 'alexnet_mini'"):
        ck.load_into(models.variant(models.alexnet_mini(width=0.125), fc_width=16))


def test_architecture_difference_names_each_changed_convolution_field(tmp_path):
    ck = load_checkpoint(save_checkpoint(tmp_path / "ck", models.zfnet_mini(width=0.125), epoch=1))
    with pytest.raises(ValueError) as raised:
        ck.load_into(models.alexnet_mini(width=0.125))
    assert "convs.conv1.kernel: checkpoint has 5, model has 7; convs.conv1.padding: checkpoint has 2, model has 3" \
        in str(raised.value)
    assert "convs.conv3.kernel" not in str(raised.value)  # unchanged layers are not listed
    with pytest.raises(ValueError, match="convs: checkpoint has conv1, conv2, conv3, conv4, conv5, model has conv1, conv2, conv5"):
        ck.load_into(models.variant(models.zfnet_mini(width=0.125), remove=("conv3", "conv4")))


def test_foreign_model_compares_parameter_shapes(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4))
    save_checkpoint(tmp_path / "ck", net, epoch=1)
    ck = load_checkpoint(tmp_path / "ck")
    ck.load_into(torch.nn.Sequential(torch.nn.Linear(3, 4)))
    with pytest.raises(ValueError, match=r"0.weight: checkpoint has \(4, 3\), model has \(5, 3\)"):
        ck.load_into(torch.nn.Sequential(torch.nn.Linear(3, 5)))
    with pytest.raises(CheckpointError, match="not built by zfkit"):
        ck.build()


def test_replacing_is_atomic_and_leaves_no_temporaries(tmp_path):
    model = _tiny()
    save_checkpoint(tmp_path / "last", model, epoch=1)
    save_checkpoint(tmp_path / "last", model, epoch=2)
    assert load_checkpoint(tmp_path / "last").epoch == 2
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_latest_skips_damaged_and_interrupted_checkpoints(tmp_path):
    model = _tiny()
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path / f"epoch_{epoch:03d}", model, epoch=epoch)
    (tmp_path / "epoch_003" / "model.safetensors").write_bytes(b"garbage")
    # a save killed before its rename leaves a complete-looking temporary folder: never used
    save_checkpoint(tmp_path / "x", model, epoch=9)
    os.replace(tmp_path / "x", tmp_path / ".tmp-last-deadbeef")
    # a crash between the two renames of a replace leaves only the parked previous checkpoint
    save_checkpoint(tmp_path / "last.prev", model, epoch=2)
    with pytest.warns(RuntimeWarning, match="epoch_003"):
        ck = latest_checkpoint(tmp_path)
    assert ck.epoch == 2
    assert latest_checkpoint(tmp_path / "missing") is None
