"""Built-in datasets and partitioning: determinism, shapes, facts content, partitioners, errors."""

import dataclasses
import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedaso.data import (
    DIGITS_NUM_CLASSES,
    DIGITS_NUM_FEATURES,
    VOCAB_SIZE,
    DataConfig,
    TensorSplit,
    corpora,
    decode_bytes,
    encode_text,
    load_central,
    load_partition,
    partition,
    task_of,
)
from tests.config_helpers import data_config

REPO = Path(__file__).resolve().parents[4]


def stream_text(split: TensorSplit) -> str:
    """The text an LM split was cut from: each window's inputs plus its last target byte."""
    windows = torch.cat([split.inputs, split.targets[:, -1:]], dim=1)  # (n, T+1)
    return decode_bytes(windows.flatten())


def all_partitions(config: DataConfig) -> list:
    return [load_partition(config, pid) for pid in range(config.num_partitions)]


def facts_digest() -> str:
    """SHA-256 of a few facts partitions and the central data (compared across processes)."""
    config = data_config(num_partitions=5, seed=3)
    digest = hashlib.sha256()
    splits = [split for data in all_partitions(config) for split in (data.train, data.test)]
    central = load_central(config)
    for split in [*splits, central.eval, central.seed_corpus]:
        digest.update(split.inputs.numpy().tobytes())
        digest.update(split.targets.numpy().tobytes())
    digest.update(repr(central.recall_prompts).encode())
    return digest.hexdigest()


def label_entropy(targets: torch.Tensor) -> float:
    counts = torch.bincount(targets, minlength=DIGITS_NUM_CLASSES).double()
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * probabilities.log()).sum())


@pytest.fixture
def text_folder(tmp_path: Path) -> Path:
    """Three sites: two top-level files and a sub-folder with a nested file."""
    for site, word in (("alpha.txt", "apple"), ("beta.txt", "banana")):
        (tmp_path / site).write_text(paragraphs(word), encoding="utf-8")
    nested = tmp_path / "gamma" / "deeper"
    nested.mkdir(parents=True)
    (nested / "notes.txt").write_text(paragraphs("cherry"), encoding="utf-8")
    (tmp_path / "ignored.md").write_text(paragraphs("durian"), encoding="utf-8")
    return tmp_path


def paragraphs(word: str) -> str:
    return "\n\n".join(f"Paragraph {i}: the {word} is on the table again." for i in range(40))


# --- bytes ----------------------------------------------------------------------------


def test_encode_decode_round_trip():
    text = "Plain ASCII, é, — and ✓"
    ids = encode_text(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text.encode("utf-8")),)
    assert int(ids.max()) < VOCAB_SIZE
    assert decode_bytes(ids) == text
    assert decode_bytes(ids.tolist()) == text
    assert decode_bytes([0x41, 0xFF]) == "A\ufffd"


# --- determinism ----------------------------------------------------------------------


def test_same_config_gives_equal_tensors():
    config = data_config(num_partitions=4)
    first, second = load_partition(config, 2), load_partition(config, 2)
    assert torch.equal(first.train.inputs, second.train.inputs)
    assert torch.equal(first.test.targets, second.test.targets)


def test_data_is_identical_in_another_process_with_other_hash_seed():
    code = "from tests.unit.fedaso.data.test_data import facts_digest; print(facts_digest())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == facts_digest()


def test_different_seed_gives_different_facts():
    zero, one = load_central(data_config(seed=0)), load_central(data_config(seed=1))
    assert zero.recall_prompts != one.recall_prompts
    assert not torch.equal(
        load_partition(data_config(seed=0), 0).train.inputs[:4],
        load_partition(data_config(seed=1), 0).train.inputs[:4],
    )


