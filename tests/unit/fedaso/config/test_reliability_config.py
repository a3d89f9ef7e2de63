"""The reliability run-config keys, and the audit's fix: each bad value names its key."""

import pytest

from fedaso.config import RunConfig


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("proximal-mu", -1.0, "proximal-mu=-1.0 is invalid: must be a finite number >= 0"),
        ("round-timeout", 0.0, "round-timeout=0.0 is invalid"),
        ("round-timeout", float("inf"), "round-timeout=inf is invalid"),
        ("max-update-norm-ratio", 0.5, "max-update-norm-ratio=0.5 is invalid: must be 0 (off)"),
        ("max-update-norm-ratio", -1.0, "max-update-norm-ratio=-1.0 is invalid"),
        ("fault-delay", -1.0, "fault-delay=-1.0 is invalid"),
        ("fault-plan", "x:nan", "fault-plan='x:nan' is invalid: entry 'x:nan'"),
        ("fault-plan", "1:boom", "KIND one of raise, delay"),
    ],
)
def test_bad_reliability_values_name_the_key(key, value, named):
    with pytest.raises(ValueError) as error:
        RunConfig.from_flat({key: value})
    assert named in str(error.value)


def test_checkpoints_go_to_checkpoint_dir_else_under_out_dir():
    assert RunConfig().checkpoint_path() == ""
    assert RunConfig.of(out_dir="/o").checkpoint_path() == "/o/checkpoint"
    assert RunConfig.of(out_dir="/o", checkpoint_dir="/c").checkpoint_path() == "/c"
