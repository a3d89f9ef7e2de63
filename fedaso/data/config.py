"""What data a run uses and how it is split: ``DataConfig`` and the names it accepts.

The dataset and partitioner names, the held-out shares, and the small parsers that
``DataConfig`` validates with (``natural:COLUMN``, ``dirichlet:ALPHA``) live here, so that
the run-config can check data settings without building any corpus.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fedaso.config import is_finite_number, require
from fedaso.data.files import FILE_PREFIX
from fedaso.data.tokens import BYTE_VOCAB_SIZE

VOCAB_SIZE = BYTE_VOCAB_SIZE  # byte-level LM
DIGITS_NUM_FEATURES = 64  # 8x8 pixels
DIGITS_NUM_CLASSES = 10

DATASETS_ALLOWED = "facts, facts:a, facts:b, pydoc, digits, text:PATH, file:PATH"
PARTITIONERS_ALLOWED = (
    "iid, dirichlet:ALPHA (ALPHA a number > 0), natural, natural:COLUMN (file: datasets)"
)
NATURAL_PREFIX = "natural:"
# The server's k-means seed corpus: the dataset's own held-out seed text ("generic"), or
# for facts, documents about public entities that no client holds ("knowledge"), or only
# the tokens of those documents' fact values ("knowledge-values").
ANCHOR_SEEDS = ("generic", "knowledge", "knowledge-values")
FACTS_DOMAINS = {"facts": ("a", "b"), "facts:a": ("a",), "facts:b": ("b",)}
TEXT_PREFIX = "text:"

# Held-out shares of pydoc's documents and of each text site's paragraphs.
EVAL_FRACTION = 0.10
SEED_FRACTION = 0.05
# digits holds out more for eval: its rows are single samples, not long documents.
DIGITS_EVAL_FRACTION = 0.15
DIGITS_SEED_FRACTION = 0.05
# A text site with fewer paragraphs than this is cut into this many slices by size instead.
MIN_SITE_PIECES = 20
# Consecutive paragraphs are merged into documents of at least this many characters, so
# that a row carries enough bytes for a few LM windows.
DOCUMENT_CHARS = 1000
# Dirichlet resamples until every partition has this many rows: one to train on, one to test.
MIN_PARTITION_ROWS = 2
FACTS_GROUPS = 8  # continents (domain A) and families (domain B) per domain


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
    anchor_seed: str = "generic"  # server's k-means corpus: generic | knowledge | knowledge-values

    def __post_init__(self) -> None:
        require(
            isinstance(self.dataset, str) and dataset_kind(self.dataset) is not None,
            "dataset",
            self.dataset,
            f"must be one of {DATASETS_ALLOWED}",
        )
        require(
            isinstance(self.partitioner, str)
            and (
                self.partitioner in ("iid", "natural")
                or dirichlet_alpha(self.partitioner) is not None
                or bool(group_column(self.partitioner))
            ),
            "partitioner",
            self.partitioner,
            f"must be one of {PARTITIONERS_ALLOWED}",
        )
        require(
            not group_column(self.partitioner) or dataset_kind(self.dataset) == "file",
            "partitioner",
            self.partitioner,
            f"natural:COLUMN partitions file: datasets; dataset={self.dataset!r} has no columns",
        )
        require(
            not (self.partitioner == "natural" and dataset_kind(self.dataset) == "file"),
            "partitioner",
            self.partitioner,
            "a file: dataset partitions naturally by a column: use natural:COLUMN",
        )
        require(isinstance(self.tokenizer, str), "tokenizer", self.tokenizer, "must be a string")
        require(
            self.anchor_seed in ANCHOR_SEEDS,
            "anchor-seed",
            self.anchor_seed,
            f"must be one of {', '.join(ANCHOR_SEEDS)}",
        )
        require(
            self.anchor_seed == "generic" or dataset_kind(self.dataset) == "facts",
            "anchor-seed",
            self.anchor_seed,
            f"knowledge seeds anchors with facts about public entities; dataset={self.dataset!r} "
            "is not a facts dataset",
        )
        require(
            not (self.partitioner == "natural" and self.dataset == "digits"),
            "partitioner",
            self.partitioner,
            "digits has no natural partition id; use iid or dirichlet:ALPHA",
        )
        require(
            is_int(self.num_partitions) and self.num_partitions >= 1,
            "num-partitions",
            self.num_partitions,
            "must be an integer >= 1",
        )
        require(
            is_int(self.seq_len) and self.seq_len >= 2,
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
        require(is_int(self.seed) and self.seed >= 0, "seed", self.seed, "must be an integer >= 0")
        require(
            is_int(self.facts_entities) and self.facts_entities >= 2,
            "facts-entities",
            self.facts_entities,
            "must be an integer >= 2",
        )
        require(
            is_int(self.window_stride) and 0 <= self.window_stride <= self.seq_len + 1,
            "window-stride",
            self.window_stride,
            f"must be an integer in [0, seq-len + 1 = {self.seq_len + 1}] (0: disjoint windows)",
        )


def is_dataset_name(dataset: object) -> bool:
    """True if ``dataset`` names a built-in dataset or has the form ``text:PATH``."""
    return dataset_kind(dataset) is not None


def task_of(dataset: str) -> str:
    """``"classify"`` for digits, ``"lm"`` for every text dataset."""
    kind = dataset_kind(dataset)
    require(kind is not None, "dataset", dataset, f"must be one of {DATASETS_ALLOWED}")
    return "classify" if kind == "digits" else "lm"


# ---------------------------------------------------------------------------------------
# Config parsing


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dataset_kind(dataset: object) -> str | None:
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


def dirichlet_alpha(partitioner: str) -> float | None:
    """ALPHA of ``"dirichlet:ALPHA"``; None unless ``partitioner`` has that form, ALPHA > 0."""
    kind, _, value = partitioner.partition(":")
    if kind != "dirichlet":
        return None
    try:
        alpha = float(value)
    except ValueError:
        return None
    return alpha if math.isfinite(alpha) and alpha > 0 else None


def seeded_rng(*salt: object) -> random.Random:
    """A private generator per purpose; str seeds hash with SHA-512, stable across processes."""
    return random.Random(":".join(str(part) for part in salt))
