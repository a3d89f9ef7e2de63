"""FedASO's model back-ends behind one small interface, chosen by run-config key ``model``.

Every model is an ``nn.Module`` that maps a batch of inputs to logits and exposes

* ``embedding_point``: the module whose output is the per-token embedding that ASO scores
  and whose incoming gradient it projects (docs/SPEC.md sections 1 and 11);
* ``embedding_width``: the width ``d`` of that output;
* ``max_length``: the longest input in tokens, or None when the model states none.

Back-ends:

* ``tinylm``: the reference byte-level language model (``fedaso.models.tinylm``), or the
  MLP classifier (``fedaso.models.mlp``) for ``digits``;
* ``hf:NAME_OR_PATH``: a Hugging Face causal LM, fully fine-tuned or with LoRA adapters
  (``fedaso.models.hf``);
* ``py:MODULE:FACTORY``: a user's own ``nn.Module`` (``fedaso.models.user``).

Which arrays of a model travel between server and clients is decided in ``fedaso.models.arrays``:
all of them, or only the trainable ones when part of the model is frozen (LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fedaso.config.model import MODELS_ALLOWED, ModelConfig, is_hf, is_user_model
from fedaso.models.hf import HFCausalLM
from fedaso.models.mlp import MLPClassifier, MLPConfig
from fedaso.models.tinylm import TinyLM, TinyLMConfig
from fedaso.models.user import UserModel

__all__ = [
    "MODELS_ALLOWED",
    "HFCausalLM",
    "MLPClassifier",
    "MLPConfig",
    "ModelSpec",
    "TinyLM",
    "TinyLMConfig",
    "UserModel",
    "build_model",
    "embedding_point_of",
    "embedding_width_of",
    "is_hf",
]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to build: the model section and what the data decides about it."""

    config: ModelConfig  # the run-config's model keys
    task: str  # "lm" (token ids -> next-token logits) or "classify" (digits)
    seq_len: int  # tinylm: context length in tokens
    vocab_size: int  # tinylm: vocabulary (bytes)
    num_features: int  # classify: input width
    num_classes: int  # classify: output classes


def embedding_point_of(model: nn.Module) -> nn.Module:
    """The model's embedding point; ``ValueError`` if it has none (not a FedASO model)."""
    point = getattr(model, "embedding_point", None)
    if not isinstance(point, nn.Module):
        raise ValueError(f"{type(model).__name__} has no embedding_point module")
    return point


def embedding_width_of(model: nn.Module) -> int:
    """The width d of the model's embedding point; ``ValueError`` if it states none."""
    width = getattr(model, "embedding_width", None)
    if not isinstance(width, int):
        raise ValueError(f"{type(model).__name__} has no integer embedding_width")
    return width


def build_model(spec: ModelSpec, *, run_config: Any = None) -> nn.Module:
    """A model for ``spec``; ``run_config`` is handed to a ``py:`` factory."""
    config = spec.config
    if config.is_hf:
        from fedaso.models.hf import build_hf_model

        return build_hf_model(config)
    if is_user_model(config.model):
        from fedaso.models.user import build_user_model

        return build_user_model(config.model, run_config, probe=_probe_input(spec))
    if spec.task == "lm":
        return TinyLM(
            TinyLMConfig(
                vocab_size=spec.vocab_size,
                block_size=spec.seq_len,
                n_layer=config.model_layers,
                n_head=config.model_heads,
                n_embd=config.model_width,
            )
        )
    return MLPClassifier(
        MLPConfig(
            num_features=spec.num_features, hidden=config.model_width, num_classes=spec.num_classes
        )
    )


def _probe_input(spec: ModelSpec) -> torch.Tensor:
    """A one-example input of the task's shape, to read a user model's embedding width."""
    if spec.task == "lm":
        return torch.zeros(1, min(spec.seq_len, 8), dtype=torch.int64)  # (1, T)
    return torch.zeros(1, spec.num_features)  # (1, F)
