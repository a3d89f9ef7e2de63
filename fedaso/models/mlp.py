"""The reference classifier: a small MLP for scikit-learn's digits.

Built only from ``nn.Linear`` and ``nn.LayerNorm`` so that Opacus computes per-sample
gradients for it. Its **embedding point** (docs/SPEC.md section 1) is an ``nn.Identity`` tap on the
penultimate features, for the reason given in ``fedaso.models.tinylm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MLPConfig:
    """Shape of the reference classifier."""

    num_features: int = 64  # input width (8x8 digits)
    hidden: int = 64  # width d of the penultimate features (the embedding point)
    num_classes: int = 10  # output classes

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MLPConfig.{name}={value!r} must be an integer >= 1")


class MLPClassifier(nn.Module):
    """Two hidden layers; ``embedding_point`` is the LayerNorm on the penultimate features."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.hidden_1 = nn.Linear(config.num_features, config.hidden)
        self.hidden_2 = nn.Linear(config.hidden, config.hidden)
        self.features_norm = nn.LayerNorm(config.hidden)
        self.embedding_tap = nn.Identity()  # the embedding point: features_norm's output
        self.head = nn.Linear(config.hidden, config.num_classes)

    @property
    def embedding_point(self) -> nn.Module:
        """The module whose output is the per-sample embedding fed to the head."""
        return self.embedding_tap

    @property
    def embedding_width(self) -> int:
        """Width d of the embedding point's output."""
        return self.config.hidden

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(B, C)`` for ``features`` ``(B, F)``."""
        x = F.gelu(self.hidden_1(features))  # (B, h)
        x = self.embedding_tap(self.features_norm(F.gelu(self.hidden_2(x))))  # (B, h)
        return self.head(x)  # (B, C)
