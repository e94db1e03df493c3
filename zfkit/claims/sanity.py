"""Chapter 10's verdicts: later papers' sanity checks of the deconvnet and its relatives."""

from __future__ import annotations

SANITY_GUIDED = "Adebayo 2018: guided backprop barely changes when the top layers are randomised"
SANITY_GRADIENT = "Adebayo 2018: the gradient passes: its explanation changes as soon as the top layer is randomised"
SANITY_DECONV = "Sixt 2020: the deconvnet ignores the parameters of later layers"
