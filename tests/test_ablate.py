"""The ablation variants really change local training (unit level, with fedaso.training.trainer)."""

import argparse

import pytest
import torch

from fedaso.data import TensorSplit
from fedaso.training.trainer import train_local
from simulations.ablate import ABLATIONS, FULL
from simulations.engine import add_run_flags
from simulations.experiment import add_experiment_flags, plan_runs

TINY = {"model-width": 16, "model-heads": 2, "model-layers": 1, "seq-len": 16,
        "num-anchors": 8, "subspace-rank": 4}  # fmt: skip


def ablation_runs(tmp_path):
    parser = argparse.ArgumentParser()
    add_experiment_flags(parser)
    add_run_flags(parser)
    args = parser.parse_args(["--out", str(tmp_path), *(f"--set={k}={v}" for k, v in TINY.items())])
    return {s.variant: s.run for s in plan_runs(args, list(ABLATIONS.values()), [0], tmp_path)}


def one_step(run):
    """One local step of ``run``'s training on a fixed batch from a fixed model and anchors."""
    torch.manual_seed(0)
    model = run.build_model()
    tokens = torch.randint(
        0, 256, (8, run.data.seq_len + 1), generator=torch.Generator().manual_seed(1)
    )
    batch = TensorSplit(inputs=tokens[:, :-1], targets=tokens[:, 1:])
    anchors = torch.randn(
        run.aso.num_anchors, run.model.model_width, generator=torch.Generator().manual_seed(2)
    )
    aso = run.local_aso()
    result = train_local(
        model,
        batch,
        anchors=anchors if aso is not None else None,
        aso=aso,
        train=run.replace(max_steps=1, batch_size=8, optimizer="sgd", lr=0.1).training,
        seed=0,
    )
    return [p.detach().clone() for p in model.parameters()], result.anchors, anchors


@pytest.mark.parametrize("variant", ["no-projection", "lambda-0", "static-anchors", "fedavg"])
def test_each_ablation_trains_differently_from_full_aso(tmp_path, variant):
    runs = ablation_runs(tmp_path)
    full_params, full_anchors, start = one_step(runs[FULL])
    params, anchors, _ = one_step(runs[variant])
    assert not torch.equal(full_anchors, start)  # full ASO moves its anchors
    if variant == "static-anchors":
        # Same loss and projection: identical parameters after one step, but frozen anchors.
        assert all(torch.equal(a, b) for a, b in zip(params, full_params, strict=True))
        assert torch.equal(anchors, start)
    else:
        # With SGD, a different parameter after one step means a different gradient.
        assert not all(torch.equal(a, b) for a, b in zip(params, full_params, strict=True))


def test_full_aso_is_deterministic_on_the_same_batch(tmp_path):
    runs = ablation_runs(tmp_path)
    first, second = one_step(runs[FULL])[0], one_step(runs[FULL])[0]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
