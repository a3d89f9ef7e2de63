"""ASO local training of one client (the local loop), on any model with an embedding point.

One local step of ASO (spec sections 2-5) on a batch:

1. forward; a forward hook keeps the embedding-point output ``e`` ``(N, d)``;
2. ``c = cos(e, A)`` once, from the detached ``e``, block by block of tokens: each block
   gives its tokens' relevance ``s`` and each anchor's most similar token so far (with
   ``relevance-source = probe`` ``s = sigmoid(w . e + b)`` from the server's probe; with
   ``oracle``, research only, ``s`` is the batch's fact-token indicator);
3. loss ``(1/N) sum_i (1 + lambda s_i) l_i``;
4. a tensor hook on ``e`` projects its incoming gradient (Eq. 5, by ``s``, or by ``1 - s``
   with ``project-low-relevance``) during backward;
5. optimizer step; anchors move by Eq. 1 towards the tokens found in step 2 (not under
   ``relevance-source = anchors-refit``, whose anchors the server fits).

With ASO disabled the same loop is plain training, so that both paths share every line
that matters for a fair comparison.

Only tokens that carry a loss count (spec section 11): a target of ``IGNORE_INDEX``
(padding, or an instruction's prompt) is left out of the loss, of relevance, of the anchor
update and of the mean relevance and token count that the client reports. The loop runs on
``train.device``; under bf16 or fp16 autocast the similarities, relevance, the anchor update
and the subspace stay in fp32 (the embeddings are cast up before scoring).

With a :class:`fedaso.privacy.DPSGDConfig` the same loop runs under Opacus
(``fedaso.training.dp_sgd``). Steps 2-5 are ``fedaso.training.aso_state.ASOState``;
evaluation is ``fedaso.training.evaluate``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.models import embedding_point_of, embedding_width_of
from fedaso.privacy import DPSGDConfig, sampling_seed
from fedaso.training.aso_state import ASOState
from fedaso.training.batches import (
    EmbeddingCapture,
    LossReduction,
    make_loader,
    mean_loss,
    per_token_losses,
    scored_tokens,
)
from fedaso.training.dp_sgd import PrivateTraining, make_private, noise_only_step

HIGH_RELEVANCE = 0.5  # tokens above this count as "semantically relevant" in the metrics


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block on torch's global RNG seeded with ``seed``, then restore its state.

    Dropout (LoRA's, an ``hf:`` model's) and Opacus' noise draw from the global RNG, whose
    state in a simulation worker depends on which messages the worker handled before.
    Seeded per round, a seed trains the same way wherever and after whatever it runs.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class LocalTrainResult:
    """What one client's local training reports."""

    num_examples: int  # training examples seen (with repetition over epochs)
    num_tokens: int  # tokens (LM) or samples (classifier) scored
    num_steps: int  # optimizer steps taken
    train_loss: float  # mean unweighted per-token loss over the round
    mean_relevance: float  # mean s_i over all tokens; nan when ASO is disabled
    high_relevance_fraction: float  # fraction of tokens with s_i > 0.5; nan without ASO
    anchors: torch.Tensor | None  # after the round's Eq. 1 updates, (M, d); None without any
    # DP-SGD releases of the round as Opacus' accountant history: (sigma, sample rate, steps)
    dp_history: tuple[tuple[float, float, int], ...] = ()

    @property
    def trained_with_aso(self) -> bool:
        """Whether the round ran ASO (its relevance figures are set), anchors or none."""
        return not math.isnan(self.mean_relevance)


def check_anchors(anchors: torch.Tensor, *, aso: ASOConfig, width: int) -> None:
    """Raise ``ValueError`` unless ``anchors`` is a finite ``(num_anchors, width)`` matrix."""
    aso.check_width(width)
    expected = (aso.num_anchors, width)
    if tuple(anchors.shape) != expected:
        raise ValueError(f"anchors have shape {tuple(anchors.shape)}, expected {expected}")
    if not torch.isfinite(anchors).all():
        raise ValueError("anchors contain NaN or Inf")


