"""``dataset = file:PATH``: JSON Lines, CSV and Parquet files, text or instruction records."""

import json

import datasets
import pytest
import torch

from fedaso.data import load_central, load_partition
from fedaso.data.files import instruction_sequence, render_prompt
from fedaso.data.tokens import BYTES, IGNORE_INDEX, load_codec
from tests.config_helpers import data_config
from tests.hf_helpers import tiny_hf_model

RECORDS = [
    {
        "instruction": f"Name the capital of country {i}.",
        "input": "" if i % 2 else f"Country {i} lies in the north.",
        "output": f"The capital is City{i}.",
        "site": f"hospital-{i % 3}",
    }
    for i in range(30)
]


@pytest.fixture
def instructions(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in RECORDS))
    return f"file:{path}"


def test_instruction_sequence_scores_the_response_only():
    prompt = render_prompt("Say hi.", "")
    inputs, targets = instruction_sequence(prompt, "Hi!", seq_len=200, codec=BYTES)
    scored = targets[targets != IGNORE_INDEX]
    assert BYTES.decode(scored.tolist()) == "Hi!"
    assert inputs[: len(prompt)].tolist() == BYTES.encode(prompt)
    # Cut at seq_len + 1 tokens: a short window keeps only the prompt, nothing is scored.
    _, short = instruction_sequence(prompt, "Hi!", seq_len=10, codec=BYTES)
    assert (short == IGNORE_INDEX).all()


def test_instruction_file_partitions_by_a_column_with_a_tokenizer(instructions):
    tokenizer = tiny_hf_model("llama")
    config = data_config(
        dataset=instructions, partitioner="natural:site", num_partitions=3, seq_len=256,
        tokenizer=tokenizer, test_fraction=0.0,
    )  # fmt: skip
    codec = load_codec(tokenizer)
    rows = 0
    for partition_id in range(3):
        train = load_partition(config, partition_id).train
        rows += len(train)
        for target in train.targets:
            text = codec.decode(target[target != IGNORE_INDEX].tolist())
            assert text.startswith("The capital is City") and text.endswith("<|endoftext|>")
    central = load_central(config)
    assert rows + len(central.eval) + len(central.seed_corpus) == len(RECORDS)
    with pytest.raises(ValueError, match=r"natural:site.*has 3 groups.*--num-clients 3"):
        load_partition(data_config(**{**config.__dict__, "num_partitions": 2}), 0)


def test_text_column_in_csv_and_parquet_is_windowed_like_any_text(tmp_path):
    table = datasets.Dataset.from_dict({"text": [f"Document {i}. " * 20 for i in range(20)]})
    table.to_csv(tmp_path / "docs.csv")
    table.to_parquet(tmp_path / "docs.parquet")
    for name in ("docs.csv", "docs.parquet"):
        config = data_config(dataset=f"file:{tmp_path / name}", num_partitions=2, seq_len=32)
        train = load_partition(config, 1).train
        assert train.inputs.shape[1] == 32 and len(train) > 0
        torch.testing.assert_close(train.inputs[:, 1:], train.targets[:, :-1])


@pytest.mark.parametrize(
    ("dataset", "partitioner", "message"),
    [
        ("file:/tmp/x.txt", "iid", "unknown file type '.txt'"),
        ("file:/no/such/file.jsonl", "iid", "no such file"),
        ("INSTR", "natural", "use natural:COLUMN"),
        ("INSTR", "natural:ward", "has no column 'ward'"),
        ("facts", "natural:site", "natural:COLUMN partitions file: datasets"),
    ],
)
def test_bad_files_and_partitioners_are_named(instructions, dataset, partitioner, message):
    dataset = instructions if dataset == "INSTR" else dataset
    with pytest.raises(ValueError, match=message):
        load_partition(data_config(dataset=dataset, partitioner=partitioner, num_partitions=3), 0)


def test_a_file_without_usable_columns_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "q", "answer": "a"}]))
    with pytest.raises(ValueError, match=r"expected a 'text' column.*answer, question"):
        load_central(data_config(dataset=f"file:{path}", num_partitions=1))
