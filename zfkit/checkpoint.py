"""Checkpoints that are safe to load from strangers and survive a kill at any instant.

A checkpoint is a folder holding three files:

- ``model.safetensors``: the model's weights (safetensors cannot carry code);
- ``state.safetensors``: every other tensor (the optimizer's momentum buffers);
- ``meta.json``: epoch, architecture (``ArchSpec.to_dict()``), the optimizer/scheduler state with
  its tensors replaced by references into ``state.safetensors``, free-form ``extra``, the SHA-256
  of both tensor files, and a SHA-256 of its own content.

Nothing is ever unpickled, so a checkpoint cannot run code when loaded. The folder is written
under a temporary name beside its destination and renamed into place only once complete (a
rename within one file system is atomic), so a reader sees either the old checkpoint or the new
one, never half of one. A hash mismatch names the damaged file, and :func:`latest_checkpoint`
skips damaged checkpoints with a warning so that a resume falls back to the newest intact one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from .models import ArchSpec, ConvNet
from .storage import TMP_PREFIX, atomic_write_bytes, fsync_dir, write_durably

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "atomic_write_bytes",
    "arch_differences",
]

FORMAT = "zfkit-checkpoint"
VERSION = 1
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "state.safetensors", "meta.json"
_PREV_SUFFIX = ".prev"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or not a zfkit checkpoint (the message names the file)."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: everything needed to rebuild or resume a run."""

    path: Path
    epoch: int
    model_state: dict[str, torch.Tensor]
    arch: dict | None  # ArchSpec.to_dict() of a zfkit model, None for other models
    optimizer_state: dict | None = None
    scheduler_state: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def spec(self) -> ArchSpec:
        if self.arch is None:
            raise CheckpointError(f"{self.path} holds a model not built by zfkit.models; load its weights into "
                                  "your own instance with checkpoint.load_into(model)")
        return ArchSpec.from_dict(self.arch)

    def build(self) -> ConvNet:
        """A fresh zfkit model of the saved architecture, holding the saved weights."""
        model = ConvNet(self.spec)
        model.load_state_dict(self.model_state)
        return model

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the weights into ``model`` after checking that its architecture is the saved one."""
        differences = arch_differences(self, model)
        if differences:
            raise ValueError(f"checkpoint {self.path} was saved from a different architecture: "
                             + "; ".join(differences))
        model.load_state_dict(self.model_state)
        return model


def arch_differences(checkpoint: Checkpoint, model: nn.Module) -> list[str]:
    """Human-readable differences between the saved architecture and ``model`` (empty when equal)."""
    spec = getattr(model, "spec", None)
    if checkpoint.arch is not None and isinstance(spec, ArchSpec):
        current = _jsonable(spec.to_dict())
        differences = []
        for k in sorted(set(current) | set(checkpoint.arch)):
            saved, ours = checkpoint.arch.get(k), current.get(k)
            if saved != ours:
                differences += _conv_differences(saved, ours) if k == "convs" else \
                    [f"{k}: checkpoint has {saved!r}, model has {ours!r}"]
        return differences
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint.model_state.items()}
    return [f"parameter {k}: checkpoint has {saved.get(k)}, model has {ours.get(k)}"
            for k in sorted(set(ours) | set(saved)) if ours.get(k) != saved.get(k)]


def _conv_differences(saved: list[dict] | None, ours: list[dict] | None) -> list[str]:
    """Per convolution and field (``convs.conv1.kernel: …``): the whole lists would bury the difference."""
    names = lambda convs: [c.get("name") for c in convs or []]  # noqa: E731
    if names(saved) != names(ours):
        return [f"convs: checkpoint has {', '.join(map(str, names(saved)))}, model has {', '.join(map(str, names(ours)))}"]
    return [f"convs.{a['name']}.{f}: checkpoint has {a.get(f)!r}, model has {b.get(f)!r}"
            for a, b in zip(saved, ours) for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]


# ---------------------------------------------------------------- saving

def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int = 0,
    extra: Mapping | None = None,
) -> Path:
    """Write a checkpoint folder at ``path`` atomically (an existing one is replaced) and return it.

    ``extra`` must be JSON-able (recipe, metrics history, …); tensors inside the optimizer and
    scheduler states go to ``state.safetensors``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors: dict[str, torch.Tensor] = {}
    state = {
        "optimizer": _encode(optimizer.state_dict(), "optimizer", tensors) if optimizer is not None else None,
        "scheduler": _encode(scheduler.state_dict(), "scheduler", tensors) if scheduler is not None else None,
    }
    files = {
        MODEL_FILE: save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}),
        STATE_FILE: save_tensors(tensors),
    }
    spec = getattr(model, "spec", None)
    body = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "arch": spec.to_dict() if isinstance(spec, ArchSpec) else None,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "state": state,
        "extra": _jsonable(dict(extra or {})),
    }
    meta = json.dumps({**body, "sha256": _digest(body)}, indent=1, allow_nan=True).encode()

    tmp = path.parent / f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for name, data in files.items():  # data first, metadata last
            write_durably(tmp / name, data)
        write_durably(tmp / META_FILE, meta)
        _swap_into_place(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is parked as ``<name>.prev`` meanwhile.

    A folder cannot be renamed over a non-empty one, so replacing takes two renames; a crash
    between them leaves the complete old checkpoint as ``.prev``, which :func:`latest_checkpoint`
    still finds.
    """
    prev = path.with_name(path.name + _PREV_SUFFIX)
    if path.exists():
        shutil.rmtree(prev, ignore_errors=True)
        os.replace(path, prev)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(prev, ignore_errors=True)


# ---------------------------------------------------------------- loading

def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint folder (or its ``meta.json``). Never unpickles anything.

    Raises :class:`~zfkit.checkpoint.CheckpointError` (a ``ValueError``) naming the file when a hash does not match,
    a file is missing or truncated, or ``path`` is not a zfkit checkpoint (e.g. a pickled ``.pt``).
    """
    path = Path(path)
    if path.name == META_FILE:
        path = path.parent
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a zfkit checkpoint (a folder with {META_FILE}, {MODEL_FILE}, {STATE_FILE}); "
            "zfkit never unpickles .pt/.pth files because unpickling can run arbitrary code"
        )
    meta_path = path / META_FILE
    if not meta_path.is_file():
        hint = " (it holds checkpoints: use zfkit.checkpoint.latest_checkpoint(run_dir))" if any(
            (p / META_FILE).is_file() for p in path.iterdir() if p.is_dir()) else ""
        raise CheckpointError(f"{path} is not a zfkit checkpoint: {META_FILE} is missing{hint}")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path} is corrupted (not valid JSON: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not zfkit checkpoint metadata")
    body = {k: v for k, v in meta.items() if k != "sha256"}
    if meta.get("sha256") != _digest(body):
        raise CheckpointError(f"{meta_path} is corrupted: its SHA-256 does not match its content")
    if meta["version"] != VERSION:
        raise CheckpointError(f"{meta_path} has format version {meta['version']}; this zfkit reads version {VERSION}")

    tensors = {}
    for name, expected in meta["files"].items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"checkpoint file {file} is corrupted or truncated: its SHA-256 does not match "
                                  f"the one recorded in {meta_path}")
        tensors[name] = load_tensors(data)
    state, stored = meta["state"], tensors[STATE_FILE]
    return Checkpoint(
        path=path,
        epoch=meta["epoch"],
        model_state=tensors[MODEL_FILE],
        arch=meta["arch"],
        optimizer_state=_decode(state["optimizer"], stored),
        scheduler_state=_decode(state["scheduler"], stored),
        extra=meta["extra"],
    )


