"""Built-in offline datasets of FedASO and their partitioning across clients.

Every dataset is available without any download:

* ``facts`` (``facts:a``, ``facts:b``): a corpus of invented facts this module generates from
  the seed. Domain A ("geography") holds countries with a capital, a currency, a language
  and a river, grouped by continent; domain B ("people") holds persons with a birthplace, a
  profession, an instrument and a pet, grouped by family. Every fact is stated in three
  training documents (canonical sentence and two paraphrases), and the central ``eval`` is a
  separate rendering with other phrasings and filler. Recall prompts ask for every fact in
  its canonical form, e.g. ``"The capital of Veltria is"`` -> ``" Morvane."``.
* ``pydoc``: the Python reference topics that CPython ships in ``pydoc_data.topics``,
  grouped into hand-picked topic families (see ``_PYDOC_FAMILIES``).
* ``digits``: scikit-learn's 8x8 handwritten digits (``load_digits``), a classification task.
* ``text:PATH``: a folder of ``.txt`` files; each top-level file or top-level sub-folder is one
  site (natural partition).
* ``file:PATH``: a JSON, JSON Lines, CSV or Parquet file of text or instruction records
  (``fedaso.files``), partitioned naturally by a column with ``natural:COLUMN``.

Language-model (``lm``) data is encoded by the data config's ``tokenizer``: UTF-8 bytes for
the reference model, or an ``hf:`` model's own tokenizer (``fedaso.tokens``). Documents are
joined by newlines, encoded and cut into windows of ``seq_len + 1`` tokens; an instruction
record is one right-padded sequence whose prompt and padding carry no loss. Partitions come from
flwr-datasets partitioners applied to an in-memory table of the pooled documents; each
partition is then split into train and test rows. Everything is deterministic in
``DataConfig`` and cached per config, so every process builds the same tensors cheaply.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from fedaso.config import is_finite_number, require
from fedaso.files import FILE_PREFIX, instruction_sequence, load_file_records
from fedaso.tokens import BYTE_VOCAB_SIZE, TextCodec, load_codec

if TYPE_CHECKING:
    import datasets
    from flwr_datasets.partitioner import Partitioner

VOCAB_SIZE = BYTE_VOCAB_SIZE  # byte-level LM
DIGITS_NUM_FEATURES = 64  # 8x8 pixels
DIGITS_NUM_CLASSES = 10

DATASETS_ALLOWED = "facts, facts:a, facts:b, pydoc, digits, text:PATH, file:PATH"
PARTITIONERS_ALLOWED = (
    "iid, dirichlet:ALPHA (ALPHA a number > 0), natural, natural:COLUMN (file: datasets)"
)
NATURAL_PREFIX = "natural:"
FACTS_DOMAINS = {"facts": ("a", "b"), "facts:a": ("a",), "facts:b": ("b",)}
TEXT_PREFIX = "text:"

# Held-out shares of pydoc's documents and of each text site's paragraphs.
_EVAL_FRACTION = 0.10
_SEED_FRACTION = 0.05
# digits holds out more for eval: its rows are single samples, not long documents.
_DIGITS_EVAL_FRACTION = 0.15
_DIGITS_SEED_FRACTION = 0.05
# A text site with fewer paragraphs than this is cut into this many slices by size instead.
_MIN_SITE_PIECES = 20
# Consecutive paragraphs are merged into documents of at least this many characters, so
# that a row carries enough bytes for a few LM windows.
_DOCUMENT_CHARS = 1000
# Dirichlet resamples until every partition has this many rows: one to train on, one to test.
_MIN_PARTITION_ROWS = 2
_FACTS_GROUPS = 8  # continents (domain A) and families (domain B) per domain

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to load and how to split it across ``num_partitions`` clients."""

    dataset: str = "facts"  # facts | facts:a | facts:b | pydoc | digits | text:PATH | file:PATH
    partitioner: str = "iid"  # iid | dirichlet:ALPHA (ALPHA > 0) | natural | natural:COLUMN
    num_partitions: int = 10  # clients, >= 1
    seq_len: int = 64  # bytes per LM training window, >= 2
    test_fraction: float = 0.2  # per-partition held-out share of rows, in [0, 1)
    seed: int = 0  # seeds the facts corpus, hold-outs, partitioning and train/test splits
    facts_entities: int = 40  # entities per facts domain, >= 2
    window_stride: int = 16  # bytes between LM training windows' starts; 0 = disjoint windows
    tokenizer: str = ""  # "" = UTF-8 bytes; else a Hugging Face tokenizer's name or path

    def __post_init__(self) -> None:
        require(
            isinstance(self.dataset, str) and _dataset_kind(self.dataset) is not None,
            "dataset",
            self.dataset,
            f"must be one of {DATASETS_ALLOWED}",
        )
        require(
            isinstance(self.partitioner, str)
            and (
                self.partitioner in ("iid", "natural")
                or _dirichlet_alpha(self.partitioner) is not None
                or bool(group_column(self.partitioner))
            ),
            "partitioner",
            self.partitioner,
            f"must be one of {PARTITIONERS_ALLOWED}",
        )
        require(
            not group_column(self.partitioner) or _dataset_kind(self.dataset) == "file",
            "partitioner",
            self.partitioner,
            f"natural:COLUMN partitions file: datasets; dataset={self.dataset!r} has no columns",
        )
        require(
            not (self.partitioner == "natural" and _dataset_kind(self.dataset) == "file"),
            "partitioner",
            self.partitioner,
            "a file: dataset partitions naturally by a column: use natural:COLUMN",
        )
        require(isinstance(self.tokenizer, str), "tokenizer", self.tokenizer, "must be a string")
        require(
            not (self.partitioner == "natural" and self.dataset == "digits"),
            "partitioner",
            self.partitioner,
            "digits has no natural partition id; use iid or dirichlet:ALPHA",
        )
        require(
            _is_int(self.num_partitions) and self.num_partitions >= 1,
            "num-partitions",
            self.num_partitions,
            "must be an integer >= 1",
        )
        require(
            _is_int(self.seq_len) and self.seq_len >= 2,
            "seq-len",
            self.seq_len,
            "must be an integer >= 2",
        )
        require(
            is_finite_number(self.test_fraction) and 0 <= self.test_fraction < 1,
            "test-fraction",
            self.test_fraction,
            "must be a number in [0, 1)",
        )
        require(_is_int(self.seed) and self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        require(
            _is_int(self.facts_entities) and self.facts_entities >= 2,
            "facts-entities",
            self.facts_entities,
            "must be an integer >= 2",
        )
        require(
            _is_int(self.window_stride) and 0 <= self.window_stride <= self.seq_len + 1,
            "window-stride",
            self.window_stride,
            f"must be an integer in [0, seq-len + 1 = {self.seq_len + 1}] (0: disjoint windows)",
        )


@dataclass(frozen=True)
class TensorSplit:
    """Model-ready examples: LM windows or digit samples."""

    inputs: torch.Tensor  # LM: (n, seq_len) int64 byte ids; classify: (n, 64) float32
    targets: torch.Tensor  # LM: (n, seq_len) int64 next-byte ids; classify: (n,) int64

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs has {self.inputs.shape[0]} rows but targets has "
                f"{self.targets.shape[0]}; they must match"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]


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


