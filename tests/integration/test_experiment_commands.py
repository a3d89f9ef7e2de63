"""The experiment commands end to end on Flower's simulation engine (tiny: 3 clients, 1 round)."""

import csv
import json

import numpy as np
import pytest

from fedaso.config import RunConfig
from simulations import compare, forgetting
from tests.tracking_readers import mlflow_artifacts, mlflow_runs, mlflow_series, tensorboard_series


def model_bytes(run: RunConfig) -> int:
    return sum(t.numel() * t.element_size() for t in run.build_model().state_dict().values())


def test_compare_two_strategies_two_seeds_writes_every_output(tmp_path, tiny):
    # The four runs share one Ray head (simulations.ray_head). Joining a running cluster, the
    # driver's other threads draw from the process-wide `random` before Flower samples: one
    # seed sampled different partitions under fedaso and fedavg until every round's sample
    # was seeded right before it is drawn (strategies.rounds.round_sampling).
    argv = ["--strategies", "fedaso,fedavg", "--seeds", "0,1", "--num-clients", "3",
            "--fraction-train", "0.67", "--rounds", "1", "--out", str(tmp_path)]  # fmt: skip
    argv += [*tiny.flags(local_epochs=1), "--set=tracking=mlflow"]
    assert compare.main(argv) == 0

    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert sorted((r["variant"], r["seed"], r["round"]) for r in rows) == sorted(
        (v, s, r) for v in ("fedaso", "fedavg") for s in ("0", "1") for r in ("0", "1")
    )
    assert all(float(r["loss"]) > 0 for r in rows)
    summary = (tmp_path / "summary.md").read_text()
    assert "| strategy | final loss |" in summary
    assert "| fedaso | " in summary and "| fedavg | " in summary
    assert "![central](central.png)" in summary
    for plot in ("central.png", "facts.png", "aso.png", "traffic.png"):
        assert (tmp_path / plot).read_bytes()[:4] == b"\x89PNG"
    figures = json.loads((tmp_path / "summary.json").read_text())["variants"]
    assert figures["fedaso"]["loss"]["count"] == 2

    run = tiny.config(local_epochs=1)
    for seed in (0, 1):
        traffic = {}
        for strategy in ("fedaso", "fedavg"):
            metrics = json.loads(
                (tmp_path / strategy / f"seed-{seed}" / "metrics.json").read_text()
            )
            traffic[strategy] = metrics["rounds"][1]["traffic"]
        # 2 of 3 clients each got the model and replied with it; only FedASO moves anchors.
        for counts in traffic.values():
            assert counts["messages"] == counts["replies"] == 2
            assert counts["model-bytes-down"] == counts["model-bytes-up"] == 2 * model_bytes(run)
            assert counts["local-steps"] > 0
        assert traffic["fedaso"]["anchor-bytes-down"] == 2 * 16 * 32 * 4
        assert traffic["fedaso"]["anchor-bytes-up"] == 2 * 16 * 32 * 4
        assert traffic["fedavg"]["anchor-bytes"] == 0
        # One seed samples the same partitions under both strategies.
        assert traffic["fedaso"]["train-partitions"] == traffic["fedavg"]["train-partitions"]
        assert len(set(traffic["fedaso"]["train-partitions"])) == 2

    # One MLflow experiment holds every run (and the summary), read back with MLflow's client.
    runs = mlflow_runs(tmp_path / "tracking", experiment=tmp_path.name)
    names = {f"{v}/seed-{s}" for v in ("fedaso", "fedavg") for s in (0, 1)}
    assert set(runs) == names | {"summary"}
    fedaso = runs["fedaso/seed-1"]
    assert fedaso.data.params["strategy"] == "fedaso" and fedaso.data.params["seed"] == "1"
    assert fedaso.data.params["num-anchors"] == "16"
    metrics = json.loads((tmp_path / "fedaso" / "seed-1" / "metrics.json").read_text())
    losses = {r["round"]: r["central"]["loss"] for r in metrics["rounds"]}
    assert mlflow_series(fedaso, "central/loss") == pytest.approx(losses)
    assert list(mlflow_series(fedaso, "train/mean-relevance")) == [1]
    assert {"model.pt", "anchors.npy", "metrics.json"} <= mlflow_artifacts(fedaso)
    assert {"summary.md", "metrics.csv", "central.png"} <= mlflow_artifacts(runs["summary"])


