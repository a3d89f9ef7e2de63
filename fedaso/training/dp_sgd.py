"""DP-SGD under Opacus: what it cannot train, and the wiring of one private round.

With a :class:`fedaso.privacy.DPSGDConfig` the local loop of ``fedaso.training.trainer``
runs under Opacus (record-level DP-SGD): Poisson-sampled batches drawn from a secret seed
(``fedaso.privacy.sampling``), per-sample gradients clipped and noised by Opacus'
``DPOptimizer``. The ASO projection hook sits on the embedding point's output, upstream of
Opacus' per-sample capture for every parameter below it, so the per-sample gradients that
Opacus clips are the projected ones (see ``fedaso.models`` and
tests/unit/fedaso/training/test_dp_sgd.py).
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from fedaso.config import TrainConfig
from fedaso.privacy import DPSGDConfig, opacus_import
from fedaso.training.batches import LossReduction, mean_loss, scored_tokens


@dataclass(frozen=True)
class PrivateTraining:
    """One round's model, optimizer and loader as Opacus wrapped them, and its loss reduction."""

    forward: nn.Module  # Opacus' GradSampleModule around the model
    optimizer: torch.optim.Optimizer  # Opacus' DPOptimizer
    loader: DataLoader  # Poisson-sampled batches
    reduce_loss: LossReduction  # per-sequence means under ghost clipping
    ghost_clipping: bool
    engine: Any  # Opacus' PrivacyEngine, whose accountant records the round's releases

    def history(self) -> tuple[tuple[float, float, int], ...]:
        """The round's releases as Opacus' accountant history: (sigma, sample rate, steps)."""
        return tuple(self.engine.accountant.history)


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    dp_sgd: DPSGDConfig,
    train: TrainConfig,
    proximal_mu: float,
    device: torch.device,
) -> PrivateTraining:
    """Wrap ``model``, ``optimizer`` and ``loader`` for DP-SGD; ``ValueError`` if it cannot."""
    check_dp_sgd(model, train, proximal_mu=proximal_mu)
    # Imported here: Opacus takes longer to import than torch, and clients without
    # DP-SGD (the default) never need it.
    with opacus_import():
        from opacus import PrivacyEngine

    with warnings.catch_warnings():
        # Opacus' secure_mode needs torchcsprng; the noise generator below is seeded
        # from OS entropy instead (docs/PRIVACY.md says what that does and does not give).
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
    forward, optimizer, *_, loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=dp_sgd.noise_multiplier,
        max_grad_norm=dp_sgd.max_grad_norm,
        poisson_sampling=True,
        grad_sample_mode=dp_sgd.grad_sample_mode,
        # Fresh entropy: noise regenerable from the run seed would protect nothing.
        noise_generator=torch.Generator(device=device).manual_seed(secrets.randbits(63)),
    )
    ghost_clipping = dp_sgd.grad_sample_mode == "ghost"
    return PrivateTraining(
        forward=forward,
        optimizer=optimizer,
        loader=loader,
        reduce_loss=ghost_clipping_loss(forward, optimizer) if ghost_clipping else mean_loss,
        ghost_clipping=ghost_clipping,
        engine=engine,
    )


def check_dp_sgd(model: nn.Module, train: TrainConfig, *, proximal_mu: float) -> None:
    """Raise ``ValueError`` for what DP-SGD under Opacus cannot train, naming the cause.

    Opacus computes per-sample gradients only for the layer types it knows; a trainable
    module of another type (GPT-2's ``Conv1D`` in a full fine-tune, say) is named here,
    before any step. LoRA adapters are ``nn.Linear`` and pass.
    """
    if proximal_mu:
        raise ValueError(
            "DP-SGD cannot clip FedProx's proximal term per sample: "
            "use dp-sgd with a strategy other than fedprox"
        )
    if train.precision == "fp16":
        raise ValueError("precision='fp16' cannot be combined with dp-sgd: use bf16 or fp32")
    with opacus_import():
        from opacus.grad_sample import GradSampleModule

    for name, module in model.named_modules():
        trains = any(p.requires_grad for p in module.parameters(recurse=False))
        if trains and type(module) not in GradSampleModule.GRAD_SAMPLERS:
            raise ValueError(
                f"dp-sgd: Opacus cannot compute per-sample gradients of module {name!r} "
                f"({type(module).__name__}); train it frozen (peft='lora') or turn dp-sgd off"
            )


def ghost_clipping_loss(forward: nn.Module, optimizer: torch.optim.Optimizer) -> LossReduction:
    """The loss reduction of Opacus' ghost clipping for the wrapped ``forward``/``optimizer``.

    Ghost clipping needs one loss per privacy unit (a sequence, or a sample), which it
    backpropagates twice: once for the per-sample gradient norms, once re-weighted by their
    clipping factors. A sequence's loss is the mean of its scored tokens' (ASO-weighted)
    losses, as in Opacus' own ``DPLossFastGradientClipping``, so without padding the mean
    over sequences equals :func:`mean_loss`. The ASO projection hook fires in both passes.
    """
    with opacus_import():
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

    def per_sequence_mean(token_losses: torch.Tensor, targets: torch.Tensor) -> Any:
        tokens_per_sample = targets.shape[1:].numel()  # T for an LM, 1 for a classifier
        shape = (targets.shape[0], tokens_per_sample)
        counts = scored_tokens(targets).reshape(shape).sum(dim=1).clamp(min=1)  # (B,)
        per_sample = token_losses.reshape(shape).sum(dim=1) / counts  # (B,)
        return DPTensorFastGradientClipping(forward, optimizer, per_sample, "mean")

    return per_sequence_mean


def noise_only_step(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """DP-SGD's step on an empty Poisson batch under ghost clipping: the noise alone.

    Opacus' per-sample hooks take an empty batch through forward and backward, but its
    ghost-clipping norm of an embedding fails on one (Opacus 1.6), and a forward without its
    backward trips its parameter-tying check on the next step. So the batch is not run: the
    gradient is set to zero, and the optimizer adds the noise and accounts the step.
    """
    optimizer.zero_grad(set_to_none=True)
    for param in optimizer.params:  # type: ignore[attr-defined]  # Opacus' DPOptimizer
        param.grad = torch.zeros_like(param)
    optimizer.step()
    return {"examples": 0, "steps": 1, "tokens": 0, "loss": 0.0}
