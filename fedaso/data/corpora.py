"""Corpora: each dataset's pooled rows to partition, the server's seed corpus and eval set.

``pydoc``, ``text:PATH``, ``digits`` and ``file:PATH`` are read here (``facts`` is generated
by ``fedaso.data.facts``); text is encoded by the data config's tokenizer and cut into
windows, and instruction records into right-padded sequences.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedaso.data.files import instruction_sequence, load_file_records
from fedaso.data.tokens import IGNORE_INDEX, TextCodec, load_codec, token_spans

if TYPE_CHECKING:
    pass

from fedaso.data.config import (
    _DIGITS_EVAL_FRACTION,
    _DIGITS_SEED_FRACTION,
    _DOCUMENT_CHARS,
    _EVAL_FRACTION,
    _MIN_SITE_PIECES,
    _SEED_FRACTION,
    FACTS_DOMAINS,
    TEXT_PREFIX,
    DataConfig,
    _dataset_kind,
    _Item,
    _rng,
    group_column,
)
from fedaso.data.facts import _facts_corpus
from fedaso.data.splits import FactProbe, Span, TensorSplit, _Corpus, _Document, _TextCorpus


def _corpus_of(config: DataConfig) -> _Corpus:
    # Keyed on the fields that shape the corpus, so that configs differing only in
    # partitioning (server vs clients) share one build.
    return _build_corpus(
        config.dataset,
        config.seed,
        config.facts_entities,
        config.seq_len,
        config.tokenizer,
        group_column(config.partitioner),
        config.anchor_seed,
    )


@functools.lru_cache(maxsize=8)
def _build_corpus(
    dataset: str,
    seed: int,
    facts_entities: int,
    seq_len: int,
    tokenizer: str,
    column: str,
    anchor_seed: str = "generic",
) -> _Corpus:
    kind = _dataset_kind(dataset)
    if kind == "digits":
        return _digits_corpus(seed)
    codec = load_codec(tokenizer)
    if kind == "file":
        return _file_corpus(dataset, seed, seq_len, codec, column)
    text_corpus = _text_corpus(dataset, seed, facts_entities)
    corpus = _lm_corpus(text_corpus, seq_len, codec)
    _require_held_out(dataset, seq_len, corpus, text_corpus)
    if anchor_seed != "generic":
        seed_corpus = _knowledge_seed(text_corpus, seq_len, codec, anchor_seed)
        corpus = dataclasses.replace(corpus, seed_corpus=seed_corpus)
    return corpus


def _knowledge_seed(
    corpus: _TextCorpus, seq_len: int, codec: TextCodec, anchor_seed: str
) -> TensorSplit:
    """The server's k-means corpus of ``anchor-seed = knowledge | knowledge-values``.

    ``knowledge`` scores every token of the public entities' documents; ``knowledge-values``
    only the tokens of their facts' values, so that k-means (over scored tokens only)
    places every anchor among the embeddings of knowledge itself.
    """
    if anchor_seed == "knowledge":
        return _lm_windows([text for text, _ in corpus.knowledge], seq_len, codec=codec)
    split = _public_fact_probe(corpus, seq_len, codec)
    if split is None:
        raise ValueError(
            f"anchor-seed={anchor_seed!r} needs token offsets, which this model's tokenizer "
            "cannot give (a slow tokenizer); use anchor-seed=knowledge"
        )
    return split.fact


def _require_held_out(dataset: str, seq_len: int, corpus: _Corpus, texts: _TextCorpus) -> None:
    """Raise ``ValueError`` naming ``dataset`` if its evaluation or seed split is empty."""
    for name, split, held in (
        ("evaluation", corpus.eval, texts.eval_texts),
        ("seed (anchor initialization)", corpus.seed_corpus, texts.seed_texts),
    ):
        if len(split) == 0:
            raise ValueError(
                f"dataset={dataset!r} leaves no held-out {name} data: its held-out share is "
                f"{len(chr(10).join(held).encode())} bytes of text, too little for one window "
                f"of seq-len + 1 = {seq_len + 1}; add text or use a smaller seq-len"
            )


def _text_corpus(dataset: str, seed: int, facts_entities: int) -> _TextCorpus:
    """The documents of ``facts``, ``pydoc`` or ``text:PATH``, before tokenization."""
    kind = _dataset_kind(dataset)
    if kind == "facts":
        return _facts_corpus(FACTS_DOMAINS[dataset], seed, facts_entities)
    if kind == "pydoc":
        return _pydoc_corpus(seed)
    return _folder_corpus(Path(dataset.removeprefix(TEXT_PREFIX)), seed)


def _lm_corpus(corpus: _TextCorpus, seq_len: int, codec: TextCodec) -> _Corpus:
    return _Corpus(
        task="lm",
        groups=tuple(document.group for document in corpus.pool),
        labels=tuple(document.label for document in corpus.pool),
        rows_to_split=functools.partial(_lm_rows_to_split, corpus.pool, seq_len, codec),
        seed_corpus=_lm_windows(corpus.seed_texts, seq_len, codec=codec),
        eval=_lm_windows(corpus.eval_texts, seq_len, codec=codec),
        recall_prompts=corpus.recall_prompts,
        fact_probe=_fact_probe(corpus, seq_len, codec) if corpus.eval_fact_spans else None,
        public_fact_probe=_public_fact_probe(corpus, seq_len, codec) if corpus.knowledge else None,
    )


def _fact_probe(corpus: _TextCorpus, seq_len: int, codec: TextCodec) -> FactProbe | None:
    """``corpus.eval`` windows split by target: fact values vs the rest (None: no offsets)."""
    return _split_by_spans(corpus.eval_texts, corpus.eval_fact_spans, seq_len, codec)


def _public_fact_probe(corpus: _TextCorpus, seq_len: int, codec: TextCodec) -> FactProbe | None:
    """The public entities' documents split by target: fact values vs the rest."""
    texts = [text for text, _ in corpus.knowledge]
    return _split_by_spans(texts, [spans for _, spans in corpus.knowledge], seq_len, codec)


