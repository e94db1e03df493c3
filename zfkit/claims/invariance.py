"""Chapter 5's verdicts: Fig. 5's reading of translation, scaling and rotation."""

from __future__ import annotations

INV_LAYERS = "Small transformations have a dramatic effect on layer 1, a lesser one on layer 7"
INV_LINEAR = "Layer 7 changes quasi-linearly with translation and scaling"
INV_STABLE = "The output is stable to translation and scaling"
INV_ROTATE = "The output is not invariant to rotation"
INV_SYMMETRY = "... except for objects with rotational symmetry"
