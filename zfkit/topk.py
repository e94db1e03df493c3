"""Streaming top-k: for every feature map, the k images that excite it most (Fig. 2's top-9).

One pass over the dataset keeps, per channel, only the k best (value, image, location) so far:
memory is O(channels x k) whatever the dataset size. An image counts once per channel, at its
strongest location, as in the paper's figures. Under ``torchrun`` each rank scans its shard and
the shards' results are merged. Any model zfkit can trace works (:mod:`zfkit.graph`): each batch
runs only as far as the deepest requested layer, freeing what no later op reads.
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
from .graph import GraphLayer, eval_mode, model_graph

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
    """The output of ``layer`` for a batch, running the model only as far as that layer needs.

    The batch is checked first: a partial forward skips the model's own input check, so a wrong
    image would otherwise fail deep inside a convolution, or pass silently as NaN.
    """
    return _activations(model, images, [model_graph(model).layer(layer)])[0]


def _activations(model: nn.Module, images: torch.Tensor, targets: list[GraphLayer]) -> list[torch.Tensor]:
    """The outputs of ``targets`` for a checked batch: one forward up to the deepest of them."""
    check_images(images, model)
    with torch.no_grad():
        values = model_graph(model).run(images, [t.op for t in targets], keep=False)
    return [values[t.op.node] for t in targets]


def topk(model: nn.Module, dataset: Dataset, layer, k: int = 9, batch_size: int = 256,
         progress: bool = True) -> TopK:
    """The k strongest activations of every channel of ``layer`` over ``dataset``.

    ``layer`` is any name :func:`zfkit.graph.layer_names` lists (or the module); a layer without
    rows and columns (``fc7``) has one location per unit.
    """
    return _scan(model, dataset, [model_graph(model).layer(layer)], k, batch_size, progress)[0]


def topk_layers(model: nn.Module, dataset: Dataset, layers, k: int = 9, batch_size: int = 256,
                progress: bool = True) -> dict[str, TopK]:
    """:func:`topk` of several layers in one pass over ``dataset``: name -> TopK.

    Each batch runs through the model once, up to the deepest of ``layers``, and every layer's
    output is taken on the way; separate :func:`topk` calls would run the lower layers again for
    each. The results are those of :func:`topk`, layer by layer.
    """
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    if not layers:
        raise ValueError("topk_layers needs at least one layer")
    graph = model_graph(model)
    targets = [graph.layer(layer) for layer in layers]
    return {t.name: scan for t, scan in zip(targets, _scan(model, dataset, targets, k, batch_size, progress))}


def _scan(model: nn.Module, dataset: Dataset, targets: list[GraphLayer], k: int, batch_size: int,
          progress: bool) -> list[TopK]:
    """One pass over ``dataset``, each batch's forward pass taking every target layer's output."""
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
    best: list[TopK | None] = [None] * len(targets)
    desc = f"top-{k} {', '.join(t.name for t in targets)}"
    with eval_mode(model):
        for start in tqdm(shard, desc=desc, disable=not progress or rank != 0):
            idx = torch.arange(start, min(start + batch_size, n))
            outputs = _activations(model, _batch(dataset, idx), targets)
            best = [_update(b, _units(acts, t.name), idx, k) for b, acts, t in zip(best, outputs, targets)]
    if world > 1:
        best = [_merge_ranks(b, k) for b in best]
    return best


def _batch(dataset: Dataset, idx: torch.Tensor) -> torch.Tensor:
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images[idx]
    return torch.stack([dataset[int(i)][0] for i in idx])


def _units(acts, name: str) -> torch.Tensor:
    """A layer's output as (B, C, H, W); a fully connected layer's (B, C) has one location per unit."""
    if isinstance(acts, torch.Tensor) and acts.dim() == 2:
        return acts[:, :, None, None]
    if not isinstance(acts, torch.Tensor) or acts.dim() != 4:
        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
        raise ValueError(f"layer {name!r} outputs {shape}; topk ranks units of (B, C) or (B, C, H, W) outputs: "
                         "pick a layer or block that returns one such tensor")
    return acts


def _update(best: TopK | None, acts: torch.Tensor, idx: torch.Tensor, k: int) -> TopK:
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
