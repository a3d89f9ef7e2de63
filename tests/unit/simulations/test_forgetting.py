"""The forgetting command's paired differences and their intervals (no federation)."""

import math

from scipy import stats

from simulations.engine import parse_pairs
from simulations.experiment import differences_to, paired_values
from simulations.forgetting import interval_table

FIGURES = {
    ("fedavg", 0): {"a-recall-drop": 0.5, "b-answer-loss": 2.0},
    ("fedavg", 1): {"a-recall-drop": 0.25, "b-answer-loss": None},
    ("fedavg", 2): {"a-recall-drop": 0.5, "b-answer-loss": 3.0},
    ("fedaso", 0): {"a-recall-drop": 0.25, "b-answer-loss": 2.5},
    ("fedaso", 1): {"a-recall-drop": 0.25, "b-answer-loss": 1.0},
    ("fedaso", 2): {"a-recall-drop": 0.0, "b-answer-loss": 3.0},
}
KEYS = ["a-recall-drop", "b-answer-loss"]


def test_paired_values_are_seed_by_seed_differences_and_none_where_one_is_missing():
    values = paired_values(FIGURES, "fedavg", KEYS)
    assert values == {"fedaso": {"a-recall-drop": [-0.25, 0.0, -0.5],
                                 "b-answer-loss": [0.5, None, 0.0]}}  # fmt: skip
    (summary,) = differences_to(FIGURES, "fedavg", KEYS)
    assert summary.figures["a-recall-drop"].mean == -0.25
    assert summary.figures["b-answer-loss"].count == 2
    assert paired_values(FIGURES, "fedprox", KEYS) == {}


def test_interval_table_gives_each_difference_with_its_t_interval():
    columns = [("a-recall-drop", "A recall drop"), ("b-answer-loss", "B")]
    table = interval_table(paired_values(FIGURES, "fedavg", KEYS), columns)
    header, rule, row = table.splitlines()
    assert header == "| strategy | A recall drop | B |" and rule == "|---|---|---|"
    # By hand: mean +- t(0.975, n - 1) * s / sqrt(n).
    drops = [-0.25, 0.0, -0.5]
    mean = sum(drops) / 3
    s = math.sqrt(sum((d - mean) ** 2 for d in drops) / 2)
    half = stats.t.ppf(0.975, 2) * s / math.sqrt(3)
    expected = f"{mean:.3g} [{mean - half:.3g}, {mean + half:.3g}]"
    b_mean, b_half = 0.25, stats.t.ppf(0.975, 1) * math.sqrt(0.125) / math.sqrt(2)
    b_expected = f"{b_mean:.3g} [{b_mean - b_half:.3g}, {b_mean + b_half:.3g}]"  # 2 seeds
    assert row == f"| fedaso | {expected} | {b_expected} |"


def test_phase_b_settings_parse_as_set_values():
    assert parse_pairs(["max-steps=2", "lr=0.001", "peft=lora"], "--set-b") == {
        "max-steps": 2, "lr": 0.001, "peft": "lora"}  # fmt: skip
