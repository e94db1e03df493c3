"""Streaming top-k: for every feature map, the k images that excite it most (Fig. 2's top-9).

One pass over the dataset keeps, per channel, only the k best (value, image, location) so far:
memory is O(channels x k) whatever the dataset size. An image counts once per channel, at its
strongest location, as in the paper's figures. Under ``torchrun`` each rank scans its shard and
the shards' results are merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from . import distributed
from .checks import check_images
from .layers import resolve

__all__ = ["TopK", "topk", "topk_layers", "layer_activations"]


@dataclass
class TopK:
    """Per channel the k strongest activations, strongest first: all tensors are (C, k)."""

    values: torch.Tensor
    indices: torch.Tensor  # image index in the dataset
    ys: torch.Tensor
    xs: torch.Tensor

    def merge(self, other: "TopK", k: int) -> "TopK":
        """The top-k of two partial results (e.g. two batches or two ranks)."""
        k = min(k, self.values.shape[1] + other.values.shape[1])
        values = torch.cat([self.values, other.values], 1)
        order = _stable_top(values, indices=torch.cat([self.indices, other.indices], 1), k=k)
        pick = lambda a, b: torch.cat([a, b], 1).gather(1, order)  # noqa: E731
        return TopK(values.gather(1, order), pick(self.indices, other.indices), pick(self.ys, other.ys), pick(self.xs, other.xs))


def _stable_top(values: torch.Tensor, indices: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k largest values per row; ties go to the smaller image index (deterministic)."""
    order = indices.argsort(dim=1, stable=True)
    by_value = values.gather(1, order).argsort(dim=1, descending=True, stable=True)
    return order.gather(1, by_value)[:, :k]


def layer_activations(model: nn.Module, images: torch.Tensor, layer) -> torch.Tensor:
    """The output of ``layer`` for a batch, running ``model.features`` only as far as needed.

    The batch is checked first: ``model.features`` alone skips the model's own input check, so a
    wrong image would otherwise fail deep inside a convolution, or pass silently as NaN.
    """
    target = resolve(model, layer)
    check_images(images, model)
    if target.part != "features":
        with torch.no_grad():
            captured = {}
            h = target.module.register_forward_hook(lambda m, i, o: captured.setdefault("a", o.clone()))
            try:
                model(images)
            finally:
                h.remove()
        return captured["a"]
    with torch.no_grad():
        return model.features[: target.index + 1](images)


def topk(model: nn.Module, dataset: Dataset, layer, k: int = 9, batch_size: int = 256,
         progress: bool = True) -> TopK:
    """The k strongest activations of every channel of ``layer`` over ``dataset``."""
    resolve(model, layer)  # fail early on an unknown layer
    desc = f"top-{k} {layer if isinstance(layer, str) else 'layer'}"
    return _scan(model, dataset, lambda images: [layer_activations(model, images, layer)], 1, k, batch_size,
                 progress, desc)[0]


def topk_layers(model: nn.Module, dataset: Dataset, layers, k: int = 9, batch_size: int = 256,
                progress: bool = True) -> dict[str, TopK]:
    """:func:`topk` of several layers of ``model.features`` in one pass over ``dataset``: name -> TopK.

    Each batch runs through the features once, up to the highest of ``layers``, and every layer's
    output is taken on the way; separate :func:`topk` calls would run the lower layers again for
    each. The results are those of :func:`topk`, layer by layer.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("topk_layers needs at least one layer")
    targets = [resolve(model, layer) for layer in layers]
    outside = [t.name for t in targets if t.part != "features"]
    if outside:
        raise ValueError(f"topk_layers scans layers of model.features; {', '.join(outside)} lie outside it "
                         "(use topk for those)")
    wanted = {t.index for t in targets}
    last = max(wanted)

    def activations(images: torch.Tensor) -> list[torch.Tensor]:
        check_images(images, model)
        taken = {}
        with torch.no_grad():
            h = images
            for i, module in enumerate(model.features[: last + 1]):
                h = module(h)
                if i in wanted:
                    taken[i] = h
        return [taken[t.index] for t in targets]

    desc = f"top-{k} {', '.join(t.name for t in targets)}"
    found = _scan(model, dataset, activations, len(targets), k, batch_size, progress, desc)
    return {t.name: scan for t, scan in zip(targets, found)}


def _scan(model: nn.Module, dataset: Dataset, activations, count: int, k: int, batch_size: int, progress: bool,
          desc: str) -> list[TopK]:
    """One pass over ``dataset``: ``activations(images)`` gives ``count`` layers' outputs per batch."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} is larger than the dataset ({n} images); use k <= {n}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    joined = distributed.join(torch.device("cpu"))  # a no-op outside torchrun; gloo carries the small merge
    rank, world = joined.rank, joined.size
    shard = range(rank * batch_size, n, batch_size * world)
    was_training = model.training
    model.eval()
    best: list[TopK | None] = [None] * count
    try:
        for start in tqdm(shard, desc=desc, disable=not progress or rank != 0):
            idx = torch.arange(start, min(start + batch_size, n))
            images = _batch(dataset, idx)
            best = [_update(b, acts, idx, k) for b, acts in zip(best, activations(images))]
    finally:
        model.train(was_training)
    if world > 1:
        best = [_merge_ranks(b, k) for b in best]
    return best


def _batch(dataset: Dataset, idx: torch.Tensor) -> torch.Tensor:
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images[idx]
    return torch.stack([dataset[int(i)][0] for i in idx])


def _update(best: TopK | None, acts: torch.Tensor, idx: torch.Tensor, k: int) -> TopK:
    if acts.dim() == 2:  # fully connected: one "location"
        acts = acts[:, :, None, None]
    b, c, h, w = acts.shape
    per_image, where = acts.flatten(2).max(2)  # (B, C): each image's strongest location per channel
    values = per_image.T  # (C, B)
    images = idx[None].expand(c, b)
    take = min(k, b)
    order = _stable_top(values, images, take)
    where = where.T.gather(1, order)
    batch_best = TopK(values.gather(1, order), images.gather(1, order), where // w, where % w)
    return batch_best if best is None else best.merge(batch_best, k)


def _merge_ranks(local: TopK | None, k: int) -> TopK:
    gathered: list[TopK | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    merged = None
    for part in gathered:
        if part is not None:
            merged = part if merged is None else merged.merge(part, k)
    return merged