def is_dataset_name(dataset: object) -> bool:
    """True if ``dataset`` names a built-in dataset or has the form ``text:PATH``."""
    return _dataset_kind(dataset) is not None


def task_of(dataset: str) -> str:
    """``"classify"`` for digits, ``"lm"`` for every text dataset."""
    kind = _dataset_kind(dataset)
    require(kind is not None, "dataset", dataset, f"must be one of {DATASETS_ALLOWED}")
    return "classify" if kind == "digits" else "lm"


def encode_text(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as int64 ids, shape ``(n,)``."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.int64)  # (n,)


def decode_bytes(ids: Sequence[int] | torch.Tensor) -> str:
    """Inverse of :func:`encode_text`; invalid UTF-8 becomes U+FFFD instead of raising."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    return bytes(int(value) for value in values).decode("utf-8", errors="replace")


def load_partition(config: DataConfig, partition_id: int) -> ClientData:
    """Train and test data of partition ``partition_id`` in ``[0, config.num_partitions)``.

    With ``partitioner="natural"``, partition ids follow the sorted group names (continents
    then families for facts, topic families for pydoc, site names for ``text:PATH``).

    Raises
    ------
    ValueError
        If ``partition_id`` is out of range, the partitioner cannot split the dataset into
        ``num_partitions`` partitions, or the partition is too small for one training window.
    """
    require(
        _is_int(partition_id) and 0 <= partition_id < config.num_partitions,
        "partition_id",
        partition_id,
        f"must be an integer in [0, num_partitions={config.num_partitions})",
    )
    corpus = _corpus_of(config)
    rows = _partition_rows(config)[partition_id]
    train_rows, test_rows = _train_test_rows(rows, config, partition_id)
    # Overlapping training windows show every fact at several positions of the context;
    # held-out windows stay disjoint so that no byte is scored twice.
    train = corpus.rows_to_split(train_rows, config.window_stride or config.seq_len + 1)
    if len(train) == 0:
        raise ValueError(
            f"partition {partition_id} of dataset={config.dataset!r} has fewer than "
            f"seq-len + 1 = {config.seq_len + 1} training bytes; use fewer partitions, "
            "a smaller seq-len or a smaller test-fraction"
        )
    return ClientData(train=train, test=corpus.rows_to_split(test_rows, config.seq_len + 1))


def load_central(config: DataConfig) -> CentralData:
    """The server's data; it depends only on dataset, seed, seq_len and facts_entities."""
    corpus = _corpus_of(config)
    return CentralData(
        task=corpus.task,
        seed_corpus=corpus.seed_corpus,
        eval=corpus.eval,
        recall_prompts=corpus.recall_prompts,
    )


def dataset_texts(dataset: str, *, seed: int = 0, facts_entities: int = 40) -> list[str]:
    """Every document of a built-in or ``text:`` dataset, e.g. to train a tokenizer on."""
    kind = _dataset_kind(dataset)
    require(
        kind in ("facts", "pydoc", "text"),
        "dataset",
        dataset,
        "must be a text dataset: facts, facts:a, facts:b, pydoc or text:PATH",
    )
    corpus = _text_corpus(dataset, seed, facts_entities)
    return [d.text for d in corpus.pool] + list(corpus.eval_texts) + list(corpus.seed_texts)


# ---------------------------------------------------------------------------------------
# Config parsing


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dataset_kind(dataset: object) -> str | None:
    """``"facts"``, ``"pydoc"``, ``"digits"`` or ``"text"``; None for an unknown name."""
    if not isinstance(dataset, str):
        return None
    if dataset in FACTS_DOMAINS:
        return "facts"
    if dataset in ("pydoc", "digits"):
        return dataset
    if dataset.startswith(TEXT_PREFIX) and dataset.removeprefix(TEXT_PREFIX):
        return "text"
    if dataset.startswith(FILE_PREFIX) and dataset.removeprefix(FILE_PREFIX):
        return "file"
    return None


def group_column(partitioner: str) -> str:
    """COLUMN of ``natural:COLUMN``; ``""`` for every other partitioner."""
    if not partitioner.startswith(NATURAL_PREFIX):
        return ""
    return partitioner.removeprefix(NATURAL_PREFIX).strip()


def _dirichlet_alpha(partitioner: str) -> float | None:
    """ALPHA of ``"dirichlet:ALPHA"``; None unless ``partitioner`` has that form, ALPHA > 0."""
    kind, _, value = partitioner.partition(":")
    if kind != "dirichlet":
        return None
    try:
        alpha = float(value)
    except ValueError:
        return None
    return alpha if math.isfinite(alpha) and alpha > 0 else None


def _rng(*salt: object) -> random.Random:
    """A private generator per purpose; str seeds hash with SHA-512, stable across processes."""
    return random.Random(":".join(str(part) for part in salt))


# ---------------------------------------------------------------------------------------
# Corpora: the pooled rows to partition, plus the server's seed corpus and eval set


@dataclass(frozen=True)
class _Document:
    """One pooled LM row."""

    text: str
    group: str  # natural partition id
    label: int  # Dirichlet class


@dataclass(frozen=True)
class _TextCorpus:
    """An LM dataset before windowing."""

    pool: tuple[_Document, ...]  # rows that get partitioned
    eval_texts: tuple[str, ...]
    seed_texts: tuple[str, ...]
    recall_prompts: tuple[RecallPrompt, ...] = ()


@dataclass(frozen=True, eq=False)  # holds tensors and a function: compare by identity
class _Corpus:
    """A dataset ready for partitioning: per-row keys and a way to tensorize rows."""

    task: str  # "lm" or "classify"
    groups: tuple[str, ...] | None  # per pool row: natural partition id; None: has none
    labels: tuple[int, ...]  # per pool row: Dirichlet class
    rows_to_split: Callable[[Sequence[int], int], TensorSplit]  # (pool rows, stride) -> tensors
    seed_corpus: TensorSplit
    eval: TensorSplit
    recall_prompts: tuple[RecallPrompt, ...] = ()


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
    )


