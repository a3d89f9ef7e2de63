"""Corpora: each dataset's pooled rows to partition, the server's seed corpus and eval set.

Which corpus a dataset gives (:func:`corpus_of`, cached per config), and the two that are
not text: ``file:PATH`` (text or instruction records) and ``digits``. The documents of
``pydoc`` and ``text:PATH`` come from ``fedaso.data.texts``, those of ``facts`` from
``fedaso.data.facts``; ``fedaso.data.windows`` encodes them into token windows.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

from fedaso.config.data import (
    FACTS_DOMAINS,
    TEXT_PREFIX,
    DataSettings,
    dataset_kind,
    group_column,
)
from fedaso.data.config import DIGITS_EVAL_FRACTION, DIGITS_SEED_FRACTION, DataConfig, seeded_rng
from fedaso.data.facts import facts_corpus
from fedaso.data.files import load_file_records
from fedaso.data.splits import Corpus, Document, TensorSplit, TextCorpus
from fedaso.data.texts import folder_corpus, hold_out, pydoc_corpus
from fedaso.data.tokens import TextCodec, load_codec
from fedaso.data.windows import (
    classify_rows_to_split,
    instruction_rows_to_split,
    lm_corpus,
    lm_windows,
    public_fact_probe,
)


def corpus_of(config: DataConfig) -> Corpus:
    # Keyed on the fields that shape the corpus, so that configs differing only in
    # partitioning (server vs clients) share one build.
    return _build_corpus(
        config.dataset,
        config.seed,
        config.facts_entities,
        config.facts_prose_sentences,
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
    facts_prose_sentences: int,
    seq_len: int,
    tokenizer: str,
    column: str,
    anchor_seed: str,
) -> Corpus:
    kind = dataset_kind(dataset)
    if kind == "digits":
        return _digits_corpus(seed)
    codec = load_codec(tokenizer)
    if kind == "file":
        return _file_corpus(dataset, seed, seq_len, codec, column)
    text_corpus = text_corpus_of(
        dataset, seed, facts_entities, facts_prose_sentences=facts_prose_sentences
    )
    corpus = lm_corpus(text_corpus, seq_len, codec)
    _require_held_out(dataset, seq_len, corpus, text_corpus)
    if anchor_seed != "generic":
        seed_corpus = _knowledge_seed(text_corpus, seq_len, codec, anchor_seed)
        corpus = dataclasses.replace(corpus, seed_corpus=seed_corpus)
    return corpus


def _knowledge_seed(
    corpus: TextCorpus, seq_len: int, codec: TextCodec, anchor_seed: str
) -> TensorSplit:
    """The server's k-means corpus of ``anchor-seed = knowledge | knowledge-values``.

    ``knowledge`` scores every token of the public entities' documents; ``knowledge-values``
    only the tokens of their facts' values, so that k-means (over scored tokens only)
    places every anchor among the embeddings of knowledge itself.
    """
    if anchor_seed == "knowledge":
        return lm_windows([text for text, _ in corpus.knowledge], seq_len, codec=codec)
    split = public_fact_probe(corpus, seq_len, codec)
    if split is None:
        raise ValueError(
            f"anchor-seed={anchor_seed!r} needs token offsets, which this model's tokenizer "
            "cannot give (a slow tokenizer); use anchor-seed=knowledge"
        )
    return split.fact


def _require_held_out(dataset: str, seq_len: int, corpus: Corpus, texts: TextCorpus) -> None:
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


def text_corpus_of(
    dataset: str,
    seed: int,
    facts_entities: int,
    *,
    facts_prose_sentences: int = DataSettings.facts_prose_sentences,
) -> TextCorpus:
    """The documents of ``facts``, ``pydoc`` or ``text:PATH``, before tokenization.

    ``facts_entities`` and ``facts_prose_sentences`` (the knowledge density, by default the
    dense documents) shape ``facts`` only.
    """
    kind = dataset_kind(dataset)
    if kind == "facts":
        return facts_corpus(FACTS_DOMAINS[dataset], seed, facts_entities, facts_prose_sentences)
    if kind == "pydoc":
        return pydoc_corpus(seed)
    return folder_corpus(Path(dataset.removeprefix(TEXT_PREFIX)), seed)


# ---------------------------------------------------------------------------------------
# file:PATH


def _file_corpus(dataset: str, seed: int, seq_len: int, codec: TextCodec, column: str) -> Corpus:
    """A file's records: held out like pydoc's documents, the rest partitioned."""
    records = load_file_records(dataset, group_column=column)
    groups = records.groups or ("all",) * len(records.texts)
    names = sorted(set(groups))
    if records.kind == "text":
        documents = [
            Document(text, group, names.index(group))
            for text, group in zip(records.texts, groups, strict=True)
        ]
        pool, eval_documents, seed_documents = hold_out(
            documents, seeded_rng(seed, "file-hold-out")
        )
        return lm_corpus(
            TextCorpus(
                pool=tuple(pool),
                eval_texts=tuple(document.text for document in eval_documents),
                seed_texts=tuple(document.text for document in seed_documents),
            ),
            seq_len,
            codec,
        )
    pairs = tuple(zip(records.texts, records.responses, strict=True))
    pool_rows, eval_rows, seed_rows = hold_out(range(len(pairs)), seeded_rng(seed, "file-hold-out"))
    pool_pairs = tuple(pairs[row] for row in pool_rows)
    return Corpus(
        task="lm",
        groups=tuple(groups[row] for row in pool_rows) if records.groups else None,
        labels=tuple(names.index(groups[row]) for row in pool_rows),
        rows_to_split=functools.partial(instruction_rows_to_split, pool_pairs, seq_len, codec),
        seed_corpus=instruction_rows_to_split(pairs, seq_len, codec, seed_rows),
        eval=instruction_rows_to_split(pairs, seq_len, codec, eval_rows),
    )


# ---------------------------------------------------------------------------------------
# digits


def _digits_corpus(seed: int) -> Corpus:
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # (1797, 64)
    classes = torch.tensor(digits.target, dtype=torch.int64)  # (1797,)
    rows = np.arange(len(classes))
    rest, eval_rows = train_test_split(
        rows, test_size=DIGITS_EVAL_FRACTION, stratify=digits.target, random_state=seed
    )
    pool_rows, seed_rows = train_test_split(
        rest,
        test_size=DIGITS_SEED_FRACTION / (1 - DIGITS_EVAL_FRACTION),
        stratify=digits.target[rest],
        random_state=seed,
    )
    pool_features = features[torch.from_numpy(pool_rows)]  # (n, 64)
    pool_classes = classes[torch.from_numpy(pool_rows)]  # (n,)
    return Corpus(
        task="classify",
        groups=None,
        labels=tuple(pool_classes.tolist()),
        rows_to_split=functools.partial(classify_rows_to_split, pool_features, pool_classes),
        seed_corpus=classify_rows_to_split(features, classes, seed_rows.tolist()),
        eval=classify_rows_to_split(features, classes, eval_rows.tolist()),
    )
