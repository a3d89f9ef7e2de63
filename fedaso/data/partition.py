"""Partitioning a corpus across clients with flwr-datasets, and the on-disk cache of it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
    from flwr_datasets.partitioner import Partitioner

from fedaso.config.data import dirichlet_alpha, group_column
from fedaso.data.config import MIN_PARTITION_ROWS, DataConfig, seeded_rng
from fedaso.data.corpora import corpus_of
from fedaso.data.splits import Corpus

# ---------------------------------------------------------------------------------------
# Partitioning


# Bump when the partition rows of the same inputs would change (cache files then miss).
PARTITION_CACHE_VERSION = 1
CACHE_DIR_VARIABLE = "FEDASO_CACHE_DIR"  # "" turns the on-disk partition cache off


@functools.lru_cache(maxsize=8)
def partition_rows(config: DataConfig) -> tuple[tuple[int, ...], ...]:
    """Pool row indices of every partition, from the flwr-datasets partitioner.

    Every client process needs them, and importing flwr-datasets costs each process about
    two seconds (its package imports its plotting helpers), so the result is also cached on
    disk (:func:`partition_cache_path`), keyed by everything it depends on.
    """
    corpus = corpus_of(config)
    _check_partition_count(config, corpus)
    path = partition_cache_path(config, corpus)
    cached = _read_partition_cache(path, config.num_partitions, len(corpus.labels))
    if cached is not None:
        return cached
    rows = _partition_with_flwr_datasets(config, corpus)
    _write_partition_cache(path, rows)
    return rows


def partition_cache_path(config: DataConfig, corpus: Corpus) -> Path | None:
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
    config: DataConfig, corpus: Corpus
) -> tuple[tuple[int, ...], ...]:
    """Run the flwr-datasets partitioner of ``config`` over the corpus's pool."""
    partitioner = _make_partitioner(config)
    partitioner.dataset = _pool_table(corpus, config.seed)
    try:
        with warnings.catch_warnings():
            # Dirichlet warns on each resampling; its final failure is reported below.
            warnings.filterwarnings("ignore", message="The specified min_partition_size")
            # Each partition's rows are read at once: 100,000 partitions' tables kept alive
            # until the end would hold gigabytes.
            rows = tuple(
                tuple(partitioner.load_partition(pid)["row"])
                for pid in range(config.num_partitions)
            )
    except ValueError as error:
        # Only Dirichlet fails here, after its resampling budget leaves a partition too small.
        raise ValueError(
            f"partitioner={config.partitioner!r} could not give each of the "
            f"{config.num_partitions} partitions at least {MIN_PARTITION_ROWS} of the "
            f"{len(corpus.labels)} documents of dataset={config.dataset!r}; use a larger "
            "ALPHA or fewer partitions"
        ) from error
    return rows


def _check_partition_count(config: DataConfig, corpus: Corpus) -> None:
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
        alpha=dirichlet_alpha(config.partitioner),
        min_partition_size=MIN_PARTITION_ROWS,
        seed=config.seed,
    )


def _pool_table(corpus: Corpus, seed: int) -> datasets.Dataset:
    """The pool as a table with the original row index, in a seeded random order."""
    import datasets

    # IidPartitioner takes contiguous shards, and pools are built entity by entity (facts),
    # topic by topic (pydoc) or site by site (text), so the rows are shuffled first; the
    # other partitioners do not depend on the order.
    order = list(range(len(corpus.labels)))
    seeded_rng(seed, "pool-order").shuffle(order)
    columns: dict[str, list[int] | list[str]] = {
        "row": order,
        "label": [corpus.labels[row] for row in order],
    }
    if corpus.groups is not None:
        columns["group"] = [corpus.groups[row] for row in order]
    return datasets.Dataset.from_dict(columns)


def train_test_rows(
    rows: Sequence[int], config: DataConfig, partition_id: int
) -> tuple[list[int], list[int]]:
    """Seeded split of a partition's rows; at least one row stays for training."""
    shuffled = list(rows)
    seeded_rng(config.seed, "train-test", partition_id).shuffle(shuffled)
    num_test = max(0, min(int(len(shuffled) * config.test_fraction), len(shuffled) - 1))
    return shuffled[num_test:], shuffled[:num_test]
