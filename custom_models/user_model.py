"""A user's own model for ``model = py:custom_models.user_model:build``.

The factory receives the run's ``RunConfig`` and returns ``(model, embedding_point)``. Here
the model is a small GRU language model over byte-level text (FedASO's built-in text
datasets are bytes for ``py:`` models), and its embedding point is the LayerNorm whose output
feeds the LM head: ASO scores that output and projects the gradient arriving at it.

    python -m simulations.run --strategy fedaso --num-clients 4 --rounds 2 \\
        --set model=py:custom_models.user_model:build --out runs/user-model
"""

from __future__ import annotations

import torch
from torch import nn

from fedaso.config import RunConfig


class ByteGRU(nn.Module):
    """Embedding -> GRU -> LayerNorm (the embedding point) -> LM head."""

    def __init__(self, width: int, max_length: int) -> None:
        super().__init__()
        self.max_length = max_length  # optional: the longest input, for fact recall
        self.embedding = nn.Embedding(256, width)
        self.gru = nn.GRU(width, width, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embedding(token_ids))  # (B, T, d)
        return self.head(self.norm(hidden))  # (B, T, 256)


def build(run: RunConfig) -> tuple[nn.Module, nn.Module]:
    """The factory: the model and its embedding point, sized by the run-config."""
    model = ByteGRU(width=run.model.model_width, max_length=run.data.seq_len)
    return model, model.norm
