"""The documents of ``pydoc`` and ``text:PATH``, and the seeded hold-out of eval and seed data.

``pydoc`` reads the Python reference topics that CPython ships (``pydoc_data.topics``),
grouped into topic families; ``text:PATH`` reads a folder of ``.txt`` files, one site per
top-level file or sub-folder. Paragraphs are merged into documents of about
``DOCUMENT_CHARS`` characters, and :func:`hold_out` sets aside the eval and seed shares.
:func:`pydoc_sentences` gives the topics' plain prose sentences, which ``facts`` mixes into
its documents to make knowledge sparse (``facts-prose-sentences``).
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from fedaso.data.config import (
    DOCUMENT_CHARS,
    EVAL_FRACTION,
    MIN_SITE_PIECES,
    SEED_FRACTION,
    seeded_rng,
)
from fedaso.data.splits import Document, TextCorpus

_Item = TypeVar("_Item")


def hold_out(
    items: Sequence[_Item], rng: random.Random
) -> tuple[list[_Item], list[_Item], list[_Item]]:
    """Seeded split of ``items`` into (pool, eval, seed), each in the original order.

    Eval takes ``EVAL_FRACTION`` and seed ``SEED_FRACTION`` of the items (rounded up), each
    only while at least one item is left for the pool.
    """
    order = list(range(len(items)))
    rng.shuffle(order)
    num_eval = math.ceil(len(order) * EVAL_FRACTION) if len(order) >= 2 else 0
    num_seed = math.ceil(len(order) * SEED_FRACTION) if len(order) - num_eval >= 2 else 0
    held = num_eval + num_seed
    parts = (order[held:], order[:num_eval], order[num_eval:held])
    pool, eval_items, seed_items = ([items[index] for index in sorted(part)] for part in parts)
    return pool, eval_items, seed_items


def _paragraphs(text: str) -> list[str]:
    """The non-blank, blank-line separated paragraphs of ``text``."""
    return [part.rstrip() for part in re.split(r"\n\s*\n", text) if part.strip()]


def _merge_paragraphs(paragraphs: Sequence[str]) -> list[str]:
    """Consecutive paragraphs joined into documents of >= ``DOCUMENT_CHARS`` (bar the last)."""
    documents: list[str] = []
    current: list[str] = []
    for paragraph in paragraphs:
        current.append(paragraph)
        if sum(len(part) for part in current) >= DOCUMENT_CHARS:
            documents.append("\n\n".join(current))
            current = []
    if current:
        documents.append("\n\n".join(current))
    return documents


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


def pydoc_corpus(seed: int) -> TextCorpus:
    from pydoc_data.topics import topics

    families = sorted({_PYDOC_FAMILY_OF.get(topic, "other") for topic in topics})
    documents = []
    for topic in sorted(topics):
        family = _PYDOC_FAMILY_OF.get(topic, "other")
        for text in _merge_paragraphs(_paragraphs(topics[topic])):
            documents.append(Document(text, group=family, label=families.index(family)))
    pool, eval_documents, seed_documents = hold_out(documents, seeded_rng(seed, "pydoc-hold-out"))
    return TextCorpus(
        pool=tuple(pool),
        eval_texts=tuple(document.text for document in eval_documents),
        seed_texts=tuple(document.text for document in seed_documents),
    )


# A plain prose sentence: a capital, then letters, digits, spaces and basic punctuation
# (quotes as pydoc quotes keywords), ending in a full stop after a word. No braces (the
# facts' str.format templates), no code, no markup; 40-200 characters.
_PLAIN_SENTENCE = re.compile(r"[A-Z][A-Za-z0-9 ,;'\"()\-]{37,196}[A-Za-z0-9)]\.")
# A sentence ends at a full stop followed by whitespace and a capital ("e.g. the" does not).
_SENTENCE_BREAK = re.compile(r"(?<=\.)\s+(?=[A-Z])")
# A line's indentation, with a list item's marker ("1. ", "* ") counted as indentation.
_LINE_INDENT = re.compile(r"\s*(?:(?:\d+\.|[*-])\s+)?")


@functools.lru_cache(maxsize=1)
def pydoc_sentences() -> tuple[str, ...]:
    """The distinct plain prose sentences of the pydoc topics, in a fixed order.

    Each topic is cut into blocks of consecutive lines of equal indentation, so that a
    heading or a defined term never runs into the indented text below it; each block is
    flattened to one line and split into sentences, of which only plain ones are kept (no
    grammar, code or markup passes :data:`_PLAIN_SENTENCE`). The pool is CPython's, so it is
    fixed for a Python version, as the ``pydoc`` dataset is.
    """
    from pydoc_data.topics import topics

    sentences: dict[str, None] = {}  # an insertion-ordered set: sorted topics, text order
    for topic in sorted(topics):
        for column, block in itertools.groupby(topics[topic].splitlines(), key=_text_column):
            if column < 0:  # blank lines
                continue
            text = " ".join(" ".join(line[column:] for line in block).split())
            for sentence in _SENTENCE_BREAK.split(text):
                if _PLAIN_SENTENCE.fullmatch(sentence):
                    sentences[sentence] = None
    return tuple(sentences)


def _text_column(line: str) -> int:
    """Where ``line``'s text starts after indentation and a list marker; -1 if blank."""
    match = _LINE_INDENT.match(line)
    assert match is not None, "the pattern matches every string, if only the empty prefix"
    return match.end() if line.strip() else -1


# ---------------------------------------------------------------------------------------
# text:PATH


def folder_corpus(folder: Path, seed: int) -> TextCorpus:
    pool: list[Document] = []
    eval_texts: list[str] = []
    seed_texts: list[str] = []
    for label, (site, text) in enumerate(_read_sites(folder)):
        # Hold out paragraphs, not merged documents, so small sites still give up only a few.
        site_pool, site_eval, site_seed = hold_out(
            _site_pieces(text), seeded_rng(seed, "text-hold-out", site)
        )
        pool.extend(Document(chunk, site, label) for chunk in _merge_paragraphs(site_pool))
        eval_texts.extend(site_eval)
        seed_texts.extend(site_seed)
    return TextCorpus(pool=tuple(pool), eval_texts=tuple(eval_texts), seed_texts=tuple(seed_texts))


def _site_pieces(text: str) -> list[str]:
    """A site's text as held-out units: its paragraphs, or equal slices when they are few.

    Files without blank lines are one paragraph each, which would leave nothing to hold
    out; such a site is cut into ``MIN_SITE_PIECES`` slices at whitespace instead.
    """
    paragraphs = _paragraphs(text)
    if len(paragraphs) >= MIN_SITE_PIECES:
        return paragraphs
    text = "\n\n".join(paragraphs)
    size = max(1, math.ceil(len(text) / MIN_SITE_PIECES))
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
