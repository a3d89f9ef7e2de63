"""Typed, validated hyperparameters of ASO local training.

Each field maps one-to-one to a kebab-case run-config key (``aso_lambda`` <-> ``aso-lambda``);
error messages name the run-config key, since that is what a user typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeGuard

import torch

from fedaso.aso.relevance import RELEVANCE_KINDS, RELEVANCE_SOURCES

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Unless ``condition``, raise ``ValueError`` naming ``key``, ``value`` and what is allowed."""
    if not condition:
        raise ValueError(f"{key}={value!r} is invalid: {allowed}")


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """True for a real, finite int or float (bools are rejected: they are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ASOConfig:
    """Active Semantic Optimization hyperparameters (spec sections 1-5)."""

    enabled: bool = True  # False: plain local training, no anchors involved
    aso_tau: float = 0.1  # softmax temperature of the relevance score, > 0
    aso_lambda: float = 1.0  # semantic emphasis of the loss weight (1 + lambda * s), >= 0
    aso_alpha: float = 0.01  # anchor EMA rate of Eq. 1, in (0, 1)
    num_anchors: int = 32  # M, anchors in the set, >= 2
    subspace_rank: int = 8  # R, rank of the semantic subspace, 1 <= R <= min(M - 1, d)
    relevance: str = "max"  # "max" (default) or "entropy"
    project_gradients: bool = True  # Eq. 5 on/off (ablation switch)
    update_anchors: bool = True  # Eq. 1 on/off; False keeps anchors static (ablation switch)
    subspace_refresh_steps: int = 0  # recompute U every K local steps; 0 = once per round
    relevance_source: str = "anchors"  # where s comes from: one of RELEVANCE_SOURCES
    project_low_relevance: bool = False  # Eq. 5 on low-relevance tokens: weight 1 - s, not s

    def __post_init__(self) -> None:
        require(
            is_finite_number(self.aso_tau) and self.aso_tau > 0,
            "aso-tau",
            self.aso_tau,
            "must be a finite number > 0",
        )
        require(
            is_finite_number(self.aso_lambda) and self.aso_lambda >= 0,
            "aso-lambda",
            self.aso_lambda,
            "must be a finite number >= 0",
        )
        require(
            is_finite_number(self.aso_alpha) and 0 < self.aso_alpha < 1,
            "aso-alpha",
            self.aso_alpha,
            "must be in (0, 1)",
        )
        require(
            isinstance(self.num_anchors, int) and self.num_anchors >= 2,
            "num-anchors",
            self.num_anchors,
            "must be an integer >= 2 (relevance compares anchors)",
        )
        require(
            isinstance(self.subspace_rank, int) and 1 <= self.subspace_rank < self.num_anchors,
            "subspace-rank",
            self.subspace_rank,
            # M centered anchors span at most M - 1 dimensions (spec section 4).
            f"must be an integer in [1, num-anchors - 1 = {self.num_anchors - 1}]",
        )
        require(
            self.relevance in RELEVANCE_KINDS,
            "relevance",
            self.relevance,
            f"must be one of {', '.join(RELEVANCE_KINDS)}",
        )
        require(
            self.relevance_source in RELEVANCE_SOURCES,
            "relevance-source",
            self.relevance_source,
            f"must be one of {', '.join(RELEVANCE_SOURCES)}",
        )
        require(
            isinstance(self.subspace_refresh_steps, int) and self.subspace_refresh_steps >= 0,
            "subspace-refresh-steps",
            self.subspace_refresh_steps,
            "must be an integer >= 0",
        )

    @property
    def clients_move_anchors(self) -> bool:
        """Whether clients move anchors by Eq. 1 and send them up (not under anchors-refit)."""
        return self.relevance_source != "anchors-refit"

    def check_width(self, width: int) -> None:
        """Raise if the subspace rank exceeds the model's embedding width ``d``."""
        require(
            self.subspace_rank <= width,
            "subspace-rank",
            self.subspace_rank,
            f"must not exceed the model's embedding width d={width}",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Local optimization hyperparameters of one client round."""

    local_epochs: int = 2  # passes over the partition's training split per round, >= 1
    batch_size: int = 16  # examples (LM windows or samples) per step, >= 1
    lr: float = 0.003  # learning rate, > 0
    optimizer: str = "adam"  # "sgd" or "adam"
    max_steps: int = 0  # cap on local steps per round; 0 = no cap
    proximal_mu: float = 0.0  # FedProx proximal term weight (sent by Flower's FedProx), >= 0
    seed: int = 0  # seeds batch order, so runs are reproducible
    device: str = "auto"  # where the model trains: auto (CUDA when present), cpu or cuda
    precision: str = "fp32"  # fp32, or bf16 / fp16 autocast (ASO's own math stays fp32)

    def __post_init__(self) -> None:
        require(
            isinstance(self.local_epochs, int) and self.local_epochs >= 1,
            "local-epochs",
            self.local_epochs,
            "must be an integer >= 1",
        )
        require(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch-size",
            self.batch_size,
            "must be an integer >= 1",
        )
        require(
            is_finite_number(self.lr) and self.lr > 0, "lr", self.lr, "must be a finite number > 0"
        )
        require(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            self.optimizer,
            f"must be one of {', '.join(OPTIMIZERS)}",
        )
        require(
            isinstance(self.max_steps, int) and self.max_steps >= 0,
            "max-steps",
            self.max_steps,
            "must be an integer >= 0",
        )
        require(
            is_finite_number(self.proximal_mu) and self.proximal_mu >= 0,
            "proximal-mu",
            self.proximal_mu,
            "must be a finite number >= 0",
        )
        require(
            self.device in DEVICES, "device", self.device, f"must be one of {', '.join(DEVICES)}"
        )
        require(
            self.precision in PRECISIONS,
            "precision",
            self.precision,
            f"must be one of {', '.join(PRECISIONS)}",
        )

    def torch_device(self) -> torch.device:
        """The device to train on; raise ``ValueError`` if ``cuda`` is asked for but absent."""
        return resolve_device(self.device)

    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``precision``; None for fp32 (no autocast)."""
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU; ``cuda`` without a GPU is an error."""
    require(device in DEVICES, "device", device, f"must be one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    require(
        device != "cuda" or torch.cuda.is_available(),
        "device",
        device,
        "no CUDA device is available here (use auto or cpu)",
    )
    return torch.device(device)