# --- shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["facts", "facts:a", "facts:b", "pydoc", "text"])
def test_lm_shapes_dtypes_and_shift(dataset: str, text_folder: Path):
    name = f"text:{text_folder}" if dataset == "text" else dataset
    config = data_config(dataset=name, num_partitions=3, seq_len=16, test_fraction=0.5)
    assert task_of(name) == "lm"
    central = load_central(config)
    data = load_partition(config, 1)
    assert central.task == "lm"
    for split in (data.train, data.test, central.eval, central.seed_corpus):
        assert len(split) > 0
        assert split.inputs.shape == split.targets.shape == (len(split), 16)
        assert split.inputs.dtype == split.targets.dtype == torch.int64
        assert int(split.inputs.max()) < VOCAB_SIZE
        torch.testing.assert_close(split.inputs[:, 1:], split.targets[:, :-1])
    assert bool(central.recall_prompts) == dataset.startswith("facts")


def test_digits_shapes_and_dtypes():
    config = data_config(dataset="digits", num_partitions=5)
    assert task_of("digits") == "classify"
    central = load_central(config)
    assert central.task == "classify" and central.recall_prompts == ()
    for split in (load_partition(config, 4).train, central.eval, central.seed_corpus):
        assert split.inputs.shape == (len(split), DIGITS_NUM_FEATURES) and len(split) > 0
        assert split.inputs.dtype == torch.float32 and split.targets.dtype == torch.int64
        assert split.targets.shape == (len(split),)
        assert float(split.inputs.min()) >= 0 and float(split.inputs.max()) <= 1
        assert set(split.targets.tolist()) <= set(range(DIGITS_NUM_CLASSES))


@pytest.mark.parametrize(("dataset", "shape"), [("facts", (0, 32)), ("digits", (0, 64))])
def test_zero_test_fraction_gives_empty_test_split_of_right_shape(dataset: str, shape: tuple):
    data = load_partition(data_config(dataset=dataset, seq_len=32, test_fraction=0.0), 0)
    assert data.test.inputs.shape == shape and len(data.test) == 0
    assert data.test.targets.shape[0] == 0


def test_central_data_does_not_depend_on_partitioning():
    server = load_central(data_config(partitioner="natural", num_partitions=1))
    clients = load_central(data_config(partitioner="dirichlet:0.5", num_partitions=20))
    assert torch.equal(server.eval.inputs, clients.eval.inputs)
    assert torch.equal(server.seed_corpus.inputs, clients.seed_corpus.inputs)


def test_facts_default_sizes_fit_cpu_budget():
    sizes = [
        len(data.train) for data in all_partitions(data_config(num_partitions=20, window_stride=0))
    ]
    assert min(sizes) >= 10 and max(sizes) <= 40  # disjoint windows; stride 16 gives ~4x


# --- facts content --------------------------------------------------------------------


def test_canonical_recall_sentences_are_in_the_training_text():
    config = data_config(num_partitions=1, test_fraction=0.0, seq_len=8, window_stride=0)
    training_text = stream_text(load_partition(config, 0).train)
    prompts = load_central(config).recall_prompts
    assert len(prompts) == 2 * 40 * 4  # two domains, 40 entities, 4 attributes
    assert len({p.prompt for p in prompts}) == len(prompts)
    for prompt in prompts:
        assert re.fullmatch(r" \S.*\.", prompt.answer), prompt
        assert prompt.prompt + prompt.answer in training_text


def test_facts_eval_is_a_separate_rendering():
    config = data_config(num_partitions=1, test_fraction=0.0, seq_len=8, window_stride=0)
    training_documents = set(stream_text(load_partition(config, 0).train).split("\n"))
    eval_documents = stream_text(load_central(config).eval).split("\n")[1:-1]  # whole ones
    assert eval_documents and not training_documents & set(eval_documents)


def test_facts_domains_are_disjoint_and_make_up_facts():
    def capitalized_words(dataset: str) -> set[str]:
        seed_corpus = load_central(data_config(dataset)).seed_corpus  # canonical sentences
        return set(re.findall(r"[A-Z][a-z]+", stream_text(seed_corpus)))

    a_names = capitalized_words("facts:a") - {"The"}  # "The capital of ..."
    b_names = capitalized_words("facts:b")
    assert len(a_names) > 40 and len(b_names) > 40 and not a_names & b_names
    both = load_central(data_config("facts")).recall_prompts
    a, b = load_central(data_config("facts:a")), load_central(data_config("facts:b"))
    assert both == a.recall_prompts + b.recall_prompts


