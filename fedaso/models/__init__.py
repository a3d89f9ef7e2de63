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

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedaso.config import require
from fedaso.models.hf import HF_PREFIX, PEFT_METHODS, HFCausalLM, LoraSettings, hf_source
from fedaso.models.mlp import MLPClassifier, MLPConfig
from fedaso.models.tinylm import TinyLM, TinyLMConfig
from fedaso.models.user import PY_PREFIX, UserModel

__all__ = [
    "MODELS_ALLOWED",
    "HFCausalLM",
    "LoraSettings",
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

MODELS_ALLOWED = "tinylm, hf:NAME_OR_PATH, py:MODULE:FACTORY"


def is_hf(model: str) -> bool:
    """True for ``hf:NAME_OR_PATH``."""
    return model.startswith(HF_PREFIX) and bool(hf_source(model))


@dataclass(frozen=True)
class ModelSpec:
    """Which model to build (``RunConfig.model_spec`` makes it from the run-config)."""

    model: str = "tinylm"  # tinylm | hf:NAME_OR_PATH | py:MODULE:FACTORY
    task: str = "lm"  # "lm" (token ids -> next-token logits) or "classify" (digits)
    vocab_size: int = 256  # tinylm: byte vocabulary
    num_features: int = 64  # classify: input width
    num_classes: int = 10  # classify: output classes
    width: int = 64  # reference models: embedding width d
    layers: int = 2  # tinylm: transformer blocks
    heads: int = 4  # tinylm: attention heads
    seq_len: int = 64  # tinylm: context length in tokens
    peft: str = "none"  # none | lora (hf: models only)
    lora: LoraSettings = field(default_factory=LoraSettings)  # used when peft = lora

    def __post_init__(self) -> None:
        require(
            self.model == "tinylm" or is_hf(self.model) or self.model.startswith(PY_PREFIX),
            "model",
            self.model,
            f"must be one of {MODELS_ALLOWED}",
        )
        require(self.peft in PEFT_METHODS, "peft", self.peft, f"must be one of {PEFT_METHODS}")
        require(
            self.peft == "none" or is_hf(self.model),
            "peft",
            self.peft,
            f"LoRA adapters need an hf: model (model={self.model!r})",
        )
        require(
            not (is_hf(self.model) and self.task != "lm"),
            "model",
            self.model,
            "hf: models are causal language models: use a text dataset, not digits",
        )


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
    if is_hf(spec.model):
        from fedaso.models.hf import build_hf_model

        return build_hf_model(hf_source(spec.model), peft=spec.peft, lora=spec.lora)
    if spec.model.startswith(PY_PREFIX):
        from fedaso.models.user import build_user_model

        return build_user_model(spec.model, run_config, probe=_probe_input(spec))
    if spec.task == "lm":
        return TinyLM(
            TinyLMConfig(
                vocab_size=spec.vocab_size,
                block_size=spec.seq_len,
                n_layer=spec.layers,
                n_head=spec.heads,
                n_embd=spec.width,
            )
        )
    return MLPClassifier(
        MLPConfig(num_features=spec.num_features, hidden=spec.width, num_classes=spec.num_classes)
    )


def _probe_input(spec: ModelSpec) -> torch.Tensor:
    """A one-example input of the task's shape, to read a user model's embedding width."""
    if spec.task == "lm":
        return torch.zeros(1, min(spec.seq_len, 8), dtype=torch.int64)  # (1, T)
    return torch.zeros(1, spec.num_features)  # (1, F)
