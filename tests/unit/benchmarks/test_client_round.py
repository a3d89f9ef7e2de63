"""benchmarks.client_round at its tiniest, and its bare loop against FedASO's plain training."""

import argparse
import re
import tempfile
from pathlib import Path

import pytest
import torch

from benchmarks import client_round
from fedaso.training.trainer import train_local


def test_client_round_prints_setup_rounds_and_ratios(capsys):
    code = client_round.main(
        ["--model", "tiny-llama-shape", "--steps", "1", "--repeats", "1", "--seq-len", "16"]
    )
    out = capsys.readouterr().out
    assert code == 0
    for mode in ("full", "lora"):
        section = out.split(f"\n{mode}:")[1]
        for label in ("caches cleared (before)", "caches kept (after)", "train handler)"):
            assert re.search(rf"{re.escape(label)}:\s+[0-9.]+ \(", section), (mode, label)
        assert re.search(r"plain/bare \(handler\): [0-9.]+", section)
        assert re.search(r"tokens/s, bare\s+: [0-9]+", section)
    assert re.search(r"LoRA round / full round \(handler\): [0-9.]+", out)


def test_the_bare_loop_trains_on_the_batches_of_train_local():
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = client_round.save_shape_model(Path(tmp) / "m", "tiny-llama-shape")
        args = argparse.Namespace(seq_len=16, batch_size=2, steps=3, precision="fp32")
        bench = client_round.make_bench(model_dir, "lora", args, tmp)
        plain, bare = bench.job(), bench.job()
        torch.manual_seed(0)  # LoRA's dropout draws from the global RNG
        result = train_local(
            plain.model,
            plain.data.train,
            anchors=None,
            aso=None,
            train=plain.run.training,
            seed=plain.seed,
        )
        data = bare.data.train
        torch.manual_seed(0)
        lm = client_round.hf_model(bare).lm
        bare_loss = client_round.bare_loop(
            lm, data.inputs, data.targets, bare.run.training, bare.seed
        )
    # Full windows, so the mean of per-step means is the mean over all tokens.
    assert result.num_steps == 3
    assert bare_loss == pytest.approx(result.train_loss, rel=1e-5)


def test_bad_flags_are_named():
    with pytest.raises(SystemExit):
        client_round.main(["--steps", "0"])
