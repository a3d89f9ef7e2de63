"""The data section: which dataset a run uses and how each client's share is cut.

Besides its keys, this module owns the names they accept (datasets, partitioners, anchor
seed corpora) and the small parsers that check them, so that a run-config is validated
without building any corpus. ``fedaso.data`` reads these names from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedaso.checks import is_count, is_finite_number, require
from fedaso.config.fields import Section, setting

FACTS_DOMAINS = {"facts": ("a", "b"), "facts:a": ("a",), "facts:b": ("b",)}
TEXT_PREFIX = "text:"
FILE_PREFIX = "file:"
NATURAL_PREFIX = "natural:"
DATASETS_ALLOWED = "facts, facts:a, facts:b, pydoc, digits, text:PATH, file:PATH"
PARTITIONERS_ALLOWED = (
    "iid, dirichlet:ALPHA (ALPHA a number > 0), natural, natural:COLUMN (file: datasets)"
)
# The server's k-means seed corpus: the dataset's own held-out seed text ("generic"), or
# for facts, documents about public entities that no client holds ("knowledge"), or only
# the tokens of those documents' fact values ("knowledge-values").
ANCHOR_SEEDS = ("generic", "knowledge", "knowledge-values")
# Knowledge density of facts (docs/SPEC.md section 9): up to this many sentences of generic
# prose follow each fact; beyond it a document would be mostly prose from a small pool.
MAX_FACTS_PROSE_SENTENCES = 20


@dataclass(frozen=True, kw_only=True)
class DataSettings(Section):
    """Which dataset to load and how to split it (the run-config's data keys)."""

    dataset: str = setting(
        "facts",
        (
            "facts | facts:a | facts:b | pydoc | digits | text:FOLDER | file:PATH (.jsonl, .json,"
            " .csv, .parquet)"
        ),
    )
    partitioner: str = setting(
        "iid",
        (
            "iid | dirichlet:ALPHA | natural | natural:COLUMN (file: data; flwr-datasets "
            "partitioners)"
        ),
    )
    seq_len: int = setting(64, "LM context length in tokens (bytes for the reference model)")
    window_stride: int = setting(
        16, "tokens between training windows' starts, 0 = disjoint windows (always under dp-sgd)"
    )
    test_fraction: float = setting(0.2, "per-client held-out share of rows, in [0, 1)")
    facts_entities: int = setting(40, "entities per facts domain")
    facts_prose_sentences: int = setting(
        0,
        f"pydoc prose sentences after each fact of facts' training and public documents, 0-"
        f"{MAX_FACTS_PROSE_SENTENCES} (0: dense documents; facts only)",
    )
    anchor_seed: str = setting(
        "generic",
        "corpus of the server's k-means anchors: the dataset's own seed text, or facts about "
        "public entities (facts only)",
        choices=ANCHOR_SEEDS,
        server_only=True,
    )

    def check(self) -> None:
        require(
            dataset_kind(self.dataset) is not None,
            "dataset",
            self.dataset,
            f"must be one of {DATASETS_ALLOWED}",
        )
        self._check_partitioner()
        require(
            self.anchor_seed == "generic" or dataset_kind(self.dataset) == "facts",
            "anchor-seed",
            self.anchor_seed,
            f"knowledge seeds anchors with facts about public entities; dataset={self.dataset!r} "
            "is not a facts dataset",
        )
        require(
            is_count(self.seq_len, minimum=2), "seq-len", self.seq_len, "must be an integer >= 2"
        )
        require(
            is_finite_number(self.test_fraction) and 0 <= self.test_fraction < 1,
            "test-fraction",
            self.test_fraction,
            "must be a number in [0, 1)",
        )
        require(
            is_count(self.facts_entities, minimum=2),
            "facts-entities",
            self.facts_entities,
            "must be an integer >= 2",
        )
        require(
            is_count(self.facts_prose_sentences, minimum=0)
            and self.facts_prose_sentences <= MAX_FACTS_PROSE_SENTENCES,
            "facts-prose-sentences",
            self.facts_prose_sentences,
            f"must be an integer in [0, {MAX_FACTS_PROSE_SENTENCES}]",
        )
        require(
            self.facts_prose_sentences == 0 or dataset_kind(self.dataset) == "facts",
            "facts-prose-sentences",
            self.facts_prose_sentences,
            f"sets the knowledge density of facts documents; dataset={self.dataset!r} is not a "
            "facts dataset",
        )
        require(
            is_count(self.window_stride, minimum=0) and self.window_stride <= self.seq_len + 1,
            "window-stride",
            self.window_stride,
            f"must be an integer in [0, seq-len + 1 = {self.seq_len + 1}] (0: disjoint windows)",
        )

    def _check_partitioner(self) -> None:
        kind = dataset_kind(self.dataset)
        require(
            self.partitioner in ("iid", "natural")
            or dirichlet_alpha(self.partitioner) is not None
            or bool(group_column(self.partitioner)),
            "partitioner",
            self.partitioner,
            f"must be one of {PARTITIONERS_ALLOWED}",
        )
        require(
            not group_column(self.partitioner) or kind == "file",
            "partitioner",
            self.partitioner,
            f"natural:COLUMN partitions file: datasets; dataset={self.dataset!r} has no columns",
        )
        require(
            not (self.partitioner == "natural" and kind == "file"),
            "partitioner",
            self.partitioner,
            "a file: dataset partitions naturally by a column: use natural:COLUMN",
        )
        require(
            not (self.partitioner == "natural" and kind == "digits"),
            "partitioner",
            self.partitioner,
            "digits has no natural partition id; use iid or dirichlet:ALPHA",
        )

    @property
    def task(self) -> str:
        """``"classify"`` for digits, ``"lm"`` for every text dataset."""
        return task_of(self.dataset)


def dataset_kind(dataset: object) -> str | None:
    """``"facts"``, ``"pydoc"``, ``"digits"``, ``"text"`` or ``"file"``; None if unknown."""
    if not isinstance(dataset, str):
        return None
    if dataset in FACTS_DOMAINS:
        return "facts"
    if dataset in ("pydoc", "digits"):
        return dataset
    for prefix in (TEXT_PREFIX, FILE_PREFIX):
        if dataset.startswith(prefix) and dataset.removeprefix(prefix):
            return prefix.removesuffix(":")
    return None


def is_dataset_name(dataset: object) -> bool:
    """True if ``dataset`` names a built-in dataset or has the form ``text:PATH``/``file:PATH``."""
    return dataset_kind(dataset) is not None


def task_of(dataset: str) -> str:
    """``"classify"`` for digits, ``"lm"`` for every text dataset."""
    kind = dataset_kind(dataset)
    require(kind is not None, "dataset", dataset, f"must be one of {DATASETS_ALLOWED}")
    return "classify" if kind == "digits" else "lm"


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
