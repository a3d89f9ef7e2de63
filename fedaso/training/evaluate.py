"""How good is a model on a split: loss and accuracy, embeddings, and fact recall.

:func:`evaluate` gives the mean loss and (next-token) accuracy over the scored tokens,
:func:`embed` the embedding-point outputs of those tokens (for k-means anchors and probes),
and :func:`fact_recall` how many recall prompts a language model completes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedaso.data import RecallPrompt, TensorSplit
from fedaso.data.tokens import BYTES, TextCodec, encode
from fedaso.models import embedding_point_of
from fedaso.training.batches import (
    EmbeddingCapture,
    make_loader,
    model_device,
    per_token_losses,
    scored_tokens,
)

RECALL_CHUNK = 32  # prompts per forward pass of fact_recall


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy of a model on a split (next-token accuracy for an LM)."""

    loss: float
    accuracy: float
    num_examples: int
    num_tokens: int


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
