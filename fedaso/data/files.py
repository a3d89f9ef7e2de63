"""A user's own data file as a FedASO dataset: ``dataset = file:PATH``.

JSON, JSON Lines, CSV and Parquet files are read with the Hugging Face ``datasets`` loaders
(``json``, ``csv``, ``parquet``). A file holds either

* a ``text`` column: each record is a document, windowed like every other text dataset; or
* instruction records with ``instruction``, ``output`` and optionally ``input`` columns
  (the Alpaca layout): each record is rendered with :data:`ALPACA_PROMPT` (or
  :data:`ALPACA_PROMPT_NO_INPUT`) and becomes one sequence whose loss covers the response
  tokens only, as FlowerTune's supervised fine-tuning does.

``partitioner = natural:COLUMN`` gives one partition per distinct value of ``COLUMN`` (a
site id, say), through flwr-datasets' ``NaturalIdPartitioner``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fedaso.config.data import FILE_PREFIX
from fedaso.data.tokens import IGNORE_INDEX, TextCodec

LOADERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}

# The Alpaca templates (Taori et al., 2023), as FlowerTune's LLM apps use them.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class FileRecords:
    """The records of a data file, as text documents or (prompt, response) pairs."""

    kind: str  # "text" or "instruction"
    texts: tuple[str, ...]  # text: the documents; instruction: the rendered prompts
    responses: tuple[str, ...]  # instruction: the responses; text: empty
    groups: tuple[str, ...] | None  # per record: the partition column's value, if one is named


def file_path(dataset: str) -> Path:
    """PATH of ``file:PATH``."""
    return Path(dataset.removeprefix(FILE_PREFIX)).expanduser()


def load_file_records(dataset: str, *, group_column: str = "") -> FileRecords:
    """Read ``file:PATH``; raise ``ValueError`` naming the dataset for any unfit file."""
    path = file_path(dataset)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ValueError(
            f"dataset={dataset!r}: unknown file type {path.suffix!r}; use one of "
            f"{', '.join(sorted(LOADERS))}"
        )
    if not path.is_file():
        raise ValueError(f"dataset={dataset!r}: no such file {str(path)!r}")
    import datasets

    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(loader, data_files=str(path), split="train")
    except Exception as error:  # any unreadable file is the user's input error
        raise ValueError(f"dataset={dataset!r}: cannot read the file ({error})") from None
    columns = set(table.column_names)
    if group_column and group_column not in columns:
        raise ValueError(
            f"partitioner='natural:{group_column}': dataset={dataset!r} has no column "
            f"{group_column!r} (columns: {', '.join(sorted(columns))})"
        )
    groups = tuple(str(value) for value in table[group_column]) if group_column else None
    if "text" in columns:
        texts = tuple(str(text) for text in table["text"] if text is not None)
        return FileRecords(kind="text", texts=texts, responses=(), groups=groups)
    if {"instruction", "output"} <= columns:
        inputs = table["input"] if "input" in columns else [""] * len(table)
        prompts = tuple(
            render_prompt(str(instruction), str(context or ""))
            for instruction, context in zip(table["instruction"], inputs, strict=True)
        )
        responses = tuple(str(output) for output in table["output"])
        return FileRecords(kind="instruction", texts=prompts, responses=responses, groups=groups)
    raise ValueError(
        f"dataset={dataset!r}: expected a 'text' column, or 'instruction' and 'output' "
        f"columns (and optionally 'input'); found {', '.join(sorted(columns))}"
    )


def render_prompt(instruction: str, context: str) -> str:
    """The Alpaca prompt of an instruction and its optional input."""
    if context.strip():
        return ALPACA_PROMPT.format(instruction=instruction, input=context)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def instruction_sequence(
    prompt: str, response: str, *, seq_len: int, codec: TextCodec
) -> tuple[torch.Tensor, torch.Tensor]:
    """One record as right-padded ``(inputs, targets)``, each ``(seq_len,)``.

    The targets of the prompt and of the padding are ``IGNORE_INDEX``: the loss, and with it
    ASO's relevance and anchor updates, covers the response tokens (and the end-of-sequence
    token, if the tokenizer has one) only. Records longer than ``seq_len + 1`` tokens are
    cut at the end.
    """
    prompt_ids = codec.encode(prompt)
    response_ids = codec.encode(response) + ([codec.eos_id] if codec.eos_id is not None else [])
    ids = torch.tensor((prompt_ids + response_ids)[: seq_len + 1], dtype=torch.int64)
    inputs = torch.full((seq_len,), codec.pad_id, dtype=torch.int64)  # (T,)
    targets = torch.full((seq_len,), IGNORE_INDEX, dtype=torch.int64)  # (T,)
    length = len(ids) - 1
    inputs[:length] = ids[:-1]
    targets[:length] = ids[1:]
    # targets[t] is token t + 1: the response starts at token len(prompt_ids).
    targets[: max(len(prompt_ids) - 1, 0)] = IGNORE_INDEX
    return inputs, targets
