"""The training section: how a client optimizes in one round (the local loop's keys)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedaso.checks import is_count, is_finite_number, require
from fedaso.config.fields import Section, setting

OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """Local optimization hyperparameters of one client round."""

    local_epochs: int = setting(2, "passes over the local training split per round")
    batch_size: int = setting(16, "windows (LM) or samples (digits) per step")
    lr: float = setting(0.003, "client learning rate")
    optimizer: str = setting("adam", "client optimizer", choices=OPTIMIZERS)
    max_steps: int = setting(0, "cap on local steps per round, 0 = none")
    device: str = setting("auto", "where clients train: auto (CUDA when present)", choices=DEVICES)
    precision: str = setting(
        "fp32", "fp32, or bf16 / fp16 autocast (ASO's own math stays fp32)", choices=PRECISIONS
    )

    def check(self) -> None:
        for key in ("local_epochs", "batch_size"):
            value = getattr(self, key)
            require(
                is_count(value, minimum=1), key.replace("_", "-"), value, "must be an integer >= 1"
            )
        require(
            is_finite_number(self.lr) and self.lr > 0, "lr", self.lr, "must be a finite number > 0"
        )
        require(
            is_count(self.max_steps, minimum=0),
            "max-steps",
            self.max_steps,
            "must be an integer >= 0",
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
