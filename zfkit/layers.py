"""Finding a layer by the paper's name or by module, in zfkit and torchvision models alike.

The paper's "conv5" is the *rectified* output of the fifth convolution, so a convolution (or a
fully connected layer) that is directly followed by a ReLU resolves to that ReLU. Torchvision's
AlexNet and VGG use in-place ReLUs, so a hook on their ``Conv2d`` would see the rectified values
anyway; resolving to the ReLU makes both kinds of model mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["Layer", "resolve", "layer_names"]


@dataclass(frozen=True)
class Layer:
    """A resolved layer: where it lives and which module's output holds its activations."""

    name: str  # the paper's name (zfkit models) or the dotted module path (other models)
    module: nn.Module  # the module whose *output* is the layer's activation
    part: str  # "features" or "classifier"
    index: int  # position of ``module`` inside ``model.<part>``


def _parts(model: nn.Module) -> list[tuple[str, nn.Sequential]]:
    parts = [(p, getattr(model, p)) for p in ("features", "classifier") if isinstance(getattr(model, p, None), nn.Sequential)]
    if not parts:
        raise ValueError(
            f"{type(model).__name__} has no nn.Sequential 'features' attribute; zfkit analyses models laid out "
            "like torchvision's AlexNet/VGG (model.features, model.classifier) or built by zfkit.models"
        )
    return parts


def layer_names(model: nn.Module) -> list[str]:
    """Names accepted by :func:`resolve`, in forward order."""
    names = []
    for part, seq in _parts(model):
        names += [n if _is_named(seq) else f"{part}.{n}" for n, _ in seq.named_children()]
    return names


def _is_named(seq: nn.Sequential) -> bool:
    return not all(n.isdigit() for n, _ in seq.named_children())


def resolve(model: nn.Module, layer: str | nn.Module) -> Layer:
    """Turn ``layer`` (a name such as ``"conv5"`` or a module inside the model) into a :class:`Layer`."""
    for part, seq in _parts(model):
        children = list(seq.named_children())
        for i, (child_name, child) in enumerate(children):
            name = child_name if _is_named(seq) else f"{part}.{child_name}"
            if (isinstance(layer, str) and layer == name) or (isinstance(layer, nn.Module) and layer is child):
                # a conv/fc followed by a ReLU means its rectified output
                if isinstance(child, (nn.Conv2d, nn.Linear)) and i + 1 < len(children) and isinstance(children[i + 1][1], nn.ReLU):
                    return Layer(name, children[i + 1][1], part, i + 1)
                return Layer(name, child, part, i)
    if isinstance(layer, nn.Module):
        raise ValueError(
            f"the module {type(layer).__name__} is not a direct child of model.features or model.classifier; "
            "pass one of those modules (e.g. model.features[10]) or a layer name"
        )
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a layer name or an nn.Module, got {type(layer).__name__}")
    raise ValueError(f"unknown layer {layer!r}; this model's layers are: {', '.join(layer_names(model))}")