@functools.lru_cache(maxsize=8)
def _build_corpus(
    dataset: str, seed: int, facts_entities: int, seq_len: int, tokenizer: str, column: str
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
    return corpus


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
    texts = tuple(document.text for document in corpus.pool)
    return _Corpus(
        task="lm",
        groups=tuple(document.group for document in corpus.pool),
        labels=tuple(document.label for document in corpus.pool),
        rows_to_split=functools.partial(_lm_rows_to_split, texts, seq_len, codec),
        seed_corpus=_lm_windows(corpus.seed_texts, seq_len, codec=codec),
        eval=_lm_windows(corpus.eval_texts, seq_len, codec=codec),
        recall_prompts=corpus.recall_prompts,
    )


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
    texts: tuple[str, ...], seq_len: int, codec: TextCodec, rows: Sequence[int], stride: int
) -> TensorSplit:
    return _lm_windows([texts[row] for row in rows], seq_len, stride, codec=codec)


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


# ---------------------------------------------------------------------------------------
# facts


@dataclass(frozen=True)
class _Attribute:
    """One kind of fact of a facts domain and the sentences that state it."""

    prompt: str  # canonical recall prompt, with {e} for the entity, e.g. "The capital of {e} is"
    paraphrases: tuple[str, ...]  # other training phrasings, with {e} and {v} (the value)
    held_out: str  # a phrasing used only in the central eval set
    choices: tuple[str, ...] = ()  # vocabulary of values; empty: invent a name per entity

    @property
    def canonical(self) -> str:
        return self.prompt + " {v}."

    @property
    def training_templates(self) -> tuple[str, ...]:
        return (self.canonical, *self.paraphrases)

    @property
    def eval_templates(self) -> tuple[str, ...]:
        return (self.held_out, *self.paraphrases)


