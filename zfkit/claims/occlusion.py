"""Chapter 6's verdicts: §4.2's occlusion claims (Fig. 7)."""

from __future__ import annotations

DROPS = "The probability of the correct class drops significantly when the object is occluded"
LOCALISES = "The model is localizing the object within the scene (not using the context)"
OVERLAP = "Covering the structure the projection shows makes the map's activity drop"
