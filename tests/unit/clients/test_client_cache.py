"""One client process serving several runs from its caches replies as a cold one, bit for bit.

The per-process caches (``fedaso.models.cache``, and the data caches) keep what does not
change between messages; everything that trains is built fresh per message. These tests
run different runs (full fine-tune, LoRA, LoRA under DP-SGD, full again, LoRA on other data)
through one process's real ClientApp and compare every reply with the reply of the same
message after every cache is cleared, as in a fresh process.
"""

import gc
import math
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.client_round import clear_process_caches, node_context, train_message
from clients.client_app import app
from fedaso.config import RunConfig
from fedaso.models import build_model
from fedaso.models.arrays import model_to_arrays
from fedaso.models.cache import source_identity
from fedaso.privacy import SEEDED_SAMPLING_ENV
from flower_wire.records import record_to_arrays
from tests.config_helpers import model_spec
from tests.hf_helpers import tiny_hf_model


def runs(model_dir: str) -> list[tuple[str, RunConfig]]:
    """Five different runs (run key, config) on one hf: model, in the order a node sees them."""
    common = RunConfig.of(
        strategy="fedavg", model=f"hf:{model_dir}", dataset="facts", facts_entities=8,
        seq_len=32, batch_size=4, max_steps=2, local_epochs=1, device="cpu",
    )  # fmt: skip
    lora = common.replace(peft="lora", lora_r=4)
    return [
        ("full-a", common.replace(seed=0, lr=1e-3)),
        ("lora-a", lora.replace(seed=1, lr=3e-3)),
        # DP-SGD under Opacus; no noise, so that the reply is reproducible (clipping only).
        ("lora-dp", lora.replace(seed=2, dp_sgd=True, dp_noise_multiplier=0.0)),
        ("full-b", common.replace(seed=3, lr=3e-4, optimizer="sgd")),
        ("lora-b", lora.replace(seed=4, partitioner="dirichlet:0.5", lora_dropout=0.0)),
    ]


def reply_of(run_key: str, run: RunConfig) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The ClientApp's reply (model arrays, metrics) to ``run``'s round-1 train message."""
    torch.manual_seed(run.federation.seed)  # the server's initial adapters differ per run
    message = train_message(run, run_key)
    reply = app(message, node_context(tempfile.mkdtemp(prefix="fedaso-cache-test-")))
    assert not reply.has_error(), reply.error.reason
    return record_to_arrays(reply.content["arrays"]), dict(reply.content["metrics"])


def same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric dicts, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


def test_a_warm_process_replies_to_several_runs_as_cold_processes_do(monkeypatch):
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "1")  # DP-SGD's batches follow the public seed
    sequence = runs(tiny_hf_model("llama"))
    warm = [reply_of(key, run) for key, run in sequence]
    for (key, run), (warm_arrays, warm_metrics) in zip(sequence, warm, strict=True):
        clear_process_caches()
        cold_arrays, cold_metrics = reply_of(key, run)
        assert warm_arrays.keys() == cold_arrays.keys(), key
        for name, array in warm_arrays.items():
            assert np.array_equal(array, cold_arrays[name]), (key, name)
        assert same_metrics(warm_metrics, cold_metrics), key
    full = build_model(sequence[0][1].model_spec())
    # A full fine-tune after LoRA runs still trains and sends every weight.
    assert warm[3][0].keys() == model_to_arrays(full).keys()
    assert not any(np.array_equal(warm[3][0][n], a) for n, a in model_to_arrays(full).items())


def test_lora_models_share_the_cached_frozen_base_and_never_write_it():
    source = tiny_hf_model("llama")
    spec = model_spec(model=f"hf:{source}", peft="lora", lora_r=2)
    first, second = build_model(spec), build_model(spec)
    frozen = [(n, p) for n, p in first.named_parameters() if not p.requires_grad]
    assert frozen
    second_params = dict(second.named_parameters())
    for name, param in frozen:  # one copy of the base per process, however many models
        assert param.data_ptr() == second_params[name].data_ptr()
    adapters = [p for p in first.parameters() if p.requires_grad]
    assert all(
        p.data_ptr() != second_params[n].data_ptr()
        for n, p in first.named_parameters()
        if p.requires_grad
    )
    assert adapters
    full = build_model(model_spec(model=f"hf:{source}"))
    assert all(p.requires_grad for p in full.parameters())
    assert not {p.data_ptr() for p in full.parameters()} & {p.data_ptr() for _, p in frozen}


@pytest.mark.parametrize("peft", ["none", "lora"])
def test_a_dropped_model_is_freed_at_once_not_by_the_cyclic_collector(peft):
    # A client builds a model per message: one kept alive by a reference cycle would hold
    # its weights (and a full fine-tune's Adam state) until Python's collector runs.
    model = build_model(model_spec(model=f"hf:{tiny_hf_model('llama')}", peft=peft))
    gc.disable()
    try:
        alive = weakref.ref(model)
        del model
        assert alive() is None
    finally:
        gc.enable()


def test_a_model_folder_rewritten_in_place_is_read_again(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_hf_model("gpt2"), folder)
    spec = model_spec(model=f"hf:{folder}")
    before = model_to_arrays(build_model(spec))
    identity = source_identity(str(folder))
    rewritten = build_model(spec)
    for param in rewritten.parameters():
        torch.nn.init.normal_(param.data)
    rewritten.lm.save_pretrained(folder)  # same names, same sizes: only the contents change
    assert source_identity(str(folder)) != identity
    after = model_to_arrays(build_model(spec))
    assert any(not np.array_equal(before[n], after[n]) for n in before)
    assert all(np.array_equal(after[n], a) for n, a in model_to_arrays(rewritten).items())


def test_the_identity_of_a_hub_name_is_the_name(tmp_path):
    assert source_identity("org/no-such-model").files == ()
    with pytest.raises(ValueError, match="hf:/no/such/dir"):
        build_model(model_spec(model="hf:/no/such/dir"))
    assert source_identity(str(Path(tmp_path))).files == ()