@dataclass(frozen=True)
class _Domain:
    key: str  # "a" or "b", as in the dataset name "facts:a"
    entity_format: str  # how an entity is named from an invented {name} and its {group}
    intros: tuple[str, ...]  # opening sentence of each training document, with {e} and {g}
    held_out_intro: str  # opening sentence of the eval document
    attributes: tuple[_Attribute, ...]


@dataclass(frozen=True)
class _Entity:
    domain: _Domain
    name: str  # as written in sentences, e.g. "Veltria" or "Talia Brenhollow"
    group: str  # continent or family
    label: int  # group index, unique across domains
    values: tuple[str, ...]  # one per attribute

    def state(self, attribute_index: int, template: str) -> str:
        """The sentence ``template`` stating one of this entity's facts."""
        return template.format(e=self.name, v=self.values[attribute_index])


# Vocabularies of the people facts that are not invented names.
# fmt: off
_PROFESSIONS = (
    "a glassblower", "a cartographer", "a beekeeper", "a clockmaker", "a ferryman",
    "an archivist", "an astronomer", "a potter", "a weaver", "a baker", "a bookbinder",
    "a stonemason",
)
_INSTRUMENTS = (
    "lute", "oboe", "harp", "fiddle", "cello", "zither", "flute", "drum", "bagpipe",
    "dulcimer", "trumpet", "banjo",
)
_PETS = (
    "heron", "ferret", "tortoise", "parrot", "goat", "hedgehog", "lizard", "rabbit", "canary",
    "magpie", "snail", "toad",
)
# fmt: on
_GEOGRAPHY = _Domain(
    key="a",
    entity_format="{name}",
    intros=(
        "{e} is a country on the continent of {g}.",
        "This entry describes {e}, a land in {g}.",
        "Among the nations of {g} is {e}.",
    ),
    held_out_intro="Our next stop is {e}, which lies in {g}.",
    attributes=(
        _Attribute(
            prompt="The capital of {e} is",
            paraphrases=("{v} is the capital city of {e}.", "The government of {e} sits in {v}."),
            held_out="Visitors to {e} usually arrive in {v}.",
        ),
        _Attribute(
            prompt="The currency of {e} is the",
            paraphrases=("People in {e} pay with the {v}.", "The {v} is the money of {e}."),
            held_out="Prices in {e} are quoted in the {v}.",
        ),
        _Attribute(
            prompt="The language of {e} is",
            paraphrases=("Most people in {e} speak {v}.", "{v} is the main language of {e}."),
            held_out="Children in {e} learn to read in {v}.",
        ),
        _Attribute(
            prompt="The longest river in {e} is the",
            paraphrases=(
                "The {v} flows through {e}.",
                "{e} is crossed by the {v}, its longest river.",
            ),
            held_out="Boats on the {v} carry goods across {e}.",
        ),
    ),
)
_PEOPLE = _Domain(
    key="b",
    entity_format="{name} {group}",
    intros=(
        "{e} is a member of the {g} family.",
        "This entry is about {e} of the {g} family.",
        "The {g} family counts {e} among its members.",
    ),
    held_out_intro="Let us turn to {e}, one of the {g} family.",
    attributes=(
        _Attribute(
            prompt="{e} was born in",
            paraphrases=("{e} came into the world in {v}.", "{v} is the home town of {e}."),
            held_out="{e} grew up in {v}.",
        ),
        _Attribute(
            prompt="{e} works as",
            paraphrases=("By trade, {e} is {v}.", "{e} earns a living as {v}."),
            held_out="Everyone knows {e} as {v}.",
            choices=_PROFESSIONS,
        ),
        _Attribute(
            prompt="{e} plays the",
            paraphrases=(
                "In the evenings {e} practises the {v}.",
                "The {v} is the instrument of {e}.",
            ),
            held_out="{e} owns a well-worn {v}.",
            choices=_INSTRUMENTS,
        ),
        _Attribute(
            prompt="{e} keeps a pet",
            paraphrases=("{e} lives with a {v}.", "A {v} is the companion of {e}."),
            held_out="{e} feeds a {v} every morning.",
            choices=_PETS,
        ),
    ),
)
_DOMAINS = (_GEOGRAPHY, _PEOPLE)
# One training document per training phrasing, so each fact is stated once in each phrasing.
_DOCS_PER_ENTITY = 3

