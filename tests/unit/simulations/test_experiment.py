"""The experiment machinery without the engine: planning, tables, targets, summaries, plots."""

import argparse
import csv
import io
import json
import math

import pytest
import torch

from fedaso.data import load_partition
from simulations.ablate import ABLATIONS, chosen_variants
from simulations.compare import strategy_variants
from simulations.engine import EngineOptions, add_run_flags, round_rows
from simulations.experiment import (
    Progress,
    RunResult,
    Stat,
    add_experiment_flags,
    default_recall_target,
    default_target,
    duration,
    execute,
    figures_table,
    final_figures,
    finished_metrics,
    metrics_rows,
    paired_differences,
    parse_seeds,
    plan_runs,
    plot_curves,
    rounds_to_target,
    run_dir,
    seeds_of,
    steps_to_target,
    summarize,
    summary_table,
    write_metrics_csv,
    write_reports,
)
from simulations.experiment.effects import (
    forgetting_rows,
    matched_recall,
    recall_and_forgetting,
    speedup_rows,
    speedup_target,
)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_experiment_flags(parser)
    add_run_flags(parser)
    return parser.parse_args(argv)


# A hand-made loss curve: round 0 is the initial model.
LOSSES = [5.0, 4.0, 3.2, 3.4, 2.9, 2.5]
STEPS = [0, 10, 12, 11, 10, 9]


@pytest.mark.parametrize(
    ("target", "rounds", "steps"),
    [(5.0, 0, 0), (4.0, 1, 10), (3.3, 2, 22), (3.0, 4, 43), (2.5, 5, 52), (2.4, None, None)],
)
def test_rounds_and_steps_to_target_on_a_hand_made_curve(target, rounds, steps):
    assert rounds_to_target(LOSSES, target) == rounds
    assert steps_to_target(LOSSES, STEPS, target) == steps


def test_rounds_to_a_recall_target_wants_the_value_at_or_above_it():
    recalls = [0.0, 0.1, 0.35, 0.3, 0.5]
    assert rounds_to_target(recalls, 0.3, higher_is_better=True) == 2
    assert rounds_to_target(recalls, 0.6, higher_is_better=True) is None


def test_rounds_to_target_skips_missing_and_nan_losses():
    assert rounds_to_target([None, math.nan, 1.0], 2.0) == 2


def test_steps_to_target_needs_one_count_per_round():
    with pytest.raises(ValueError, match="6 losses but 2 step counts"):
        steps_to_target(LOSSES, [1, 2], 3.0)


def test_stat_is_mean_and_sample_std_and_counts_missing():
    stat = Stat.of([1.0, 2.0, 3.0, None])
    assert stat.mean == 2.0 and stat.std == 1.0 and (stat.count, stat.total) == (3, 4)
    assert stat.text() == "2 ± 1 (3/4)"
    assert Stat.of([None, None]).text() == "- (0/2)"
    assert Stat.of([0.5]).text() == "0.5"


def test_seeds_and_their_errors():
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for bad, message in [("", "at least one"), ("1,x", "'x' is not"), ("1,1", "1 given twice")]:
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)
    assert seeds_of(parse(["--out", "x", "--seed", "4"])) == [4]
    assert seeds_of(parse(["--out", "x"])) == [0]
    with pytest.raises(ValueError, match="not both"):
        seeds_of(parse(["--out", "x", "--seed", "4", "--seeds", "1,2"]))


def test_strategy_and_ablation_names_are_checked():
    assert [v.label for v in strategy_variants("fedaso,fedprox")] == ["fedaso", "fedprox"]
    with pytest.raises(ValueError, match="'fedsgd' is not one of"):
        strategy_variants("fedaso,fedsgd")
    (examples,) = strategy_variants("fedaso:examples")
    assert examples.label == "fedaso-examples"
    assert dict(examples.settings) == {"strategy": "fedaso", "aggregation-weight": "examples"}
    with pytest.raises(ValueError, match="'fedaso:counts' names no aggregation weight"):
        strategy_variants("fedaso:counts")
    with pytest.raises(ValueError, match="'fedavg:examples' is not one of"):
        strategy_variants("fedavg:examples")
    with pytest.raises(ValueError, match="nope not in"):
        chosen_variants("full-aso,nope")