def check_probe(probe: RelevanceProbe, *, width: int) -> None:
    """Raise ``ValueError`` unless the probe's ``w`` has the model's embedding width ``d``."""
    if probe.weight.shape != (width,):
        raise ValueError(
            f"the relevance probe's weight has shape {probe.weight.shape}, but the model's "
            f"embedding width is d={width}"
        )


def proximal_term(model: nn.Module, reference: Sequence[torch.Tensor]) -> torch.Tensor:
    """Return ``sum ||w - w0||^2`` over the model's trainable parameters (FedProx)."""
    pairs = zip(trainable_parameters(model), reference, strict=True)
    return torch.stack([(p - p0).pow(2).sum() for p, p0 in pairs]).sum()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that train (all, or the adapters of a frozen base)."""
    return [p for p in model.parameters() if p.requires_grad]


def train_local(
    model: nn.Module,
    data: TensorSplit,
    *,
    anchors: torch.Tensor | None,
    aso: ASOConfig | None,
    train: TrainConfig,
    seed: int,
    proximal_mu: float = 0.0,
    dp_sgd: DPSGDConfig | None = None,
    relevance_probe: RelevanceProbe | None = None,
) -> LocalTrainResult:
    """Run one round of local training (ASO, or plain when ``aso`` is None) in place.

    Parameters
    ----------
    model : nn.Module
        A model with ``embedding_point`` and ``embedding_width`` (see ``fedaso.models``).
        It is moved to ``train.device`` and stays there.
    data : TensorSplit
        The client's training split.
    anchors : torch.Tensor or None
        The anchor set ``(M, d)`` to train against; required with an ``aso`` that uses
        anchors (``ASOConfig.uses_anchors``), else None.
    aso : ASOConfig or None
        The ASO section; None trains plainly (no anchors involved).
    train : TrainConfig
        The training section.
    seed : int
        Seeds this round's batch order (per client and round, from the run's seed).
    proximal_mu : float
        FedProx's proximal weight; 0 adds no proximal term.
    dp_sgd : DPSGDConfig or None
        Run the round as DP-SGD under Opacus; its accountant history is returned.
    relevance_probe : RelevanceProbe or None
        The server's probe, required under ``relevance-source = probe``: it gives ``s``.
    """
    if len(data) == 0:
        raise ValueError("the training split is empty: nothing to train on")
    device = train.torch_device()
    model.to(device)
    state = None
    if aso is not None:
        if aso.uses_anchors != (anchors is not None):
            raise ValueError(
                f"ASO with relevance-source={aso.relevance_source!r} and project-gradients="
                f"{aso.project_gradients} {'needs' if aso.uses_anchors else 'uses no'} anchors, "
                f"but {'none were' if anchors is None else 'some were'} given"
            )
        if anchors is not None:
            check_anchors(anchors, aso=aso, width=embedding_width_of(model))
            anchors = anchors.float().to(device)
        probe = relevance_probe if aso.relevance_source == "probe" else None
        if aso.relevance_source == "probe" and probe is None:
            raise ValueError("relevance-source='probe' but no relevance probe was given")
        if probe is not None:
            check_probe(probe, width=embedding_width_of(model))
        state = ASOState(anchors, aso, probe)
    optimizer = make_optimizer(model, train)
    proximal = None
    if proximal_mu:
        proximal = (proximal_mu, [p.detach().clone() for p in trainable_parameters(model)])
    # DP-SGD's amplification by Poisson sampling holds against the server only if the server
    # cannot regenerate the batches from the seed it knows: their seed is secret then.
    batch_seed = seed if dp_sgd is None else sampling_seed(seed)
    oracle = aso is not None and aso.relevance_source == "oracle"
    loader = make_loader(
        data, batch_size=train.batch_size, seed=batch_seed, shuffle=True, fact_targets=oracle
    )
    forward: nn.Module = model
    private: PrivateTraining | None = None
    reduce_loss: LossReduction = mean_loss
    if dp_sgd is not None:
        private = make_private(
            model,
            optimizer,
            loader,
            dp_sgd=dp_sgd,
            train=train,
            proximal_mu=proximal_mu,
            device=device,
        )
        forward, optimizer, loader = private.forward, private.optimizer, private.loader
        reduce_loss = private.reduce_loss
    ghost_clipping = private is not None and private.ghost_clipping
    step_context = _StepContext(
        forward=forward,
        state=state,
        optimizer=optimizer,
        proximal=proximal,
        reduce_loss=reduce_loss,
        device=device,
        autocast_dtype=train.autocast_dtype(),
        scaler=torch.amp.GradScaler(device.type, enabled=train.precision == "fp16"),
    )
    totals = dict.fromkeys(("examples", "tokens", "steps", "loss", "rel", "high"), 0.0)
    model.train()
    try:
        with (
            warnings.catch_warnings(),
            EmbeddingCapture(embedding_point_of(model)) as capture,
            seeded_global_rng(batch_seed, device),  # secret under DP-SGD, as the batches'
        ):
            # Integer token ids need no gradient; Opacus' hook on the token embedding still
            # fires on its output, which is all it needs, and torch warns about it each step.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(train.local_epochs):
                for inputs, targets, *fact_targets in loader:
                    if train.max_steps and totals["steps"] >= train.max_steps:
                        break
                    if ghost_clipping and inputs.shape[0] == 0:
                        step = noise_only_step(optimizer)
                    else:
                        oracle_batch = fact_targets[0] if fact_targets else None
                        step = step_context.step(inputs, targets, capture, oracle_batch)
                    for key, value in step.items():
                        totals[key] += value
    finally:
        if private is not None:
            forward.remove_hooks()  # type: ignore[operator]  # Opacus' GradSampleModule
    tokens = max(totals["tokens"], 1)
    no_aso = float("nan")
    return LocalTrainResult(
        num_examples=int(totals["examples"]),
        num_tokens=int(totals["tokens"]),
        num_steps=int(totals["steps"]),
        train_loss=totals["loss"] / tokens,
        mean_relevance=totals["rel"] / tokens if state else no_aso,
        high_relevance_fraction=totals["high"] / tokens if state else no_aso,
        anchors=state.anchors.cpu() if state and state.anchors is not None else None,
        dp_history=private.history() if private is not None else (),
    )


@dataclass(frozen=True)
class _StepContext:
    """What every local step of a round uses: the model, optimizer, ASO state, device."""

    forward: nn.Module  # the model, or Opacus' wrapper of it
    state: ASOState | None  # None for plain training
    optimizer: torch.optim.Optimizer
    proximal: tuple[float, Sequence[torch.Tensor]] | None  # FedProx (mu, reference), or None
    reduce_loss: LossReduction
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32, no autocast
    scaler: torch.amp.GradScaler  # enabled for fp16 only

    def step(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        capture: EmbeddingCapture,
        fact_targets: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """One local step on a batch; returns the step's contribution to the round's totals.

        ``fact_targets`` (the oracle's indicator, shaped as ``targets``) replaces relevance.
        """
        inputs = inputs.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        totals: dict[str, float] = {"examples": inputs.shape[0], "steps": 1}
        scored = scored_tokens(targets)  # (N,)
        with torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            logits = self.forward(inputs)
        losses = per_token_losses(logits, targets)  # (N,), fp32, 0 where not scored
        token_losses = losses
        if self.state is not None:
            embedding = capture.output
            if embedding is None:
                raise RuntimeError("the embedding point produced no output in the forward pass")
            if fact_targets is not None:
                fact_targets = fact_targets.to(self.device, non_blocking=True)
            token_losses, relevance = self.state.weight_losses(
                embedding, losses, scored, fact_targets
            )
            totals["rel"] = relevance.sum().item()
            totals["high"] = (relevance > HIGH_RELEVANCE).sum().item()
        loss = self.reduce_loss(token_losses, targets)
        if self.proximal is not None:
            mu, reference = self.proximal
            loss = loss + 0.5 * mu * proximal_term(self.forward, reference)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.state is not None:
            self.state.after_step()
        totals["tokens"] = int(scored.sum().item())
        totals["loss"] = losses.detach().sum().item()
        return totals


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Return the optimizer named by ``train.optimizer``, over the trainable parameters."""
    parameters = trainable_parameters(model)
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr)
    return torch.optim.Adam(parameters, lr=train.lr)