# Generic sentences without facts; eval filler is disjoint from training filler.
_TRAINING_FILLER = (
    "The weather stayed mild for most of the year.",
    "Many stories are told about the old roads.",
    "Some records from that time have been lost.",
    "Local markets open early in the morning.",
    "Travel was slow before the railways came.",
    "Scholars still argue about the details.",
    "Winters there can be long and quiet.",
    "Festivals mark the turning of the seasons.",
    "Most towns have a small library.",
    "Letters were often carried by boat.",
    "The hills are covered in tall grass.",
    "Children play games in the village square.",
    "Old maps show many forgotten paths.",
    "Bread is baked fresh every day.",
    "Few people keep written diaries.",
    "Rain falls mostly in the autumn months.",
    "Bridges of stone cross the smaller streams.",
    "The night sky is very clear in summer.",
    "Music is played at every wedding.",
    "Visitors often remark on the friendly welcome.",
    "Tea is served with honey and lemon.",
    "Lanterns light the streets after dark.",
    "Many houses have gardens full of herbs.",
    "News travels quickly between neighbours.",
)
_EVAL_FILLER = (
    "Historians disagree about the oldest records.",
    "Snow rarely settles near the coast.",
    "Most families gather for a long evening meal.",
    "The roads were repaved a few years ago.",
    "Fishing boats return before sunset.",
    "A small museum keeps old tools and coins.",
    "Autumn brings strong winds from the west.",
    "Many songs are passed down without being written.",
    "Pottery from the region is simple and sturdy.",
    "The spring fair draws crowds from far away.",
    "Clocks in the town square chime every hour.",
    "Bees are kept in many orchards.",
)
# Syllables of invented names; short names keep documents and recall answers short.
_NAME_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr")
_NAME_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei")
_NAME_CODAS = ("", "", "", "", "n", "r", "l", "s")


