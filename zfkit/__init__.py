"""zfkit: see inside a convnet the way Zeiler & Fergus (ECCV 2014) did.

The model and analysis core behind the book: the paper's networks (:mod:`zfkit.models`), its data
and preprocessing (:mod:`zfkit.data`), run profiles (:mod:`zfkit.profiles`) and receptive-field
arithmetic (:mod:`zfkit.rf`), training with the paper's recipe (:mod:`zfkit.train`) and trained
models on demand (:mod:`zfkit.zoo`).
"""

from . import data, layers, models, profiles, rf, train, zoo
from .rf import receptive_field

__all__ = ["data", "layers", "models", "profiles", "rf", "train", "zoo", "receptive_field"]
__version__ = "0.1.0"