# --- partitioners ---------------------------------------------------------------------


def test_iid_partitions_cover_the_pool_without_overlap():
    from sklearn.datasets import load_digits

    config = data_config(dataset="digits", num_partitions=7, test_fraction=0.25)
    central = load_central(config)
    parts = [split for data in all_partitions(config) for split in (data.train, data.test)]
    rows = torch.cat([split.inputs for split in [*parts, central.eval, central.seed_corpus]])
    everything = torch.tensor(load_digits().data / 16.0, dtype=torch.float32)  # (1797, 64)
    # Equal as multisets of rows: every sample lands in exactly one place.
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, everything.tolist()))
    sizes = [len(data.train) + len(data.test) for data in all_partitions(config)]
    assert max(sizes) - min(sizes) <= 1


def test_dirichlet_skews_labels_more_than_iid():
    def mean_entropy(partitioner: str) -> float:
        config = data_config(dataset="digits", partitioner=partitioner, num_partitions=10)
        return sum(label_entropy(d.train.targets) for d in all_partitions(config)) / 10

    iid, skewed = mean_entropy("iid"), mean_entropy("dirichlet:0.1")
    assert iid > 0.95 * math.log(DIGITS_NUM_CLASSES)
    assert skewed < 0.6 * iid


def test_dirichlet_too_small_data_raises_instead_of_hanging():
    config = data_config(partitioner="dirichlet:0.1", num_partitions=10, facts_entities=2)
    with pytest.raises(ValueError, match=r"dirichlet:0\.1.*10 partitions"):
        load_partition(config, 0)


def test_natural_partitions_hold_one_group_each():
    config = data_config("facts:a", partitioner="natural", num_partitions=8, window_stride=0)
    continents = [
        set(re.findall(r"continent of (\w+)", stream_text(data.train)))
        for data in all_partitions(config)
    ]
    assert all(len(found) == 1 for found in continents)
    assert len(set.union(*continents)) == 8


def test_iid_partitions_scatter_each_entitys_documents():
    # The pool is built entity by entity; unshuffled, iid shards would hold whole entities.
    config = data_config(
        dataset="facts:a", num_partitions=8, test_fraction=0.0, seq_len=8, window_stride=0
    )
    intro = r"(\w+) is a country on|This entry describes (\w+),|Among the nations of \w+ is (\w+)\."
    distinct = [
        len({"".join(match) for match in re.findall(intro, stream_text(data.train))})
        for data in all_partitions(config)
    ]
    assert sum(distinct) / len(distinct) > 9  # 15 documents each: ~13 entities, not 5


def test_natural_partition_count_mismatch_names_both_numbers():
    with pytest.raises(ValueError, match=r"16 groups.*num-partitions=10"):
        load_partition(data_config(partitioner="natural", num_partitions=10), 0)


def test_text_folder_sites_are_natural_partitions(text_folder: Path):
    config = data_config(f"text:{text_folder}", partitioner="natural", num_partitions=3, seq_len=16)
    texts = [stream_text(data.train) for data in all_partitions(config)]
    for text, (own, *others) in zip(
        texts,
        [("apple", "banana", "cherry"), ("banana", "apple", "cherry"), ("cherry",)],
        strict=True,
    ):
        assert own in text and not any(other in text for other in others)
    assert "durian" not in "".join(texts)
    with pytest.raises(ValueError, match=r"3 groups.*num-partitions=2"):
        load_partition(
            data_config(f"text:{text_folder}", partitioner="natural", num_partitions=2), 0
        )