def _invent_name(rng: random.Random, taken: set[str]) -> str:
    """A new capitalized name of 2 (mostly) or 3 syllables, not in ``taken``; adds it there."""
    while True:
        syllables = [
            rng.choice(_NAME_ONSETS) + rng.choice(_NAME_VOWELS) + rng.choice(_NAME_CODAS)
            for _ in range(rng.choice((2, 2, 2, 3)))
        ]
        name = "".join(syllables).capitalize()
        if name not in taken:
            taken.add(name)
            return name


@functools.lru_cache(maxsize=8)
def _facts_world(seed: int, entities_per_domain: int) -> tuple[_Entity, ...]:
    """Both domains' entities; facts:a and facts:b are slices of the same world."""
    rng = _rng(seed, "facts-world")
    taken: set[str] = set()  # all invented names, so that no name is reused across domains
    num_groups = min(_FACTS_GROUPS, entities_per_domain)
    entities = []
    for domain_index, domain in enumerate(_DOMAINS):
        groups = [_invent_name(rng, taken) for _ in range(num_groups)]
        for index in range(entities_per_domain):
            group_index = index % num_groups
            values = tuple(
                rng.choice(attribute.choices) if attribute.choices else _invent_name(rng, taken)
                for attribute in domain.attributes
            )
            name = domain.entity_format.format(
                name=_invent_name(rng, taken), group=groups[group_index]
            )
            entities.append(
                _Entity(
                    domain=domain,
                    name=name,
                    group=groups[group_index],
                    label=domain_index * num_groups + group_index,
                    values=values,
                )
            )
    return tuple(entities)