def test_forgetting_continues_from_phase_a_and_tracks_a_during_b(tmp_path, tiny, ray_cluster):
    argv = ["--strategies", "fedaso", "--num-clients", "2", "--fraction-train", "1.0",
            "--rounds", "1", "--set-b", "max-steps=1", "--out", str(tmp_path),
            "--ray-address", ray_cluster.address]  # fmt: skip
    argv += [*tiny.flags(local_epochs=1), "--set=tracking=tensorboard"]
    assert forgetting.main(argv) == 0
    phase_a = json.loads((tmp_path / "phase-a" / "fedaso" / "metrics.json").read_text())
    phase_b = json.loads((tmp_path / "phase-b" / "fedaso" / "metrics.json").read_text())
    assert phase_a["config"]["dataset"] == "facts:a"
    assert phase_b["config"]["dataset"] == "facts:b"
    assert phase_b["config"]["initial-anchors"].endswith("phase-a/fedaso/anchors.npy")
    # --set-b applies to phase B alone: one local step per client there.
    assert (phase_a["config"]["max-steps"], phase_b["config"]["max-steps"]) == (0, 1)
    assert phase_b["rounds"][1]["traffic"]["local-steps"] == 2
    assert phase_a["rounds"][1]["traffic"]["local-steps"] > 2
    # Phase B starts from phase A's final model: same figures on A's data before training.
    a_final, b_start = phase_a["rounds"][-1]["central"], phase_b["rounds"][0]["central"]
    assert b_start["extra-loss"] == pytest.approx(a_final["loss"], rel=1e-6)
    assert b_start["extra-fact-answer-loss"] == pytest.approx(a_final["fact-answer-loss"], rel=1e-6)
    summary = json.loads((tmp_path / "summary.json").read_text())["fedaso"]
    b_end = phase_b["rounds"][-1]["central"]
    assert summary["a-loss-after"]["mean"] == pytest.approx(b_end["extra-loss"])
    assert summary["a-loss-increase"]["mean"] == pytest.approx(
        b_end["extra-loss"] - a_final["loss"]
    )
    assert "| fedaso | " in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "phase-b" / "retention.png").exists()
    assert not np.isnan(summary["b-loss"]["mean"])

    # Both phases log into one TensorBoard root, read back with TensorBoard's own reader.
    board = tmp_path / "tracking" / "tensorboard"
    for phase, metrics in (("phase-a", phase_a), ("phase-b", phase_b)):
        losses = {r["round"]: r["central"]["loss"] for r in metrics["rounds"]}
        assert tensorboard_series(board / phase / "fedaso", "central/loss") == pytest.approx(
            losses, rel=1e-6
        )
        assert (board / phase / "fedaso" / "artifacts" / "model.pt").is_file()
    b_extra = {r["round"]: r["central"]["extra-loss"] for r in phase_b["rounds"]}
    assert tensorboard_series(board / "phase-b" / "fedaso", "central/extra-loss") == (
        pytest.approx(b_extra, rel=1e-6)
    )


def test_forgetting_rejects_a_dataset_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        forgetting.main(["--dataset", "facts", "--out", str(tmp_path)])
    assert "use --domains" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pair", "message"),
    [("max-steps", "--set-b 'max-steps' is not KEY=VALUE"), ("nope=1", "nope")],
)
def test_forgetting_rejects_a_bad_phase_b_setting_by_name(tmp_path, capsys, pair, message):
    with pytest.raises(SystemExit):
        forgetting.main(["--set-b", pair, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
