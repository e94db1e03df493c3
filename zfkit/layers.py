"""Where a layer sits, and which op returns the logits: small readings of :mod:`zfkit.graph`.

Layer names are resolved by :mod:`zfkit.graph` for every model. :func:`resolve` adds, for the
paper's sequential nets (zfkit's, torchvision's AlexNet/VGG), *where* the resolved layer sits in
``model.features`` or ``model.classifier``: the incremental occlusion engine recomputes
``model.features`` module by module and needs that index. "conv5" still means the rectified
output (the ReLU after the fifth convolution), as :meth:`zfkit.graph.ModelGraph.layer` decides.
:func:`output_op` finds the logits, which engines take from the same forward pass as a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from .graph import ModelGraph, Op, layer_names, model_graph

__all__ = ["Layer", "resolve", "layer_names", "output_op"]


@dataclass(frozen=True)
class Layer:
    """A resolved layer: where it lives and which module's output holds its activations."""

    name: str  # the paper's name (zfkit models) or the dotted module path (other models)
    module: nn.Module  # the module whose *output* is the layer's activation
    part: str  # "features" or "classifier"
    index: int  # position of ``module`` inside ``model.<part>``


def resolve(model: nn.Module, layer: str | nn.Module) -> Layer:
    """``layer`` (a name such as ``"conv5"`` or a module) as a direct child of ``model.features`` or
    ``model.classifier``; ValueError for an unknown layer or one that lies elsewhere in the model."""
    target = model_graph(model).layer(layer)
    path = str(target.op.node.target) if target.op.module is not None else ""
    part, _, child = path.partition(".")
    seq = getattr(model, part, None) if part in ("features", "classifier") else None
    names = [n for n, _ in seq.named_children()] if isinstance(seq, nn.Sequential) else []
    if child not in names:
        raise ValueError(f"layer {target.name!r} ({path or target.op.where}) is not a direct child of model.features "
                         "or model.classifier; zfkit.layers.resolve places layers of the paper's sequential nets only "
                         "(the analyses themselves take any layer zfkit.graph.layer_names lists)")
    return Layer(target.name, target.op.module, part, names.index(child))


def output_op(graph: ModelGraph) -> Op:
    """The op whose value the model's ``forward`` returns (its logits, for a classifier)."""
    returned = next(n for n in graph.module.graph.nodes if n.op == "output").args[0]
    if not isinstance(returned, fx.Node) or returned not in graph.position:
        raise ValueError(f"{type(graph.model).__name__} returns {type(returned).__name__}, not one tensor of logits "
                         "(B, classes); zfkit's analyses need a classifier")
    return graph.ops[graph.position[returned]]