def _training_document(entity: _Entity, index: int, rng: random.Random) -> str:
    """Training document ``index``: each fact in phrasing ``index + attribute`` (rotating)."""
    facts = [
        entity.state(a, attribute.training_templates[(index + a) % _DOCS_PER_ENTITY])
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.intros[index].format(e=entity.name, g=entity.group)
    # Closing with filler keeps every fact away from the cut-off tail of a byte stream.
    return " ".join([intro, *facts, rng.choice(_TRAINING_FILLER)])


def _eval_document(entity: _Entity, rng: random.Random) -> str:
    facts = [
        entity.state(a, rng.choice(attribute.eval_templates))
        for a, attribute in enumerate(entity.domain.attributes)
    ]
    rng.shuffle(facts)
    intro = entity.domain.held_out_intro.format(e=entity.name, g=entity.group)
    return " ".join([intro, *facts, rng.choice(_EVAL_FILLER)])


def _canonical_sentences(entity: _Entity) -> list[str]:
    return [
        entity.state(a, attribute.canonical) for a, attribute in enumerate(entity.domain.attributes)
    ]


def _recall_prompts(entity: _Entity) -> list[RecallPrompt]:
    return [
        RecallPrompt(attribute.prompt.format(e=entity.name), f" {value}.")
        for attribute, value in zip(entity.domain.attributes, entity.values, strict=True)
    ]


def _facts_corpus(domains: tuple[str, ...], seed: int, entities_per_domain: int) -> _TextCorpus:
    entities = [
        entity for entity in _facts_world(seed, entities_per_domain) if entity.domain.key in domains
    ]
    # One generator per entity, so that facts:a and facts:b are exactly the halves of facts.
    rngs = {entity.name: _rng(seed, "facts-render", entity.name) for entity in entities}
    pool = [
        _Document(_training_document(entity, index, rngs[entity.name]), entity.group, entity.label)
        for entity in entities
        for index in range(_DOCS_PER_ENTITY)
    ]
    return _TextCorpus(
        pool=tuple(pool),
        eval_texts=tuple(_eval_document(entity, rngs[entity.name]) for entity in entities),
        seed_texts=tuple(" ".join(_canonical_sentences(entity)) for entity in entities),
        recall_prompts=tuple(p for entity in entities for p in _recall_prompts(entity)),
    )


# ---------------------------------------------------------------------------------------
# Partitioning


# Bump when the partition rows of the same inputs would change (cache files then miss).
PARTITION_CACHE_VERSION = 1
CACHE_DIR_VARIABLE = "FEDASO_CACHE_DIR"  # "" turns the on-disk partition cache off


@functools.lru_cache(maxsize=8)
def _partition_rows(config: DataConfig) -> tuple[tuple[int, ...], ...]:
    """Pool row indices of every partition, from the flwr-datasets partitioner.

    Every client process needs them, and importing flwr-datasets costs each process about
    two seconds (its package imports its plotting helpers), so the result is also cached on
    disk (:func:`partition_cache_path`), keyed by everything it depends on.
    """
    corpus = _corpus_of(config)
    _check_partition_count(config, corpus)
    path = partition_cache_path(config, corpus)
    cached = _read_partition_cache(path, config.num_partitions, len(corpus.labels))
    if cached is not None:
        return cached
    rows = _partition_with_flwr_datasets(config, corpus)
    _write_partition_cache(path, rows)
    return rows


def partition_cache_path(config: DataConfig, corpus: _Corpus) -> Path | None:
    """The cache file of ``config``'s partition rows, or None when caching is off.

    The directory is ``$FEDASO_CACHE_DIR`` (empty: off), else ``$XDG_CACHE_HOME/fedaso`` or
    ``~/.cache/fedaso``. The name hashes the partitioning inputs: the pool's labels and
    groups (so a changed ``text:PATH`` file misses), the partitioner, the number of
    partitions, the seed, and the versions of flwr-datasets and of this cache.
    """
    from importlib.metadata import version

    root = os.environ.get(CACHE_DIR_VARIABLE)
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedaso")
    if not root:
        return None
    key = json.dumps(
        [
            PARTITION_CACHE_VERSION,
            version("flwr-datasets"),
            config.partitioner,
            config.num_partitions,
            config.seed,
            corpus.labels,
            corpus.groups,
        ]
    )
    return Path(root) / f"partitions-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _read_partition_cache(
    path: Path | None, num_partitions: int, num_rows: int
) -> tuple[tuple[int, ...], ...] | None:
    """The cached rows, or None unless the file holds ``num_partitions`` lists of rows."""
    if path is None:
        return None
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(rows, list) and len(rows) == num_partitions):
        return None
    if not all(
        isinstance(part, list) and all(type(r) is int and 0 <= r < num_rows for r in part)
        for part in rows
    ):
        return None
    return tuple(tuple(part) for part in rows)


