"""Chapter 9's verdicts: §5.2's transfer claims (Table 7 and the few-shot curves)."""

from __future__ import annotations

TRANSFER = "Pretrained features + softmax beat training from scratch by a wide margin with few images (digits)"
