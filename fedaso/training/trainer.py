"""ASO local training and evaluation of one client, on any model with an embedding point.

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

With a :class:`fedaso.privacy.DPSGDConfig` the same loop runs under Opacus (record-level
DP-SGD): Poisson-sampled batches drawn from a secret seed (``fedaso.privacy.sampling``),
per-sample gradients clipped and noised by Opacus' ``DPOptimizer``. The ASO projection
hook sits on the embedding point's output, upstream of Opacus' per-sample capture for
every parameter below it, so the per-sample gradients that Opacus clips are the projected
ones (see ``fedaso.models`` and tests/test_dp_sgd.py).
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedaso.aso.anchors import ema_update_towards
from fedaso.aso.projection import projection_hook, projection_weights, semantic_subspace
from fedaso.aso.relevance import RelevanceProbe, score_tokens
from fedaso.config import ASOConfig, TrainConfig
from fedaso.data import RecallPrompt, TensorSplit
from fedaso.data.tokens import BYTES, IGNORE_INDEX, TextCodec, encode
from fedaso.models import embedding_point_of, embedding_width_of
from fedaso.privacy import DPSGDConfig, opacus_import, sampling_seed

HIGH_RELEVANCE = 0.5  # tokens above this count as "semantically relevant" in the metrics
RECALL_CHUNK = 32  # prompts per forward pass of fact_recall


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


@dataclass(frozen=True)
class LocalTrainResult:
    """What one client's local training reports."""

    num_examples: int  # training examples seen (with repetition over epochs)
    num_tokens: int  # tokens (LM) or samples (classifier) scored
    num_steps: int  # optimizer steps taken
    train_loss: float  # mean unweighted per-token loss over the round
    mean_relevance: float  # mean s_i over all tokens; nan when ASO is disabled
    high_relevance_fraction: float  # fraction of tokens with s_i > 0.5; nan without ASO
    anchors: torch.Tensor | None  # anchors after the round's online updates, (M, d)
    # DP-SGD releases of the round as Opacus' accountant history: (sigma, sample rate, steps)
    dp_history: tuple[tuple[float, float, int], ...] = ()


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy of a model on a split (next-token accuracy for an LM)."""

    loss: float
    accuracy: float
    num_examples: int
    num_tokens: int


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


def check_anchors(anchors: torch.Tensor, *, aso: ASOConfig, width: int) -> None:
    """Raise ``ValueError`` unless ``anchors`` is a finite ``(num_anchors, width)`` matrix."""
    aso.check_width(width)
    expected = (aso.num_anchors, width)
    if tuple(anchors.shape) != expected:
        raise ValueError(f"anchors have shape {tuple(anchors.shape)}, expected {expected}")
    if not torch.isfinite(anchors).all():
        raise ValueError("anchors contain NaN or Inf")


def proximal_term(model: nn.Module, reference: Sequence[torch.Tensor]) -> torch.Tensor:
    """Return ``sum ||w - w0||^2`` over the model's trainable parameters (FedProx)."""
    pairs = zip(trainable_parameters(model), reference, strict=True)
    return torch.stack([(p - p0).pow(2).sum() for p, p0 in pairs]).sum()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that train (all, or the adapters of a frozen base)."""
    return [p for p in model.parameters() if p.requires_grad]


class _ASOState:
    """Anchors and subspace basis carried across the steps of one round."""

    def __init__(
        self, anchors: torch.Tensor, aso: ASOConfig, probe: RelevanceProbe | None = None
    ) -> None:
        self.aso = aso
        self.probe = probe  # relevance-source = probe: s from it, not from the anchors
        self.anchors = anchors.detach().clone()  # (M, d)
        self.basis = self._basis()
        self.steps = 0
        # (embeddings (n, d), nearest token per anchor (M,)) of the step in progress; the
        # nearest tokens are None when the step scored no token (nothing to move towards).
        self._pending: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def _basis(self) -> torch.Tensor | None:
        if not self.aso.project_gradients:
            return None
        return semantic_subspace(anchors=self.anchors, rank=self.aso.subspace_rank)  # (d, R)

    def weight_losses(
        self,
        embedding: torch.Tensor,
        losses: torch.Tensor,
        scored: torch.Tensor,
        fact_targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score tokens, hook the projection onto ``embedding``; return (weighted losses, s).

        Both are per token, ``(N,)``: Eq. 4's ``(1 + lambda s_i) l_i`` and ``s_i``. Only the
        ``scored`` tokens ``(N,)`` are scored and may move an anchor; the others get s = 0.
        Given the oracle's ``fact_targets`` (any shape of N bools), they replace the anchors'
        ``s`` in Eq. 4 and Eq. 5 (and so in the mean relevance that weights Eq. 7); the
        anchors still move by Eq. 1.
        """
        flat = embedding.detach().reshape(-1, embedding.shape[-1]).float()  # (N, d), fp32
        every_token = bool(scored.all())
        if not every_token:
            flat = flat[scored]  # (n, d): the tokens that carry a loss
        scores = score_tokens(
            embeddings=flat, anchors=self.anchors, tau=self.aso.aso_tau, kind=self.aso.relevance
        )
        # (N,) when every token is scored (no padding)
        relevance = scores.relevance if self.probe is None else self.probe.scores(flat)
        if not every_token:
            relevance = flat.new_zeros(scored.shape[0]).masked_scatter_(scored, relevance)
        if fact_targets is not None:
            relevance = (fact_targets.reshape(-1) & scored).float()  # (N,): 1 on a fact's value
        if self.basis is not None and embedding.requires_grad:
            weights = projection_weights(relevance, low_relevance=self.aso.project_low_relevance)
            embedding.register_hook(projection_hook(basis=self.basis, relevance=weights))
        self._pending = (flat, scores.nearest_token)
        return (1.0 + self.aso.aso_lambda * relevance) * losses, relevance

    def after_step(self) -> None:
        """Move anchors by Eq. 1 towards the step's nearest tokens; refresh U every K steps."""
        self.steps += 1
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("after_step() without weight_losses() in the same step")
        flat, nearest_token = pending
        # An empty Poisson batch (DP-SGD), or one with no scored token, moves no anchor.
        moves = self.aso.update_anchors and self.aso.clients_move_anchors
        if moves and nearest_token is not None:
            self.anchors = ema_update_towards(
                anchors=self.anchors,
                embeddings=flat,
                nearest_token=nearest_token,
                alpha=self.aso.aso_alpha,
            )
            refresh = self.aso.subspace_refresh_steps
            if refresh and self.steps % refresh == 0:
                self.basis = self._basis()