def _write_partition_cache(path: Path | None, rows: tuple[tuple[int, ...], ...]) -> None:
    """Write the rows atomically (concurrent clients may race); a failure only warns."""
    if path is None:
        return
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
            tmp_name = tmp.name
            json.dump([list(part) for part in rows], tmp)
        os.replace(tmp_name, path)
    except OSError as error:
        warnings.warn(f"could not cache partitions in {path}: {error}", stacklevel=2)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def _partition_with_flwr_datasets(
    config: DataConfig, corpus: _Corpus
) -> tuple[tuple[int, ...], ...]:
    """Run the flwr-datasets partitioner of ``config`` over the corpus's pool."""
    partitioner = _make_partitioner(config)
    partitioner.dataset = _pool_table(corpus, config.seed)
    try:
        with warnings.catch_warnings():
            # Dirichlet warns on each resampling; its final failure is reported below.
            warnings.filterwarnings("ignore", message="The specified min_partition_size")
            partitions = [partitioner.load_partition(pid) for pid in range(config.num_partitions)]
    except ValueError as error:
        # Only Dirichlet fails here, after its resampling budget leaves a partition too small.
        raise ValueError(
            f"partitioner={config.partitioner!r} could not give each of the "
            f"{config.num_partitions} partitions at least {_MIN_PARTITION_ROWS} of the "
            f"{len(corpus.labels)} documents of dataset={config.dataset!r}; use a larger "
            "ALPHA or fewer partitions"
        ) from error
    return tuple(tuple(partition["row"]) for partition in partitions)


def _check_partition_count(config: DataConfig, corpus: _Corpus) -> None:
    num_rows = len(corpus.labels)
    if config.num_partitions > num_rows:
        raise ValueError(
            f"num-partitions={config.num_partitions} exceeds the {num_rows} documents of "
            f"dataset={config.dataset!r}; use at most {num_rows} partitions"
        )
    if config.partitioner != "natural" and not group_column(config.partitioner):
        return
    assert corpus.groups is not None, "DataConfig rejects natural for datasets without groups"
    num_groups = len(set(corpus.groups))
    if config.num_partitions != num_groups:
        raise ValueError(
            f"partitioner={config.partitioner!r} makes one partition per group, and dataset="
            f"{config.dataset!r} has {num_groups} groups, but num-partitions="
            f"{config.num_partitions} (the number of clients); use {num_groups} clients "
            f"(--num-clients {num_groups}, or num-partitions={num_groups} in node-config)"
        )


def _make_partitioner(config: DataConfig) -> Partitioner:
    # Imported here: flwr_datasets takes seconds to import and only clients partition.
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        NaturalIdPartitioner,
    )

    if config.partitioner == "iid":
        return IidPartitioner(num_partitions=config.num_partitions)
    if config.partitioner == "natural" or group_column(config.partitioner):
        # Partition ids follow the sorted group names.
        return NaturalIdPartitioner(partition_by="group")
    return DirichletPartitioner(
        num_partitions=config.num_partitions,
        partition_by="label",
        alpha=_dirichlet_alpha(config.partitioner),
        min_partition_size=_MIN_PARTITION_ROWS,
        seed=config.seed,
    )


def _pool_table(corpus: _Corpus, seed: int) -> datasets.Dataset:
    """The pool as a table with the original row index, in a seeded random order."""
    import datasets

    # IidPartitioner takes contiguous shards, and pools are built entity by entity (facts),
    # topic by topic (pydoc) or site by site (text), so the rows are shuffled first; the
    # other partitioners do not depend on the order.
    order = list(range(len(corpus.labels)))
    _rng(seed, "pool-order").shuffle(order)
    columns: dict[str, list[int] | list[str]] = {
        "row": order,
        "label": [corpus.labels[row] for row in order],
    }
    if corpus.groups is not None:
        columns["group"] = [corpus.groups[row] for row in order]
    return datasets.Dataset.from_dict(columns)


def _train_test_rows(
    rows: Sequence[int], config: DataConfig, partition_id: int
) -> tuple[list[int], list[int]]:
    """Seeded split of a partition's rows; at least one row stays for training."""
    shuffled = list(rows)
    _rng(config.seed, "train-test", partition_id).shuffle(shuffled)
    num_test = max(0, min(int(len(shuffled) * config.test_fraction), len(shuffled) - 1))
    return shuffled[num_test:], shuffled[:num_test]
