"""Batches and per-token losses, as local training and evaluation both see them.

A split's ``(inputs, targets)`` are batched in an order that depends only on a seed
(:func:`make_loader`); every token (or sample) gets its own cross-entropy
(:func:`per_token_losses`), and only the tokens whose target is not ``IGNORE_INDEX``
(padding, an instruction's prompt) count (:func:`scored_tokens`, spec section 11).
:class:`EmbeddingCapture` keeps the embedding point's output of the latest forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedaso.data import TensorSplit
from fedaso.data.tokens import IGNORE_INDEX

# How a step turns its per-token losses ``(N,)`` and targets into the loss to backpropagate.
LossReduction = Callable[[torch.Tensor, torch.Tensor], Any]


class EmbeddingCapture:
    """Forward hook that keeps the latest output of a model's embedding point."""

    def __init__(self, module: nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.output = output

    def close(self) -> None:
        """Remove the hook from the module."""
        self._handle.remove()

    def __enter__(self) -> EmbeddingCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_loader(
    data: TensorSplit, *, batch_size: int, seed: int, shuffle: bool, fact_targets: bool = False
) -> DataLoader:
    """Return a DataLoader whose order depends only on ``seed``.

    Its batches are ``(inputs, targets)``, and with ``fact_targets`` also the batch's rows
    of ``data.fact_targets`` (the oracle's indicator), drawn in the same order.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = [data.inputs, data.targets]
    if fact_targets:
        if data.fact_targets is None:
            raise ValueError(
                "relevance-source='oracle' needs the training split's fact targets, which only "
                "the facts dataset under a codec with token offsets has"
            )
        tensors.append(data.fact_targets)
    dataset = TensorDataset(*tensors)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def per_token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per token (or sample): logits ``(..., V)``, targets ``(...)`` -> ``(N,)``.

    A target of ``IGNORE_INDEX`` gives a loss of exactly 0 (see :func:`scored_tokens`).
    """
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        reduction="none",
        ignore_index=IGNORE_INDEX,
    )


def scored_tokens(targets: torch.Tensor) -> torch.Tensor:
    """Which tokens carry a loss: ``(N,)`` bool, False where the target is ``IGNORE_INDEX``."""
    return targets.reshape(-1) != IGNORE_INDEX


def mean_loss(token_losses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 4's ``1/N`` sum over the batch's N scored tokens (0 for a batch with none)."""
    return token_losses.sum() / scored_tokens(targets).sum().clamp(min=1)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device