def test_fedaso_joins_the_named_aso_variants():
    (probe,) = strategy_variants("fedaso:uniform+aso-probe+project-low")
    assert probe.label == "fedaso-uniform+aso-probe+project-low"
    assert dict(probe.settings) == {
        "strategy": "fedaso",
        "aggregation-weight": "uniform",
        "relevance-source": "probe",
        "project-low-relevance": True,
    }
    with pytest.raises(ValueError, match="'fedavg\\+aso-probe' is not one of"):
        strategy_variants("fedavg+aso-probe")
    with pytest.raises(ValueError, match="'fedaso\\+plain' is not FedASO"):
        strategy_variants("fedaso+plain")
    with pytest.raises(ValueError, match="nope not in plain, prox, aso"):
        strategy_variants("fedaso+nope")


def test_identical_seeds_give_identical_partitions_across_strategies(tmp_path, tiny):
    args = parse(["--out", str(tmp_path), "--num-clients", "3", *tiny.flags()])
    specs = plan_runs(args, strategy_variants("fedaso,fedavg,fedprox"), [0, 1], tmp_path)
    assert [(s.variant, s.seed) for s in specs][:3] == [
        ("fedaso", 0),
        ("fedavg", 0),
        ("fedprox", 0),
    ]
    for seed in (0, 1):
        runs = [s.run for s in specs if s.seed == seed]
        assert {run.federation.strategy for run in runs} == {"fedaso", "fedavg", "fedprox"}
        # Everything but strategy and output folder is equal, so data and sampling are.
        stripped = {run.replace(strategy="fedavg", out_dir="") for run in runs}
        assert len(stripped) == 1
        configs = [run.data_config(num_partitions=3) for run in runs]
        for partition in range(3):
            first, *others = (load_partition(config, partition) for config in configs)
            for other in others:
                assert torch.equal(first.train.inputs, other.train.inputs)
                assert torch.equal(first.test.inputs, other.test.inputs)
    assert specs[0].run.outputs.out_dir == str((tmp_path / "fedaso" / "seed-0").resolve())


def test_one_seed_keeps_the_flat_layout(tmp_path):
    assert run_dir(tmp_path, "fedavg", 3, several_seeds=False) == tmp_path / "fedavg"
    assert run_dir(tmp_path, "fedavg", 3, several_seeds=True) == tmp_path / "fedavg" / "seed-3"


def test_ablation_variants_set_their_switches(tmp_path, tiny):
    args = parse(["--out", str(tmp_path), *tiny.flags(), "--set", "aso-lambda=2.0"])
    runs = {s.variant: s.run for s in plan_runs(args, list(ABLATIONS.values()), [0], tmp_path)}
    full = runs["full-aso"].local_aso()
    assert full is not None
    assert full.project_gradients and full.update_anchors
    assert full.aso_lambda == 2.0  # the variant keeps what the flags set
    assert not runs["no-projection"].aso.project_gradients
    assert runs["lambda-0"].aso.aso_lambda == 0.0
    assert not runs["static-anchors"].aso.update_anchors
    assert runs["fedavg"].federation.strategy == "fedavg" and runs["fedavg"].local_aso() is None
    for name in ("no-projection", "lambda-0", "static-anchors"):
        assert runs[name].replace(
            project_gradients=True, aso_lambda=2.0, update_anchors=True
        ) == runs["full-aso"].replace(out_dir=runs[name].outputs.out_dir)


def fake_metrics(losses, steps, seconds=1.0, anchor_bytes=100):
    """metrics.json's shape, as the ServerApp writes it, filled with given curves."""
    return {
        "rounds": [
            {
                "round": r,
                "train": {} if r == 0 else {"mean-relevance": 0.5, "anchor-drift": 0.1},
                "central": {
                    "loss": loss,
                    "accuracy": 1 - loss / 10,
                    "round-seconds": seconds * (r > 0),
                },
                "traffic": {
                    "model-bytes": 1000,
                    "anchor-bytes": anchor_bytes,
                    "local-steps": steps[r],
                },
            }
            for r, loss in enumerate(losses)
        ]
    }


def results(tmp_path, tiny):
    args = parse(["--out", str(tmp_path), *tiny.flags()])
    specs = plan_runs(args, strategy_variants("fedaso,fedavg"), [0, 1], tmp_path)
    curves = {
        ("fedaso", 0): [5.0, 3.0, 2.0],
        ("fedaso", 1): [5.0, 3.5, 2.2],
        ("fedavg", 0): [5.0, 4.0, 3.0],
        ("fedavg", 1): [5.0, 3.8, 2.8],
    }
    return [
        RunResult(spec, fake_metrics(curves[spec.variant, spec.seed], [0, 10, 10]))
        for spec in specs
    ]


