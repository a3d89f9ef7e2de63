"""From documents to token windows: next-token windows, fact-target masks, padded records.

A text corpus becomes an LM :class:`~fedaso.data.splits.Corpus` here (:func:`lm_corpus`):
documents are joined by newlines, encoded by the codec and cut into windows of
``seq_len + 1`` tokens; where fact spans are known, each window's targets are marked as fact
values or not (the oracle's indicator and the fact probes). Instruction records become one
right-padded sequence each, whose prompt and padding carry no loss.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import torch

from fedaso.data.files import instruction_sequence
from fedaso.data.splits import Corpus, Document, FactProbe, Span, TensorSplit, TextCorpus
from fedaso.data.tokens import IGNORE_INDEX, TextCodec, token_spans


def lm_corpus(corpus: TextCorpus, seq_len: int, codec: TextCodec) -> Corpus:
    return Corpus(
        task="lm",
        groups=tuple(document.group for document in corpus.pool),
        labels=tuple(document.label for document in corpus.pool),
        rows_to_split=functools.partial(_lm_rows_to_split, corpus.pool, seq_len, codec),
        seed_corpus=lm_windows(corpus.seed_texts, seq_len, codec=codec),
        eval=lm_windows(corpus.eval_texts, seq_len, codec=codec),
        recall_prompts=corpus.recall_prompts,
        fact_probe=eval_fact_probe(corpus, seq_len, codec) if corpus.eval_fact_spans else None,
        public_fact_probe=public_fact_probe(corpus, seq_len, codec) if corpus.knowledge else None,
    )


def eval_fact_probe(corpus: TextCorpus, seq_len: int, codec: TextCodec) -> FactProbe | None:
    """``corpus.eval`` windows split by target: fact values vs the rest (None: no offsets)."""
    return _split_by_spans(corpus.eval_texts, corpus.eval_fact_spans, seq_len, codec)


def public_fact_probe(corpus: TextCorpus, seq_len: int, codec: TextCodec) -> FactProbe | None:
    """The public entities' documents split by target: fact values vs the rest."""
    texts = [text for text, _ in corpus.knowledge]
    return _split_by_spans(texts, [spans for _, spans in corpus.knowledge], seq_len, codec)


def _split_by_spans(
    texts: Sequence[str], spans: Sequence[Sequence[Span]], seq_len: int, codec: TextCodec
) -> FactProbe | None:
    """Windows over ``texts`` whose targets are split: inside ``spans`` or not.

    The windows are exactly those of ``lm_windows`` over the same texts. None if the codec
    cannot map tokens to characters.
    """
    fact_targets = _fact_target_mask(texts, spans, seq_len, None, codec)  # (n, T)
    if fact_targets is None:
        return None
    windows = lm_windows(texts, seq_len, codec=codec)
    ignore = torch.full_like(windows.targets, IGNORE_INDEX)
    return FactProbe(
        fact=TensorSplit(windows.inputs, torch.where(fact_targets, windows.targets, ignore)),
        filler=TensorSplit(windows.inputs, torch.where(fact_targets, ignore, windows.targets)),
    )


def _fact_target_mask(
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    seq_len: int,
    stride: int | None,
    codec: TextCodec,
) -> torch.Tensor | None:
    """Which targets of ``lm_windows(texts, seq_len, stride)`` lie in ``spans``: ``(n, T)`` bool.

    A target token is a fact token when its characters overlap a span of its text. None if
    the codec cannot map tokens to characters.
    """
    joined = "\n".join(texts)
    try:
        ids, token_chars = token_spans(codec, joined)
    except ValueError:
        return None
    # Characters inside a span, then per token: does its [start, end) hold any of them?
    # A prefix sum answers that in O(1) per token.
    inside = np.zeros(len(joined) + 1, dtype=np.int64)  # (chars + 1,)
    offset = 0
    for text, text_spans in zip(texts, spans, strict=True):
        for start, end in text_spans:
            inside[offset + start + 1 : offset + end + 1] = 1
        offset += len(text) + 1
    marked = np.cumsum(inside)  # (chars + 1,): marked[i] = span characters before i
    bounds = np.array(token_chars, dtype=np.int64).reshape(-1, 2)  # (tokens, 2)
    is_fact = torch.from_numpy(marked[bounds[:, 1]] > marked[bounds[:, 0]])  # (tokens,)
    if len(ids) < seq_len + 1:
        return torch.zeros((0, seq_len), dtype=torch.bool)  # as lm_windows: no window
    return is_fact.unfold(0, seq_len + 1, stride or seq_len + 1)[:, 1:].contiguous()  # (n, T)


def lm_windows(
    texts: Sequence[str], seq_len: int, stride: int | None = None, *, codec: TextCodec
) -> TensorSplit:
    """Next-token windows over ``texts`` joined by newlines, starting every ``stride`` tokens.

    The default stride ``seq_len + 1`` gives disjoint windows that cover the stream once.
    """
    stream = torch.tensor(codec.encode("\n".join(texts)), dtype=torch.int64)  # (tokens,)
    if len(stream) < seq_len + 1:
        windows = stream.new_zeros((0, seq_len + 1))  # (0, T+1)
    else:
        windows = stream.unfold(0, seq_len + 1, stride or seq_len + 1)  # (n, T+1)
    return TensorSplit(
        inputs=windows[:, :-1].contiguous(),  # (n, T)
        targets=windows[:, 1:].contiguous(),  # (n, T)
    )


def _lm_rows_to_split(
    documents: tuple[Document, ...],
    seq_len: int,
    codec: TextCodec,
    rows: Sequence[int],
    stride: int,
) -> TensorSplit:
    """Windows over the ``rows`` of ``documents``, with their fact targets where known."""
    chosen = [documents[row] for row in rows]
    texts = [document.text for document in chosen]
    windows = lm_windows(texts, seq_len, stride, codec=codec)
    if not any(document.fact_spans for document in chosen):
        return windows
    spans = [document.fact_spans for document in chosen]
    fact_targets = _fact_target_mask(texts, spans, seq_len, stride, codec)
    return dataclasses.replace(windows, fact_targets=fact_targets)


def instruction_rows_to_split(
    pairs: tuple[tuple[str, str], ...],
    seq_len: int,
    codec: TextCodec,
    rows: Sequence[int],
    stride: int = 0,
) -> TensorSplit:
    del stride  # a record is one sequence, never windowed
    encoded = [instruction_sequence(*pairs[row], seq_len=seq_len, codec=codec) for row in rows]
    if not encoded:
        empty = torch.zeros((0, seq_len), dtype=torch.int64)
        return TensorSplit(inputs=empty, targets=empty.clone())
    inputs, targets = zip(*encoded, strict=True)
    return TensorSplit(inputs=torch.stack(inputs), targets=torch.stack(targets))  # (n, T) each


def classify_rows_to_split(
    features: torch.Tensor, classes: torch.Tensor, rows: Sequence[int], stride: int = 1
) -> TensorSplit:
    del stride  # samples are rows, not windows
    index = torch.tensor(list(rows), dtype=torch.int64)  # (n,)
    return TensorSplit(inputs=features[index], targets=classes[index])  # (n, 64), (n,)