def test_train_and_test_splits_are_disjoint_halves():
    config = data_config(dataset="digits", num_partitions=2, test_fraction=0.5)
    data = load_partition(config, 0)
    assert abs(len(data.train) - len(data.test)) <= 1
    train_rows = set(map(tuple, data.train.inputs.tolist()))  # digits has no duplicate images
    assert not train_rows & set(map(tuple, data.test.inputs.tolist()))


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dataset": "mnist"}, "dataset='mnist'"),
        ({"dataset": "text:"}, "dataset='text:'"),
        ({"partitioner": "foo"}, "partitioner='foo'.*iid, dirichlet:ALPHA"),
        ({"partitioner": "dirichlet:-1"}, "partitioner='dirichlet:-1'"),
        ({"partitioner": "dirichlet:abc"}, "partitioner='dirichlet:abc'"),
        ({"dataset": "digits", "partitioner": "natural"}, "natural.*digits"),
        ({"num_partitions": 0}, "num-partitions=0"),
        ({"seq_len": 1}, "seq-len=1"),
        ({"test_fraction": 1.0}, "test-fraction=1.0"),
        ({"facts_entities": 1}, "facts-entities=1"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_bad_config_names_field_and_value(fields: dict, message: str):
    with pytest.raises(ValueError, match=message):
        data_config(**fields)


@pytest.mark.parametrize("partition_id", [-1, 3])
def test_partition_id_out_of_range(partition_id: int):
    with pytest.raises(ValueError, match=rf"partition_id={partition_id}.*\[0, num_partitions=3\)"):
        load_partition(data_config(num_partitions=3), partition_id)


def test_unknown_dataset_in_task_of():
    with pytest.raises(ValueError, match="dataset='imagenet'"):
        task_of("imagenet")


def test_missing_or_empty_text_folder_names_the_path(tmp_path: Path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        load_central(data_config(f"text:{missing}"))
    (tmp_path / "readme.md").write_text("not a .txt file")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + ".*no non-empty .txt"):
        load_central(data_config(f"text:{tmp_path}"))


def test_too_small_lm_partition_says_how_to_fix():
    config = data_config(num_partitions=240, seq_len=400)  # one ~250-byte document each
    with pytest.raises(ValueError, match=r"partition 0 of dataset='facts'.*seq-len"):
        load_partition(config, 0)


def test_more_partitions_than_documents_raises():
    with pytest.raises(ValueError, match="num-partitions=241 exceeds the 240 documents"):
        load_partition(data_config(num_partitions=241), 0)


def test_partitions_are_cached_on_disk_and_read_back_without_flwr_datasets(tmp_path):
    env = {**os.environ, "FEDASO_CACHE_DIR": str(tmp_path)}
    code = (
        "import sys; from fedaso.config import RunConfig; from fedaso.data import load_partition; "
        "data = load_partition(RunConfig().data_config(num_partitions=7).replace(seed=3), 2); "
        "print(int(data.train.inputs.sum()), 'flwr_datasets' in sys.modules)"
    )

    def run():
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    cold = run()
    assert cold[1] == "True" and len(list(tmp_path.glob("partitions-*.json"))) == 1
    warm = run()
    assert warm == [cold[0], "False"]  # the same partition, without importing flwr-datasets


def test_the_partition_cache_key_covers_its_inputs_and_bad_files_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDASO_CACHE_DIR", str(tmp_path))
    base = data_config(num_partitions=5, seed=1)
    corpus = corpora.corpus_of(base)
    paths = {
        partition.partition_cache_path(config, corpora.corpus_of(config))
        for config in (
            base,
            dataclasses.replace(base, seed=2),
            dataclasses.replace(base, num_partitions=6),
            dataclasses.replace(base, partitioner="dirichlet:1.0"),
        )
    }
    assert len(paths) == 4
    path = partition.partition_cache_path(base, corpus)
    want = partition._partition_with_flwr_datasets(base, corpus)
    for bad in (
        "not json",
        "[[1, 2]]",
        '[[1], [2], [3], [4], ["x"]]',
        "[[1], [2], [3], [4], [9999]]",
    ):
        path.write_text(bad)
        partition.partition_rows.cache_clear()
        assert partition.partition_rows(base) == want
        assert partition._read_partition_cache(path, 5, len(corpus.labels)) == want  # rewritten
    monkeypatch.setenv("FEDASO_CACHE_DIR", "")
    assert partition.partition_cache_path(base, corpus) is None
