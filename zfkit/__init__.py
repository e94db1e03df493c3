"""zfkit: see inside a convnet the way Zeiler & Fergus (ECCV 2014) did.

The model and analysis core behind the book: the paper's networks (:mod:`zfkit.models`), its data
and preprocessing (:mod:`zfkit.data`), run profiles (:mod:`zfkit.profiles`) and receptive-field
arithmetic (:mod:`zfkit.rf`).
"""

from . import data, layers, models, profiles, rf
from .rf import receptive_field

__all__ = ["data", "layers", "models", "profiles", "rf", "receptive_field"]
__version__ = "0.1.0"
