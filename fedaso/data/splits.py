"""The shapes data takes: model-ready tensors, what a client and the server hold, corpora."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorSplit:
    """Model-ready examples: LM windows or digit samples."""

    inputs: torch.Tensor  # LM: (n, seq_len) int64 byte ids; classify: (n, 64) float32
    targets: torch.Tensor  # LM: (n, seq_len) int64 next-byte ids; classify: (n,) int64
    # facts' training windows only: (n, seq_len) bool, True where the target is part of a
    # fact's value. Research only (relevance-source = oracle); no deployment has it.
    fact_targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs has {self.inputs.shape[0]} rows but targets has "
                f"{self.targets.shape[0]}; they must match"
            )
        if self.fact_targets is not None and self.fact_targets.shape != self.targets.shape:
            raise ValueError(
                f"fact_targets has shape {tuple(self.fact_targets.shape)}, but targets has "
                f"{tuple(self.targets.shape)}; they must match"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]


Span = tuple[int, int]  # [start, end) character offsets in a text


@dataclass(frozen=True)
class FactProbe:
    """Held-out windows whose scored targets are fact values only, or everything else.

    Both splits hold the same inputs; ``fact`` scores the tokens that carry a fact's
    value (the attribute values of ``facts`` sentences), ``filler`` every other token.
    """

    fact: TensorSplit
    filler: TensorSplit


@dataclass(frozen=True)
class RecallPrompt:
    """A fact question: greedy decoding of ``prompt`` should give exactly ``answer``."""

    prompt: str  # e.g. "The capital of Veltria is"
    answer: str  # e.g. " Morvane." (the exact continuation, leading space included)


@dataclass(frozen=True)
class ClientData:
    """One partition: what a client trains and evaluates on."""

    train: TensorSplit
    test: TensorSplit


@dataclass(frozen=True)
class CentralData:
    """What the server holds: a public seed corpus and a held-out evaluation set."""

    task: str  # "lm" or "classify"
    seed_corpus: TensorSplit  # public seed corpus, for k-means anchor init
    eval: TensorSplit  # held-out central evaluation set
    recall_prompts: tuple[RecallPrompt, ...]  # facts only; empty otherwise
    fact_probe: FactProbe | None = None  # facts only: fact vs filler tokens of ``eval``
    # facts only: the public entities' documents split by their value spans, on which the
    # server fits relevance-source = probe's logistic probe (None: no token offsets)
    public_fact_probe: FactProbe | None = None


# ---------------------------------------------------------------------------------------
# Corpora: the pooled rows to partition, plus the server's seed corpus and eval set


@dataclass(frozen=True)
class Document:
    """One pooled LM row."""

    text: str
    group: str  # natural partition id
    label: int  # Dirichlet class
    fact_spans: tuple[Span, ...] = ()  # facts only: [start, end) of each fact's value


@dataclass(frozen=True)
class TextCorpus:
    """An LM dataset before windowing."""

    pool: tuple[Document, ...]  # rows that get partitioned
    eval_texts: tuple[str, ...]
    seed_texts: tuple[str, ...]
    recall_prompts: tuple[RecallPrompt, ...] = ()
    eval_fact_spans: tuple[tuple[Span, ...], ...] = ()  # per eval text: its facts' values
    # Documents about public entities no client holds, with their facts' value spans.
    knowledge: tuple[tuple[str, tuple[Span, ...]], ...] = ()


@dataclass(frozen=True, eq=False)  # holds tensors and a function: compare by identity
class Corpus:
    """A dataset ready for partitioning: per-row keys and a way to tensorize rows."""

    task: str  # "lm" or "classify"
    groups: tuple[str, ...] | None  # per pool row: natural partition id; None: has none
    labels: tuple[int, ...]  # per pool row: Dirichlet class
    rows_to_split: Callable[[Sequence[int], int], TensorSplit]  # (pool rows, stride) -> tensors
    seed_corpus: TensorSplit
    eval: TensorSplit
    recall_prompts: tuple[RecallPrompt, ...] = ()
    fact_probe: FactProbe | None = None
    public_fact_probe: FactProbe | None = None  # the public documents split by value spans