def test_metrics_rows_one_per_variant_seed_round_and_csv(tmp_path, tiny):
    rows = metrics_rows(results(tmp_path, tiny))
    assert len(rows) == 2 * 2 * 3
    assert list(rows[0])[:4] == ["variant", "seed", "round", "loss"]
    assert "extra-loss" not in rows[0]  # columns no run has are left out
    write_metrics_csv(rows, tmp_path / "metrics.csv")
    with (tmp_path / "metrics.csv").open() as file:
        read = list(csv.DictReader(file))
    assert [(r["variant"], r["seed"], r["round"]) for r in read[:4]] == [
        ("fedaso", "0", "0"),
        ("fedaso", "0", "1"),
        ("fedaso", "0", "2"),
        ("fedavg", "0", "0"),
    ]
    assert read[0]["mean-relevance"] == ""


def test_summary_reduces_over_seeds(tmp_path, tiny):
    runs = results(tmp_path, tiny)
    assert default_target(runs) == pytest.approx(2.9)  # fedavg's mean final loss
    summaries = {s.variant: s.figures for s in summarize(runs, target=2.9)}
    assert summaries["fedaso"]["loss"].mean == pytest.approx(2.1)
    assert summaries["fedaso"]["rounds-to-target"].mean == 2.0
    assert summaries["fedavg"]["rounds-to-target"].count == 1  # seed 0 ends at 3.0 > 2.9
    assert summaries["fedaso"]["steps-to-target"].mean == 20
    assert summaries["fedaso"]["anchor-bytes-per-round"].mean == 100
    table = summary_table(summarize(runs, target=2.9), "strategy")
    assert table.splitlines()[0].startswith("| strategy | final loss | final accuracy |")
    assert "| fedavg | 2.9 ± 0.14 |" in table
    assert "2 ± 0 (1/2)" in table  # fedavg's rounds to target: one seed of two reached it


def test_tables_leave_out_figures_that_no_run_measured(tmp_path, tiny):
    # A text dataset measures no fact recall: no "- (0/2)" row, column or "-" column.
    runs = results(tmp_path, tiny)
    summaries = summarize(runs, target=2.9)
    assert "fact-recall" in summaries[0].figures  # present, but without a value
    figures = figures_table(summaries)
    assert [line.split()[0] for line in figures.splitlines()[2:4]] == ["loss", "accuracy"]
    assert "fact-recall" not in figures and "(0/2)" not in figures
    assert "fact recall" not in summary_table(summaries, "strategy")
    rows = round_rows(runs[0].metrics)
    assert list(rows[0]) == ["round", "loss", "accuracy", "mean-relevance", "seconds"]
    runs[0].metrics["rounds"][-1]["central"]["fact-recall"] = 0.25  # one run, one round
    assert "fact-recall" in figures_table(summarize(runs, target=2.9))
    assert [row["fact-recall"] for row in round_rows(runs[0].metrics)] == [None, None, 0.25]


def test_recall_target_defaults_to_the_lowest_final_recall(tmp_path, tiny):
    runs = results(tmp_path, tiny)
    assert default_recall_target(runs) is None  # no run measured recall
    curves = {
        ("fedaso", 0): [0, 0.2, 0.4],
        ("fedaso", 1): [0, 0.5, 0.6],
        ("fedavg", 0): [0, 0.1, 0.2],
        ("fedavg", 1): [0, 0, 0.2],
    }
    for run in runs:
        recalls = curves[run.spec.variant, run.spec.seed]
        for record, recall in zip(run.metrics["rounds"], recalls, strict=True):
            record["central"]["fact-recall"] = recall
    assert default_recall_target(runs) == pytest.approx(0.2)  # fedavg's mean final recall
    summaries = {s.variant: s.figures for s in summarize(runs, 2.9, recall_target=0.2)}
    assert summaries["fedaso"]["rounds-to-recall"].mean == 1.0  # round 1 on both seeds
    assert summaries["fedavg"]["rounds-to-recall"].mean == 2.0


def test_final_figures_average_seconds_and_bytes_over_trained_rounds():
    figures = final_figures(fake_metrics([5.0, 4.0, 3.0], [0, 1, 1], seconds=2.0))
    assert figures["loss"] == 3.0 and figures["initial-loss"] == 5.0
    assert figures["seconds-per-round"] == 2.0
    assert figures["model-bytes-per-round"] == 1000


def test_paired_differences_subtract_the_reference_seed_by_seed(tmp_path, tiny):
    (fedaso,) = paired_differences(results(tmp_path, tiny), "fedavg")
    # fedaso - fedavg: seed 0: 2.0 - 3.0, seed 1: 2.2 - 2.8
    assert fedaso.variant == "fedaso"
    assert fedaso.figures["loss"].mean == pytest.approx(-0.8)
    assert fedaso.figures["loss"].std == pytest.approx(math.sqrt(0.08))  # sample std
    assert paired_differences(results(tmp_path, tiny), "fedprox") == []


