"""Short ways for tests to build the runtime configs from the schema's sections."""

from typing import Any

from fedaso.config import RunConfig
from fedaso.config.data import DataSettings
from fedaso.data import DataConfig
from fedaso.models import ModelSpec

RUNTIME_DATA_FIELDS = {"num_partitions": 10, "seed": 0, "tokenizer": ""}


def data_config(*dataset: str, **keys: Any) -> DataConfig:
    """A DataConfig of the data section with ``keys`` changed (10 partitions, seed 0)."""
    if dataset:
        keys["dataset"] = dataset[0]
    runtime = {name: keys.pop(name, default) for name, default in RUNTIME_DATA_FIELDS.items()}
    return DataConfig.of(DataSettings(**keys), **runtime)


def model_spec(**keys: Any) -> ModelSpec:
    """The ModelSpec of a run with these model keys (e.g. ``model="hf:PATH", lora_r=2``)."""
    return RunConfig.of(**keys).model_spec()


def micro_run(**changes: Any) -> RunConfig:
    """A run-config smaller than the ``tiny`` fixture's: a 16-wide, 1-layer TinyLM with 8
    anchors, for tests that build many messages or models (``changes``: snake_case keys)."""
    settings = dict(
        num_anchors=8,
        subspace_rank=4,
        model_width=16,
        model_heads=2,
        model_layers=1,
        seq_len=32,
        facts_entities=8,
    )
    return RunConfig.of(**(settings | changes))
