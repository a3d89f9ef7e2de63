"""Built-in offline datasets of FedASO and their partitioning across clients.

Every dataset is available without any download:

* ``facts`` (``facts:a``, ``facts:b``): a corpus of invented facts this module generates from
  the seed. Domain A ("geography") holds countries with a capital, a currency, a language
  and a river, grouped by continent; domain B ("people") holds persons with a birthplace, a
  profession, an instrument and a pet, grouped by family. Every fact is stated in three
  training documents (canonical sentence and two paraphrases), and the central ``eval`` is a
  separate rendering with other phrasings and filler. Recall prompts ask for every fact in
  its canonical form, e.g. ``"The capital of Veltria is"`` -> ``" Morvane."``. With
  ``facts-prose-sentences = N > 0`` the knowledge is sparse: N pydoc prose sentences follow
  each fact of the training documents (``fedaso.data.facts``).
* ``pydoc``: the Python reference topics that CPython ships in ``pydoc_data.topics``,
  grouped into hand-picked topic families (see ``_PYDOC_FAMILIES``).
* ``digits``: scikit-learn's 8x8 handwritten digits (``load_digits``), a classification task.
* ``text:PATH``: a folder of ``.txt`` files; each top-level file or top-level sub-folder is one
  site (natural partition).
* ``file:PATH``: a JSON, JSON Lines, CSV or Parquet file of text or instruction records
  (``fedaso.data.files``), partitioned naturally by a column with ``natural:COLUMN``.

The package's modules: ``config`` (``DataConfig`` and the names it accepts), ``splits`` (the
shapes data takes), ``corpora`` (which corpus a dataset gives; data files, digits),
``texts`` (pydoc, text folders, the held-out split), ``windows`` (token windows and fact
masks), ``facts`` and ``fact_domains`` (the generated corpus), ``tokens`` (bytes or a
tokenizer), ``files`` (``file:PATH`` records) and ``partition`` (flwr-datasets
partitioning and its on-disk cache). This module is the API: :func:`load_partition` and
:func:`load_central`.

Language-model (``lm``) data is encoded by the data config's ``tokenizer``: UTF-8 bytes for
the reference model, or an ``hf:`` model's own tokenizer (``fedaso.data.tokens``). Documents are
joined by newlines, encoded and cut into windows of ``seq_len + 1`` tokens; an instruction
record is one right-padded sequence whose prompt and padding carry no loss. Partitions come from
flwr-datasets partitioners applied to an in-memory table of the pooled documents; each
partition is then split into train and test rows. Everything is deterministic in
``DataConfig`` and cached per config, so every process builds the same tensors cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fedaso.checks import is_count
from fedaso.config import FederationConfig
from fedaso.config.data import (
    ANCHOR_SEEDS,
    DATASETS_ALLOWED,
    FACTS_DOMAINS,
    NATURAL_PREFIX,
    PARTITIONERS_ALLOWED,
    TEXT_PREFIX,
    DataSettings,
    dataset_kind,
    group_column,
    is_dataset_name,
    require,
    task_of,
)
from fedaso.data.config import DIGITS_NUM_CLASSES, DIGITS_NUM_FEATURES, VOCAB_SIZE, DataConfig
from fedaso.data.corpora import corpus_of, text_corpus_of
from fedaso.data.partition import (
    CACHE_DIR_VARIABLE,
    PARTITION_CACHE_VERSION,
    partition_cache_path,
    partition_rows,
    train_test_rows,
)
from fedaso.data.splits import CentralData, ClientData, FactProbe, RecallPrompt, TensorSplit
from fedaso.data.tokens import BYTES, encode

__all__ = [
    "ANCHOR_SEEDS",
    "CACHE_DIR_VARIABLE",
    "DATASETS_ALLOWED",
    "DIGITS_NUM_CLASSES",
    "DIGITS_NUM_FEATURES",
    "FACTS_DOMAINS",
    "NATURAL_PREFIX",
    "PARTITIONERS_ALLOWED",
    "PARTITION_CACHE_VERSION",
    "TEXT_PREFIX",
    "VOCAB_SIZE",
    "CentralData",
    "ClientData",
    "DataConfig",
    "FactProbe",
    "RecallPrompt",
    "TensorSplit",
    "dataset_texts",
    "decode_bytes",
    "encode_text",
    "group_column",
    "is_dataset_name",
    "load_central",
    "load_partition",
    "partition_cache_path",
    "task_of",
]


def encode_text(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as int64 ids, shape ``(n,)`` (the byte codec's encoding)."""
    return encode(BYTES, text)  # (n,)


def decode_bytes(ids: Sequence[int] | torch.Tensor) -> str:
    """Inverse of :func:`encode_text`; invalid UTF-8 becomes U+FFFD instead of raising."""
    return BYTES.decode(ids.tolist() if isinstance(ids, torch.Tensor) else ids)


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
        is_count(partition_id, minimum=0) and partition_id < config.num_partitions,
        "partition_id",
        partition_id,
        f"must be an integer in [0, num_partitions={config.num_partitions})",
    )
    corpus = corpus_of(config)
    rows = partition_rows(config)[partition_id]
    train_rows, test_rows = train_test_rows(rows, config, partition_id)
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
    """The server's data; it depends on the keys that shape the corpus, not on the clients."""
    corpus = corpus_of(config)
    return CentralData(
        task=corpus.task,
        seed_corpus=corpus.seed_corpus,
        eval=corpus.eval,
        recall_prompts=corpus.recall_prompts,
        fact_probe=corpus.fact_probe,
        public_fact_probe=corpus.public_fact_probe,
    )


def dataset_texts(
    dataset: str,
    *,
    seed: int = FederationConfig.seed,
    facts_entities: int = DataSettings.facts_entities,
    facts_prose_sentences: int = DataSettings.facts_prose_sentences,
) -> list[str]:
    """Every document of a built-in or ``text:`` dataset, e.g. to train a tokenizer on.

    ``seed``, ``facts_entities`` and ``facts_prose_sentences`` default to the run-config's
    (a tokenizer made with the defaults fits a default run's facts).
    """
    kind = dataset_kind(dataset)
    require(
        kind in ("facts", "pydoc", "text"),
        "dataset",
        dataset,
        "must be a text dataset: facts, facts:a, facts:b, pydoc or text:PATH",
    )
    corpus = text_corpus_of(
        dataset, seed, facts_entities, facts_prose_sentences=facts_prose_sentences
    )
    return [d.text for d in corpus.pool] + list(corpus.eval_texts) + list(corpus.seed_texts)