def latest_checkpoint(run_dir: str | os.PathLike) -> Checkpoint | None:
    """The valid checkpoint with the highest epoch in ``run_dir`` (None when there is none).

    Damaged checkpoints are skipped with a warning naming them, so a resume falls back to the
    newest intact one. Temporary folders of an interrupted save are ignored.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    folders = [f for f in run_dir.iterdir()
               if f.is_dir() and not f.name.startswith(TMP_PREFIX) and (f / META_FILE).exists()]
    for folder in sorted(folders, key=lambda f: (_claimed_epoch(f), f.name), reverse=True):
        try:
            return load_checkpoint(folder)  # verifies the hashes: newest first, stop at the first intact one
        except (CheckpointError, OSError, KeyError, TypeError) as e:
            warnings.warn(f"skipping damaged checkpoint {folder}: {e}", RuntimeWarning, stacklevel=2)
    return None


def _claimed_epoch(folder: Path) -> int:
    """The epoch a checkpoint's metadata claims, unverified (-1 when unreadable): only for ordering."""
    try:
        return int(json.loads((folder / META_FILE).read_bytes())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


# ---------------------------------------------------------------- nested state <-> JSON + tensors

def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``obj``; tensors move to ``tensors`` and leave a reference behind.

    Dicts with non-string keys (optimizer state is keyed by parameter index) and tuples are
    tagged so that :func:`_decode` restores them exactly.
    """
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key} in a checkpoint")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    """Tuples become lists, as they will after a JSON round trip (so comparisons are like for like)."""
    return json.loads(json.dumps(obj, allow_nan=True))


def _digest(body: Mapping) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()
