"""Chapter 3's verdicts: Fig. 2's caption, judged on the top-9 patches of each feature map."""

from __future__ import annotations

GROUPING = "Fig. 2 (i): strong grouping within each feature map"
INVARIANCE = "Fig. 2 (ii): greater invariance at higher layers"