def train_local(
    model: nn.Module,
    data: TensorSplit,
    *,
    anchors: torch.Tensor | None,
    aso: ASOConfig,
    train: TrainConfig,
    dp_sgd: DPSGDConfig | None = None,
    relevance_probe: RelevanceProbe | None = None,
) -> LocalTrainResult:
    """Run one round of local training (ASO or plain, per ``aso.enabled``) in place.

    Parameters
    ----------
    model : nn.Module
        A model with ``embedding_point`` and ``embedding_width`` (see ``fedaso.models``).
        It is moved to ``train.device`` and stays there.
    data : TensorSplit
        The client's training split.
    anchors : torch.Tensor or None
        The anchor set ``(M, d)`` to train against; required when ``aso.enabled``.
    aso, train : ASOConfig, TrainConfig
        Hyperparameters.
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
    if aso.enabled:
        if anchors is None:
            raise ValueError("ASO is enabled but no anchors were given")
        check_anchors(anchors, aso=aso, width=embedding_width_of(model))
        probe = relevance_probe if aso.relevance_source == "probe" else None
        if aso.relevance_source == "probe" and probe is None:
            raise ValueError("relevance-source='probe' but no relevance probe was given")
        state = _ASOState(anchors.float().to(device), aso, probe)
    optimizer = make_optimizer(model, train)
    proximal = None
    if train.proximal_mu:
        proximal = (train.proximal_mu, [p.detach().clone() for p in trainable_parameters(model)])
    # DP-SGD's amplification by Poisson sampling holds against the server only if the server
    # cannot regenerate the batches from the seed it knows: their seed is secret then.
    batch_seed = train.seed if dp_sgd is None else sampling_seed(train.seed)
    oracle = state is not None and aso.relevance_source == "oracle"
    loader = make_loader(
        data, batch_size=train.batch_size, seed=batch_seed, shuffle=True, fact_targets=oracle
    )
    forward: nn.Module = model
    engine: Any = None  # Opacus' PrivacyEngine under DP-SGD
    reduce_loss: LossReduction = mean_loss
    ghost_clipping = dp_sgd is not None and dp_sgd.grad_sample_mode == "ghost"
    if dp_sgd is not None:
        check_dp_sgd(model, train)
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
        if ghost_clipping:
            reduce_loss = ghost_clipping_loss(forward, optimizer)
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
        with warnings.catch_warnings(), EmbeddingCapture(embedding_point_of(model)) as capture:
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
        if engine is not None:
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
        anchors=state.anchors.cpu() if state else None,
        dp_history=tuple(engine.accountant.history) if engine is not None else (),
    )


@dataclass(frozen=True)
class _StepContext:
    """What every local step of a round uses: the model, optimizer, ASO state, device."""

    forward: nn.Module  # the model, or Opacus' wrapper of it
    state: _ASOState | None  # None for plain training
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


def check_dp_sgd(model: nn.Module, train: TrainConfig) -> None:
    """Raise ``ValueError`` for what DP-SGD under Opacus cannot train, naming the cause.

    Opacus computes per-sample gradients only for the layer types it knows; a trainable
    module of another type (GPT-2's ``Conv1D`` in a full fine-tune, say) is named here,
    before any step. LoRA adapters are ``nn.Linear`` and pass.
    """
    if train.proximal_mu:
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


# How a step turns its per-token losses ``(N,)`` and targets into the loss to backpropagate.
LossReduction = Callable[[torch.Tensor, torch.Tensor], Any]


def mean_loss(token_losses: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 4's ``1/N`` sum over the batch's N scored tokens (0 for a batch with none)."""
    return token_losses.sum() / scored_tokens(targets).sum().clamp(min=1)


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


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Return the optimizer named by ``train.optimizer``, over the trainable parameters."""
    parameters = trainable_parameters(model)
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr)
    return torch.optim.Adam(parameters, lr=train.lr)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorSplit, *, batch_size: int = 64) -> EvalResult:
    """Return the mean loss and accuracy of ``model`` over the scored tokens of ``data``."""
    model.eval()
    device = model_device(model)
    total_loss, correct, tokens = 0.0, 0, 0
    for inputs, targets in make_loader(data, batch_size=batch_size, seed=0, shuffle=False):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        scored = scored_tokens(targets)  # (N,)
        total_loss += per_token_losses(logits, targets).sum().item()
        predictions = logits.argmax(dim=-1).reshape(-1)  # (N,)
        correct += ((predictions == targets.reshape(-1)) & scored).sum().item()
        tokens += int(scored.sum().item())
    if tokens == 0:
        return EvalResult(loss=math.nan, accuracy=math.nan, num_examples=0, num_tokens=0)
    return EvalResult(
        loss=total_loss / tokens,
        accuracy=correct / tokens,
        num_examples=len(data),
        num_tokens=tokens,
    )


@torch.no_grad()
def embed(model: nn.Module, data: TensorSplit, *, batch_size: int = 64) -> np.ndarray:
    """Return the embedding-point outputs of the scored tokens of ``data`` ``(N, d)``, fp32."""
    model.eval()
    device = model_device(model)
    rows = []
    with EmbeddingCapture(embedding_point_of(model)) as capture:
        for start in range(0, len(data), batch_size):
            model(data.inputs[start : start + batch_size].to(device))
            if capture.output is None:
                raise RuntimeError("the embedding point produced no output in the forward pass")
            flat = capture.output.reshape(-1, capture.output.shape[-1]).float()  # (b, d)
            scored = scored_tokens(data.targets[start : start + batch_size]).to(device)
            rows.append(flat[scored].cpu())
    if not rows:
        raise ValueError("no examples to embed: the split is empty")
    return torch.cat(rows).numpy()  # (N, d)


@dataclass(frozen=True)
class RecallResult:
    """Fact recall of a language model on recall prompts."""

    exact_match: float  # share of prompts whose greedy completion is exactly the answer
    answer_loss: float  # mean cross-entropy per answer token, teacher-forced after the prompt


@torch.no_grad()
def fact_recall(
    model: nn.Module, prompts: Sequence[RecallPrompt], *, codec: TextCodec = BYTES
) -> RecallResult:
    """Exact-match rate of greedy completions of ``prompts``, and the answers' loss.

    Prompt and answer are encoded by ``codec`` (the model's tokenizer, or bytes). Greedy
    decoding yields the answer's tokens exactly iff, teacher-forced on prompt + answer, the
    argmax at every answer position is the next answer token; so one batched forward pass
    decides all prompts. Right padding cannot affect earlier positions of a causal model.
    The answer loss is a smooth companion: it moves long before exact matches appear.
    """
    if not prompts:
        return RecallResult(exact_match=math.nan, answer_loss=math.nan)
    model.eval()
    device = model_device(model)
    max_length = getattr(model, "max_length", None) or 1 << 30
    # A prompt longer than the context keeps its last tokens, as generation would.
    answers = [encode(codec, p.answer) for p in prompts]
    sequences = [
        torch.cat([encode(codec, p.prompt), a])[-max_length:]
        for p, a in zip(prompts, answers, strict=True)
    ]
    hits, answer_loss, answer_tokens = 0, 0.0, 0
    # Chunks of prompts bound the (P, W, V) log-probabilities for a large vocabulary.
    for first in range(0, len(prompts), RECALL_CHUNK):
        chunk = slice(first, first + RECALL_CHUNK)
        width = max(len(s) for s in sequences[chunk])
        batch = torch.full((len(sequences[chunk]), width), codec.pad_id, dtype=torch.long)
        for row, sequence in enumerate(sequences[chunk]):
            batch[row, : len(sequence)] = sequence  # (P, W), right-padded
        log_probs = torch.log_softmax(model(batch.to(device)).float(), dim=-1)  # (P, W, V)
        for row, (sequence, answer) in enumerate(
            zip(sequences[chunk], answers[chunk], strict=True)
        ):
            start, end = len(sequence) - len(answer), len(sequence)
            if start < 1:
                raise ValueError(
                    f"answer {prompts[first + row].answer!r} does not fit the model's "
                    f"{max_length} tokens"
                )
            predicted = log_probs[row, start - 1 : end - 1]  # (A, V)
            target = batch[row, start:end].to(device)  # (A,)
            hits += bool((predicted.argmax(dim=-1) == target).all())
            answer_loss -= predicted.gather(1, target[:, None]).sum().item()
            answer_tokens += len(answer)
    return RecallResult(exact_match=hits / len(prompts), answer_loss=answer_loss / answer_tokens)
