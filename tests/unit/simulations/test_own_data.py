"""Your own data, whatever its shape, and settings that cannot train, caught early.

Reproduces what a new user met (issue 13): text files without blank lines crashed the
server before round 1; ``--partitioner natural`` with another number of clients than
sites failed every client every round, yet the run exited 0 and wrote a summary.
"""

import random
from pathlib import Path

import pytest

from fedaso.config import RunConfig
from fedaso.data import load_central, load_partition
from simulations import cli
from simulations.engine import check_partitions
from strategies.failures import REPEATED_ERROR_ROUNDS, FailureWatch, RunFailedError
from tests.flower_helpers import error_reply, train_reply

WORDS = ["the", "river", "city", "north", "trade", "market", "people", "harbor", "winter", "grain"]


def write_sites(folder: Path, *, sites: int, paragraphs: int, words: int) -> Path:
    """``sites`` .txt files of ``paragraphs`` blank-line separated paragraphs each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for site in range(sites):
        text = "\n\n".join(
            " ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(paragraphs)
        )
        (folder / f"site{site}.txt").write_text(text + "\n")
    return folder


def test_files_without_blank_lines_give_held_out_and_training_data(tmp_path):
    folder = write_sites(tmp_path / "sites", sites=3, paragraphs=1, words=900)
    run = RunConfig.of(dataset=f"text:{folder}", partitioner="natural")
    central = load_central(run.data_config(num_partitions=1))
    assert len(central.eval) > 0 and len(central.seed_corpus) > 0
    for partition_id in range(3):
        assert len(load_partition(run.data_config(num_partitions=3), partition_id).train) > 0


def test_too_little_text_to_hold_out_is_an_error_naming_dataset_and_reason(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "a.txt").write_text("only a few words here")
    dataset = f"text:{folder}"
    with pytest.raises(ValueError, match=rf"dataset='{dataset}' leaves no held-out evaluation"):
        load_central(RunConfig.of(dataset=dataset).data_config(num_partitions=1))


def test_natural_partitions_that_do_not_fit_the_clients_fail_before_round_1(tmp_path, capsys):
    folder = write_sites(tmp_path / "sites", sites=3, paragraphs=30, words=40)
    run = RunConfig.of(dataset=f"text:{folder}", partitioner="natural")
    with pytest.raises(ValueError, match=r"--num-clients=5 does not fit.*3 groups.*use 3 clients"):
        check_partitions(run, 5)
    out = tmp_path / "out"
    argv = ["compare", "--dataset", f"text:{folder}", "--partitioner", "natural",
            "--num-clients", "5", "--rounds", "1", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("fedaso compare: error: --num-clients=5") and err.count("\n") == 1
    assert not (out / "summary.md").exists()


def test_a_round_whose_every_reply_failed_stops_the_run():
    watch = FailureWatch()
    watch.check(1, [error_reply(1, "boom"), train_reply(2, {"w": [1.0]}, {"loss": 1.0})])
    with pytest.raises(RunFailedError, match=r"round 2: all 2 training replies failed.*boom"):
        watch.check(2, [error_reply(1, "boom"), error_reply(2, "boom")])


def test_the_same_error_in_every_round_stops_the_run_a_passing_one_does_not():
    passing = FailureWatch()
    for server_round in range(1, 6):
        errors = [error_reply(1, "disk full")] if server_round % 2 else []
        passing.check(server_round, [*errors, train_reply(2, {"w": [1.0]}, {"loss": 1.0})])
    repeated = FailureWatch()
    for server_round in range(1, REPEATED_ERROR_ROUNDS):
        repeated.check(server_round, [error_reply(1, "bad key"), train_reply(2, {}, {})])
    with pytest.raises(RunFailedError, match=r"same client error.*bad key"):
        repeated.check(REPEATED_ERROR_ROUNDS, [error_reply(3, "bad key"), train_reply(2, {}, {})])


def test_one_client_in_ten_repeating_its_error_does_not_stop_the_run():
    watch = FailureWatch()
    healthy = [train_reply(node, {"w": [1.0]}, {"loss": 1.0}) for node in range(2, 11)]
    for server_round in range(1, 3 * REPEATED_ERROR_ROUNDS):
        watch.check(server_round, [error_reply(1, "bad key"), *healthy])
