"""Run-config parsing and validation across sections: flat form, errors, anchor defaults."""

from pathlib import Path

import pytest

from fedaso.config import RunConfig

ROOT = Path(__file__).resolve().parents[4]


def test_anchor_defaults_follow_the_model_and_are_written_resolved():
    reference, hf = RunConfig(), RunConfig.of(model="hf:/some/model")
    assert (reference.aso.num_anchors, reference.aso.subspace_rank) == (32, 8)
    assert (hf.aso.num_anchors, hf.aso.subspace_rank) == (512, 16)
    assert hf.to_flat()["num-anchors"] == 512
    explicit = RunConfig.of(model="hf:/some/model", num_anchors=64, subspace_rank=4)
    assert (explicit.aso.num_anchors, explicit.aso.subspace_rank) == (64, 4)
    assert RunConfig.of(model="hf:/some/model", num_anchors=8).aso.subspace_rank == 7


def test_round_trip_through_the_flat_form():
    run = RunConfig.of(strategy="fedavg", aso_lambda=0.0, dataset="digits")
    assert RunConfig.from_flat(run.to_flat()) == run


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"unknown run-config key 'aso-lamda'.*aso-lambda"):
        RunConfig.from_flat({"aso-lamda": 1.0})


def test_non_strict_parsing_ignores_keys_flower_adds():
    run = RunConfig.from_flat({"server-round": 3, "lr": 0.5}, strict=False)
    assert run.training.lr == 0.5


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("strategy", "fedsgd", "strategy='fedsgd'"),
        ("aso-tau", 0.0, "aso-tau=0.0"),
        ("aso-lambda", -1.0, "aso-lambda=-1.0"),
        ("aso-alpha", 1.0, "aso-alpha=1.0"),
        ("num-anchors", 1, "num-anchors=1"),
        ("subspace-rank", 65, "subspace-rank=65"),
        ("fraction-train", 0.0, "fraction-train=0.0"),
        ("local-epochs", 0, "local-epochs=0"),
        ("lr", "fast", "lr='fast'"),
        ("project-gradients", "maybe", "project-gradients='maybe'"),
        ("partitioner", "random", "partitioner='random'"),
        ("dataset", "imagenet", "dataset='imagenet'"),
        ("model-heads", 3, "model-heads=3"),
    ],
)
def test_bad_values_name_the_key_and_value(key, value, named):
    with pytest.raises(ValueError) as error:
        RunConfig.from_flat({key: value} | ({"num-anchors": 128} if key == "subspace-rank" else {}))
    assert named in str(error.value)


def test_subspace_rank_may_not_exceed_model_width():
    with pytest.raises(ValueError, match=r"subspace-rank=32 .*d=16"):
        RunConfig.of(model_width=16, model_heads=4, num_anchors=64, subspace_rank=32)


def test_subspace_rank_is_below_the_number_of_anchors():
    # Issue 12, defect 7: M centered anchors span at most M - 1 dimensions.
    with pytest.raises(ValueError, match=r"subspace-rank=8 .*num-anchors - 1 = 7"):
        RunConfig.of(num_anchors=8, subspace_rank=8)
    assert RunConfig.of(num_anchors=8, subspace_rank=7).aso.subspace_rank == 7
