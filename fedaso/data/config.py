"""What a loader is asked to build (``DataConfig``), and the data modules' shared constants.

The names the data keys accept and their parsers belong to the run-config's data section
(``fedaso.config.data``); they are imported here for the data modules that use them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from fedaso.checks import is_count, require
from fedaso.config.data import DataSettings
from fedaso.data.tokens import BYTE_VOCAB_SIZE

VOCAB_SIZE = BYTE_VOCAB_SIZE  # byte-level LM
DIGITS_NUM_FEATURES = 64  # 8x8 pixels
DIGITS_NUM_CLASSES = 10

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


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What a loader builds: the data section's keys and what the run derives for them.

    Build it with :meth:`of` (``RunConfig.data_config`` does): the section has checked its
    keys, so only the derived fields are checked here. No field has a default of its own.
    """

    dataset: str  # facts | facts:a | facts:b | pydoc | digits | text:PATH | file:PATH
    partitioner: str  # iid | dirichlet:ALPHA (ALPHA > 0) | natural | natural:COLUMN
    seq_len: int  # tokens per LM training window
    test_fraction: float  # per-partition held-out share of rows
    facts_entities: int  # entities per facts domain
    facts_prose_sentences: int  # pydoc sentences after each fact of facts' training documents
    window_stride: int  # tokens between LM training windows' starts; 0 = disjoint windows
    anchor_seed: str  # server's k-means corpus: generic | knowledge | knowledge-values
    num_partitions: int  # clients, >= 1
    seed: int  # seeds the facts corpus, hold-outs, partitioning and train/test splits
    tokenizer: str  # "" = UTF-8 bytes; else a Hugging Face tokenizer's name or path

    def __post_init__(self) -> None:
        require(
            is_count(self.num_partitions, minimum=1),
            "num-partitions",
            self.num_partitions,
            "must be an integer >= 1",
        )
        require(is_count(self.seed, minimum=0), "seed", self.seed, "must be an integer >= 0")
        require(isinstance(self.tokenizer, str), "tokenizer", self.tokenizer, "must be a string")

    @classmethod
    def of(
        cls, settings: DataSettings, *, num_partitions: int, seed: int, tokenizer: str
    ) -> DataConfig:
        """The data section ``settings`` (checked there) for ``num_partitions`` clients."""
        keys = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
        return cls(**keys, num_partitions=num_partitions, seed=seed, tokenizer=tokenizer)

    def replace(self, **changes: object) -> DataConfig:
        """A copy with ``changes``, its data keys checked again by the data section."""
        changed = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        settings = DataSettings(
            **{
                field.name: getattr(changed, field.name)
                for field in dataclasses.fields(DataSettings)
            }
        )
        return DataConfig.of(
            settings,
            num_partitions=changed.num_partitions,
            seed=changed.seed,
            tokenizer=changed.tokenizer,
        )


def seeded_rng(*salt: object) -> random.Random:
    """A private generator per purpose; str seeds hash with SHA-512, stable across processes."""
    return random.Random(":".join(str(part) for part in salt))