def _split_by_spans(
    texts: Sequence[str], spans: Sequence[Sequence[Span]], seq_len: int, codec: TextCodec
) -> FactProbe | None:
    """Windows over ``texts`` whose targets are split: inside ``spans`` or not.

    The windows are exactly those of ``_lm_windows`` over the same texts. None if the codec
    cannot map tokens to characters.
    """
    fact_targets = _fact_target_mask(texts, spans, seq_len, None, codec)  # (n, T)
    if fact_targets is None:
        return None
    windows = _lm_windows(texts, seq_len, codec=codec)
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
    """Which targets of ``_lm_windows(texts, seq_len, stride)`` lie in ``spans``: ``(n, T)`` bool.

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
        return torch.zeros((0, seq_len), dtype=torch.bool)  # as _lm_windows: no window
    return is_fact.unfold(0, seq_len + 1, stride or seq_len + 1)[:, 1:].contiguous()  # (n, T)


def _lm_windows(
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
    documents: tuple[_Document, ...],
    seq_len: int,
    codec: TextCodec,
    rows: Sequence[int],
    stride: int,
) -> TensorSplit:
    """Windows over the ``rows`` of ``documents``, with their fact targets where known."""
    chosen = [documents[row] for row in rows]
    texts = [document.text for document in chosen]
    windows = _lm_windows(texts, seq_len, stride, codec=codec)
    if not any(document.fact_spans for document in chosen):
        return windows
    spans = [document.fact_spans for document in chosen]
    fact_targets = _fact_target_mask(texts, spans, seq_len, stride, codec)
    return dataclasses.replace(windows, fact_targets=fact_targets)


def _instruction_rows_to_split(
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


def _classify_rows_to_split(
    features: torch.Tensor, classes: torch.Tensor, rows: Sequence[int], stride: int = 1
) -> TensorSplit:
    del stride  # samples are rows, not windows
    index = torch.tensor(list(rows), dtype=torch.int64)  # (n,)
    return TensorSplit(inputs=features[index], targets=classes[index])  # (n, 64), (n,)


def _hold_out(
    items: Sequence[_Item], rng: random.Random
) -> tuple[list[_Item], list[_Item], list[_Item]]:
    """Seeded split of ``items`` into (pool, eval, seed), each in the original order.

    Eval takes ``_EVAL_FRACTION`` and seed ``_SEED_FRACTION`` of the items (rounded up), each
    only while at least one item is left for the pool.
    """
    order = list(range(len(items)))
    rng.shuffle(order)
    num_eval = math.ceil(len(order) * _EVAL_FRACTION) if len(order) >= 2 else 0
    num_seed = math.ceil(len(order) * _SEED_FRACTION) if len(order) - num_eval >= 2 else 0
    held = num_eval + num_seed
    parts = (order[held:], order[:num_eval], order[num_eval:held])
    pool, eval_items, seed_items = ([items[index] for index in sorted(part)] for part in parts)
    return pool, eval_items, seed_items


def _paragraphs(text: str) -> list[str]:
    """The non-blank, blank-line separated paragraphs of ``text``."""
    return [part.rstrip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def _merge_paragraphs(paragraphs: Sequence[str]) -> list[str]:
    """Consecutive paragraphs joined into documents of >= ``_DOCUMENT_CHARS`` (bar the last)."""
    documents: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        current.append(paragraph)
        if sum(len(part) for part in current) >= _DOCUMENT_CHARS:
            documents.append("\n\n".join(current))
            current = []
    if current:
        documents.append("\n\n".join(current))
    return documents


# ---------------------------------------------------------------------------------------
# file:PATH


def _file_corpus(dataset: str, seed: int, seq_len: int, codec: TextCodec, column: str) -> _Corpus:
    """A file's records: held out like pydoc's documents, the rest partitioned."""
    records = load_file_records(dataset, group_column=column)
    groups = records.groups or ("all",) * len(records.texts)
    names = sorted(set(groups))
    if records.kind == "text":
        documents = [
            _Document(text, group, names.index(group))
            for text, group in zip(records.texts, groups, strict=True)
        ]
        pool, eval_documents, seed_documents = _hold_out(documents, _rng(seed, "file-hold-out"))
        return _lm_corpus(
            _TextCorpus(
                pool=tuple(pool),
                eval_texts=tuple(document.text for document in eval_documents),
                seed_texts=tuple(document.text for document in seed_documents),
            ),
            seq_len,
            codec,
        )
    pairs = tuple(zip(records.texts, records.responses, strict=True))
    pool_rows, eval_rows, seed_rows = _hold_out(range(len(pairs)), _rng(seed, "file-hold-out"))
    pool_pairs = tuple(pairs[row] for row in pool_rows)
    return _Corpus(
        task="lm",
        groups=tuple(groups[row] for row in pool_rows) if records.groups else None,
        labels=tuple(names.index(groups[row]) for row in pool_rows),
        rows_to_split=functools.partial(_instruction_rows_to_split, pool_pairs, seq_len, codec),
        seed_corpus=_instruction_rows_to_split(pairs, seq_len, codec, seed_rows),
        eval=_instruction_rows_to_split(pairs, seq_len, codec, eval_rows),
    )


# ---------------------------------------------------------------------------------------
# digits


def _digits_corpus(seed: int) -> _Corpus:
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # (1797, 64)
    classes = torch.tensor(digits.target, dtype=torch.int64)  # (1797,)
    rows = np.arange(len(classes))
    rest, eval_rows = train_test_split(
        rows, test_size=_DIGITS_EVAL_FRACTION, stratify=digits.target, random_state=seed
    )
    pool_rows, seed_rows = train_test_split(
        rest,
        test_size=_DIGITS_SEED_FRACTION / (1 - _DIGITS_EVAL_FRACTION),
        stratify=digits.target[rest],
        random_state=seed,
    )
    pool_features = features[torch.from_numpy(pool_rows)]  # (n, 64)
    pool_classes = classes[torch.from_numpy(pool_rows)]  # (n,)
    return _Corpus(
        task="classify",
        groups=None,
        labels=tuple(pool_classes.tolist()),
        rows_to_split=functools.partial(_classify_rows_to_split, pool_features, pool_classes),
        seed_corpus=_classify_rows_to_split(features, classes, seed_rows.tolist()),
        eval=_classify_rows_to_split(features, classes, eval_rows.tolist()),
    )


# ---------------------------------------------------------------------------------------
# pydoc

# Natural groups of the pydoc topics, after the chapters of the Python Language Reference
# and Library Reference they come from. Topics not listed (new in other Python versions)
# fall into "other".
# fmt: off
_PYDOC_FAMILIES: dict[str, tuple[str, ...]] = {
    "simple-statements": (
        "assert", "assignment", "augassign", "break", "continue", "del", "global",
        "import", "nonlocal", "pass", "raise", "return", "yield",
    ),
    "compound-statements": (
        "async", "class", "compound", "else", "for", "function", "if", "try", "while",
        "with",
    ),
    "expressions": (
        "atom-identifiers", "atom-literals", "attribute-references", "await", "binary",
        "bitwise", "booleans", "calls", "comparisons", "conversions", "dict", "exprlists",
        "in", "lambda", "lists", "operator-summary", "power", "shifting", "slicings",
        "subscriptions", "unary",
    ),
    "lexical": (
        "floating", "formatstrings", "id-classes", "identifiers", "imaginary", "integers",
        "numbers", "strings",
    ),
    "data-model": (
        "attribute-access", "callable-types", "context-managers", "customization",
        "numeric-types", "objects", "sequence-types", "specialattrs", "specialnames",
        "types",
    ),
    "builtin-types": (
        "bltin-code-objects", "bltin-ellipsis-object", "bltin-null-object",
        "bltin-type-objects", "string-methods", "truth", "typesfunctions", "typesmapping",
        "typesmethods", "typesmodules", "typesseq", "typesseq-mutable",
    ),
    "execution": ("debugger", "dynamic-features", "exceptions", "execmodel", "naming"),
}
# fmt: on
_PYDOC_FAMILY_OF = {topic: family for family, topics in _PYDOC_FAMILIES.items() for topic in topics}


def _pydoc_corpus(seed: int) -> _TextCorpus:
    from pydoc_data.topics import topics

    families = sorted({_PYDOC_FAMILY_OF.get(topic, "other") for topic in topics})
    documents = []
    for topic in sorted(topics):
        family = _PYDOC_FAMILY_OF.get(topic, "other")
        for text in _merge_paragraphs(_paragraphs(topics[topic])):
            documents.append(_Document(text, group=family, label=families.index(family)))
    pool, eval_documents, seed_documents = _hold_out(documents, _rng(seed, "pydoc-hold-out"))
    return _TextCorpus(
        pool=tuple(pool),
        eval_texts=tuple(document.text for document in eval_documents),
        seed_texts=tuple(document.text for document in seed_documents),
    )


# ---------------------------------------------------------------------------------------
# text:PATH


def _folder_corpus(folder: Path, seed: int) -> _TextCorpus:
    pool: list[_Document] = []
    eval_texts: list[str] = []
    seed_texts: list[str] = []
    for label, (site, text) in enumerate(_read_sites(folder)):
        # Hold out paragraphs, not merged documents, so small sites still give up only a few.
        site_pool, site_eval, site_seed = _hold_out(
            _site_pieces(text), _rng(seed, "text-hold-out", site)
        )
        pool.extend(_Document(chunk, site, label) for chunk in _merge_paragraphs(site_pool))
        eval_texts.extend(site_eval)
        seed_texts.extend(site_seed)
    return _TextCorpus(pool=tuple(pool), eval_texts=tuple(eval_texts), seed_texts=tuple(seed_texts))


def _site_pieces(text: str) -> list[str]:
    """A site's text as held-out units: its paragraphs, or equal slices when they are few.

    Files without blank lines are one paragraph each, which would leave nothing to hold
    out; such a site is cut into ``_MIN_SITE_PIECES`` slices at whitespace instead.
    """
    paragraphs = _paragraphs(text)
    if len(paragraphs) >= _MIN_SITE_PIECES:
        return paragraphs
    text = "\n\n".join(paragraphs)
    size = max(1, math.ceil(len(text) / _MIN_SITE_PIECES))
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            end = max(text.rfind(" ", start + 1, end), text.rfind("\n", start + 1, end)) + 1 or end
        pieces.append(text[start:end].strip())
        start = end
    return [piece for piece in pieces if piece]


def _read_sites(folder: Path) -> list[tuple[str, str]]:
    """(site name, text) for each top-level .txt file and each top-level sub-folder."""
    if not folder.is_dir():
        raise ValueError(f"dataset='text:{folder}': folder {str(folder)!r} does not exist")
    sites = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            files = sorted(path for path in entry.rglob("*.txt") if path.is_file())
        else:
            files = [entry] if entry.suffix == ".txt" else []
        text = "\n\n".join(path.read_text(encoding="utf-8", errors="replace") for path in files)
        if text.strip():
            sites.append((entry.name, text))
    if not sites:
        raise ValueError(
            f"dataset='text:{folder}': folder {str(folder)!r} has no non-empty .txt files "
            "(top-level files or files inside top-level sub-folders)"
        )
    return sites