def test_reports_hold_the_paired_table_and_every_file(tmp_path, tiny):
    write_reports(tmp_path, results(tmp_path, tiny), title="T", header="H", target=None,
                  label="strategy", reference="fedavg")  # fmt: skip
    summary = (tmp_path / "summary.md").read_text()
    assert "Paired differences to fedavg" in summary
    assert "| fedaso | -0.8 ± 0.28 |" in summary
    assert "target central loss for rounds/steps to target: 2.9" in summary
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["minus-fedavg"]["fedaso"]["loss"]["mean"] == pytest.approx(-0.8)
    assert (tmp_path / "metrics.csv").exists() and (tmp_path / "central.png").exists()


def test_plots_are_written_as_small_pngs(tmp_path, tiny):
    paths = plot_curves(metrics_rows(results(tmp_path, tiny)), tmp_path)
    assert [p.name for p in paths] == ["central.png", "aso.png", "traffic.png"]
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"
        assert path.stat().st_size < 200_000


def test_progress_shows_one_bar_per_run_with_round_loss_elapsed_and_estimate(tmp_path, tiny):
    args = parse(["--out", str(tmp_path), "--rounds", "2", *tiny.flags()])
    specs = plan_runs(args, strategy_variants("fedaso,fedavg"), [0], tmp_path)
    stream = io.StringIO()
    progress = Progress(specs, stream)
    on_round = progress.round_callback(specs[0])
    on_round(0, {"loss": 5.0})  # the initial evaluation is not a round
    on_round(1, {"loss": 4.0})
    progress.run_finished(specs[0], 75.0)
    screens = stream.getvalue().replace("\r", "\n").splitlines()
    assert stream.getvalue().count("\n") == 1  # one line per run; "\r" redraws it
    last = [line for line in screens if line.strip()][-1]
    assert last.startswith("run 1/2 fedaso seed 0: ")
    assert "round 1/2, loss 4.0000 in 1m15s" in last
    assert " elapsed, " in last and last.rstrip().endswith(" left]")
    assert progress.label(specs[1]) == "run 2/2 fedavg seed 0"


def test_duration():
    assert duration(42.4) == "42s"
    assert duration(75.2) == "1m15s"
    assert duration(3 * 3600 + 120) == "3h02m"


def test_resume_reads_back_a_finished_run_of_the_same_config(tmp_path, tiny):
    args = parse(["--out", str(tmp_path), "--rounds", "2", *tiny.flags()])
    (spec,) = plan_runs(args, strategy_variants("fedavg"), [0], tmp_path)
    written = fake_metrics([5.0, 4.0, 3.0], [0, 1, 1]) | {
        "config": spec.run.to_flat(),
        "wall-seconds": 9.0,
        "num-clients": 3,
    }
    folder = tmp_path / "fedavg"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(written))
    assert finished_metrics(spec) == written
    stream = io.StringIO()
    (result,) = execute([spec], EngineOptions(num_clients=3),
                        progress=Progress([spec], stream), resume=True)  # fmt: skip
    assert result.metrics == written  # read back, not simulated again
    assert stream.getvalue() == f"run 1/1 fedavg seed 0: reused from {spec.run.outputs.out_dir}\n"
    other = spec.run.replace(lr=0.5)
    assert finished_metrics(type(spec)(spec.variant, spec.seed, other)) is None


def test_model_description_names_the_model_that_ran():
    from fedaso.config import RunConfig
    from simulations.experiment.report import model_description

    assert model_description(RunConfig()) == "model width 64, 2 layers"
    lora = RunConfig.of(model="hf:models/base", peft="lora", lora_r=4)
    assert model_description(lora) == "model hf:models/base with LoRA r=4"


def test_knowledge_plot_sets_fact_against_filler_relevance(tmp_path, tiny):
    rows = metrics_rows(results(tmp_path, tiny))
    for row in rows:
        if row["variant"] == "fedaso":
            row["relevance-fact"], row["relevance-filler"] = 0.3, 0.2
    paths = plot_curves(rows, tmp_path)
    assert paths[-1].name == "knowledge.png"
    assert paths[-1].read_bytes()[:4] == b"\x89PNG"


