"""hf: models in real federations: the ClientApp's LoRA reply, simulations, saved outputs."""

import json

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from clients.client_app import app
from fedaso.config import RunConfig
from fedaso.models.arrays import load_model_arrays
from fedaso.wire import ANCHORS_KEY
from flower_wire.records import record_to_arrays
from simulations.engine import simulate
from tests.hf_helpers import tiny_hf_model
from tests.unit.clients.test_client_app import context, instruction

SMALL = {
    "num_server_rounds": 2,
    "fraction_train": 1.0,
    "local_epochs": 1,
    "facts_entities": 12,
    "num_anchors": 16,
    "subspace_rank": 4,
    "seq_len": 32,
    "lr": 0.01,
}


def test_lora_reply_carries_only_adapters_and_anchors():
    run = RunConfig.of(model=f"hf:{tiny_hf_model('llama')}", peft="lora", lora_r=2, **SMALL)
    anchors = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    # The strict default accepts no hf: model; this node's user owns both sides.
    reply = app(instruction(run, anchors), context(site_policy="open"))
    arrays = record_to_arrays(reply.content["arrays"])
    model_keys = [key for key in arrays if key != ANCHORS_KEY]
    assert model_keys and all(".lora_A." in k or ".lora_B." in k for k in model_keys)
    assert arrays[ANCHORS_KEY].shape == (16, 32)
    assert reply.content["metrics"]["num-tokens"] > 0


@pytest.mark.parametrize(
    ("strategy", "peft", "arch"),
    [("fedaso", "lora", "llama"), ("fedavg", "lora", "llama"), ("fedaso", "none", "gpt2")],
)
def test_hf_simulation_trains_and_saves_in_hugging_face_format(
    tmp_path, ray_cluster, strategy, peft, arch
):
    source = tiny_hf_model(arch)
    run = RunConfig.of(
        strategy=strategy, model=f"hf:{source}", peft=peft, out_dir=str(tmp_path), **SMALL
    )
    simulate(run, num_clients=3, ray_address=ray_cluster.address)
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    losses = [r["central"]["loss"] for r in rounds]
    assert losses[-1] < losses[0], losses
    assert "fact-recall" in rounds[-1]["central"]
    if strategy == "fedaso":
        assert 0 < rounds[-1]["train"]["mean-relevance"] < 1
    # The final model as FedASO holds it (model.pt: the exchanged arrays) ...
    model = run.build_model().eval()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    load_model_arrays(model, {name: tensor.numpy() for name, tensor in state.items()})
    tokens = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(tokens)
        # ... equals what Hugging Face loads from the folder the run wrote.
        if peft == "lora":
            base = AutoModelForCausalLM.from_pretrained(source)
            loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        else:
            loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
        torch.testing.assert_close(loaded(input_ids=tokens).logits, want)


@pytest.mark.parametrize(
    ("strategy", "update_dp"),
    [("fedprox", "none"), ("fedadam", "none"), ("fedaso", "server-fixed")],
)
def test_every_strategy_aggregates_only_the_adapters(tmp_path, ray_cluster, strategy, update_dp):
    run = RunConfig.of(
        strategy=strategy, update_dp=update_dp, update_noise_multiplier=0.01,
        model=f"hf:{tiny_hf_model('llama')}", peft="lora", lora_r=2, out_dir=str(tmp_path),
        **(SMALL | {"num_server_rounds": 1}),
    )  # fmt: skip
    simulate(run, num_clients=3, ray_address=ray_cluster.address)
    rounds = json.loads((tmp_path / "metrics.json").read_text())["rounds"]
    assert rounds[-1]["train"] and np.isfinite(rounds[-1]["central"]["loss"])
    final = torch.load(tmp_path / "model.pt", weights_only=True)
    assert final and all(".lora_A." in k or ".lora_B." in k for k in final)
    initial = run.build_model()
    assert any(not torch.equal(final[k], initial.state_dict()[k]) for k in final if "lora_B" in k)
