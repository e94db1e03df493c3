"""zfkit: see inside a convnet the way Zeiler & Fergus (ECCV 2014) did, on any image CNN.

The analyses, re-exported here Captum-style (``zfkit.Deconvnet(model)``, ``zfkit.occlusion(...)``):
the deconvnet (:class:`Deconvnet`), receptive fields (:func:`receptive_field`), top-k scans
(:func:`topk`, :func:`layer_activations`), occlusion sweeps (:func:`occlusion`), invariance and
correspondence measurements (:func:`invariance`, :func:`correspondence`), what a unit wants by
optimisation (:func:`visualize`), and the traced view of a model they share (:func:`model_graph`, :func:`layer_names`). Behind the book: the paper's networks
(:mod:`zfkit.models`), its data and preprocessing (:mod:`zfkit.data`), run profiles
(:mod:`zfkit.profiles`), training with the paper's recipe (:mod:`zfkit.train`) and trained models
on demand (:mod:`zfkit.zoo`).

The submodules stay importable by name (``from zfkit.occlusion import covered``); where a function
shares its module's name (``topk``, ``occlusion``, ``invariance``, ``correspondence``), the
attribute ``zfkit.<name>`` is the function.
"""

from . import data, graph, layers, models, profiles, rf, train, zoo
from .correspondence import correspondence
from .deconv import Deconvnet
from .featureviz import visualize
from .graph import layer_names, model_graph
from .invariance import invariance
from .occlusion import occlusion
from .rf import receptive_field
from .topk import layer_activations, topk

__all__ = ["data", "graph", "layers", "models", "profiles", "rf", "train", "zoo", "Deconvnet", "receptive_field",
           "topk", "layer_activations", "occlusion", "invariance", "correspondence", "visualize", "model_graph", "layer_names"]
__version__ = "0.1.0"
