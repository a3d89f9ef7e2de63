"""The ablation variants really change local training (unit level, with fedaso.training.trainer)."""

import argparse

import pytest
import torch

from fedaso.data import TensorSplit
from fedaso.training.trainer import train_local
from simulations.ablate import ABLATIONS, FULL
from simulations.engine import add_run_flags
from simulations.experiment import add_experiment_flags, plan_runs

# Smaller still than the shared tiny run: one step of each variant is all that is compared.
SMALLER = {"model_width": 16, "model_layers": 1, "seq_len": 16, "num_anchors": 8,
           "subspace_rank": 4}  # fmt: skip


def ablation_runs(tmp_path, tiny):
    parser = argparse.ArgumentParser()
    add_experiment_flags(parser)
    add_run_flags(parser)
    args = parser.parse_args(["--out", str(tmp_path), *tiny.flags(**SMALLER)])
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
def test_each_ablation_trains_differently_from_full_aso(tmp_path, tiny, variant):
    runs = ablation_runs(tmp_path, tiny)
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


def test_full_aso_is_deterministic_on_the_same_batch(tmp_path, tiny):
    runs = ablation_runs(tmp_path, tiny)
    first, second = one_step(runs[FULL])[0], one_step(runs[FULL])[0]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