def test_speedup_rows_pair_interpolated_answer_loss_crossings_by_seed(tmp_path, tiny):
    runs = results(tmp_path, tiny)
    answer_losses = {
        ("fedaso", 0): [3.0, 1.0, 0.5],  # reaches 2.0 at round 0.5
        ("fedaso", 1): [3.0, 2.0, 1.0],  # at round 1
        ("fedavg", 0): [3.0, 2.5, 1.0],  # at round 1 + 0.5 / 1.5
        ("fedavg", 1): [3.0, 2.5, 1.5],  # at round 1.5
    }
    for run in runs:
        losses = answer_losses[run.spec.variant, run.spec.seed]
        for record, loss in zip(run.metrics["rounds"], losses, strict=True):
            record["central"]["fact-answer-loss"] = loss
            record["central"]["fact-recall"] = 1.0 - loss / 3.0
    assert speedup_target(runs) == 2.5  # the highest answer loss at mid-run (round 1)
    rows = {row.variant: row for row in speedup_rows(runs, "fedavg", target=2.0)}
    assert rows["fedaso"].rounds_to_target.mean == pytest.approx(0.75)
    ratios = [(1 + 1 / 3) / 0.5, 1.5 / 1.0]
    assert rows["fedaso"].speedup.mean == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
    assert rows["fedaso"].speedup.count == 2 and rows["fedavg"].speedup is None
    # recall = 1 - loss / 3, trapezoids over rounds 0..2: seed 0 fedaso (0 + 2/3 * 2 + 5/6) / 4
    fedaso_auc = [(0 + 2 * (2 / 3) + 5 / 6) / 4, (0 + 2 * (1 / 3) + 2 / 3) / 4]
    fedavg_auc = [(0 + 2 * (1 / 6) + 2 / 3) / 4, (0 + 2 * (1 / 6) + 1 / 2) / 4]
    assert rows["fedaso"].recall_auc.mean == pytest.approx(sum(fedaso_auc) / 2)
    gain = [a - b for a, b in zip(fedaso_auc, fedavg_auc, strict=True)]
    assert rows["fedaso"].recall_auc_gain.mean == pytest.approx(sum(gain) / 2)
    write_reports(tmp_path, runs, title="T", header="H", target=None, reference="fedavg")
    summary = (tmp_path / "summary.md").read_text()
    assert "first reaches 2.5" in summary and "| speed-up vs fedavg [95% CI] |" in summary
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["speedup"]["fedaso"]["speedup"]["count"] == 2


def test_forgetting_is_the_prose_loss_where_recall_first_reaches_a_matched_level(tmp_path, tiny):
    runs = results(tmp_path, tiny)
    curves = {  # (fact recall, prose perplexity) per round
        ("fedaso", 0): ([0.0, 0.4, 0.6], [50.0, 100.0, 400.0]),
        ("fedaso", 1): ([0.0, 0.2, 0.5], [50.0, 80.0, 160.0]),
        ("fedavg", 0): ([0.0, 0.3, 0.7], [50.0, 200.0, 800.0]),
        ("fedavg", 1): ([0.0, 0.6, 0.8], [50.0, 150.0, 300.0]),
    }
    for run in runs:
        recalls, prose = curves[run.spec.variant, run.spec.seed]
        for record, recall, perplexity in zip(run.metrics["rounds"], recalls, prose, strict=True):
            record["central"]["fact-recall"] = recall
            record["central"]["prose-perplexity"] = perplexity
    assert matched_recall(runs) == 0.5  # fedaso seed 1's best
    rows = {row.variant: row for row in forgetting_rows(runs, "fedavg", 0.5)}

    def loss_at(round_, prose):  # the log perplexity, linear between rounds
        low = math.floor(round_)
        share = round_ - low
        high = min(low + 1, 2)
        return (1 - share) * math.log(prose[low]) + share * math.log(prose[high])

    fedaso = [loss_at(1.5, [50, 100, 400]), loss_at(2.0, [50, 80, 160])]  # 0.4->0.6, 0.5 at 2
    fedavg = [loss_at(1 + 0.2 / 0.4, [50, 200, 800]), loss_at(0.5 / 0.6, [50, 150, 300])]
    assert rows["fedaso"].loss_at_match.mean == pytest.approx(sum(fedaso) / 2)
    assert rows["fedaso"].loss_lost.mean == pytest.approx(sum(fedaso) / 2 - math.log(50))
    difference = [a - b for a, b in zip(fedaso, fedavg, strict=True)]
    assert rows["fedaso"].versus_reference.mean == pytest.approx(sum(difference) / 2)
    assert rows["fedavg"].versus_reference is None
    points = recall_and_forgetting(runs)
    assert points["fedaso"][0] == pytest.approx((0.6, math.log(400 / 50)))
    write_reports(tmp_path, runs, title="T", header="H", target=None, reference="fedavg")
    assert "Forgetting (Table C)" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "plane.png").read_bytes()[:4] == b"\x89PNG"
