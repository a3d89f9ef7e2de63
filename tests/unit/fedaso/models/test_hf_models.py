"""Hugging Face causal LMs as FedASO models: embedding point, projection, masks, LoRA, DP."""

import numpy as np
import pytest
import torch

from fedaso.aso.relevance import relevance_scores
from fedaso.config import ASOConfig, ModelConfig, TrainConfig
from fedaso.data import TensorSplit
from fedaso.data.tokens import IGNORE_INDEX
from fedaso.models import HFCausalLM, build_model
from fedaso.models.arrays import exchanged_names, load_model_arrays, model_to_arrays
from fedaso.privacy import DPSGDConfig
from fedaso.training.aso_state import ASOState
from fedaso.training.batches import EmbeddingCapture, per_token_losses, scored_tokens
from fedaso.training.evaluate import embed, evaluate
from fedaso.training.trainer import train_local
from tests.config_helpers import model_spec
from tests.hf_helpers import tiny_hf_model

ASO = ASOConfig(num_anchors=6, subspace_rank=3, aso_tau=0.3, aso_lambda=0.7)


def hf(arch="llama", peft="none", **lora_keys):
    spec = model_spec(model=f"hf:{tiny_hf_model(arch)}", peft=peft, **lora_keys)
    torch.manual_seed(0)
    return build_model(spec)


def batch(vocab=400, rows=3, seq=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (rows, seq + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:].clone()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "gpt_neox"])
def test_embedding_point_is_the_input_of_the_lm_head(arch):
    model = hf(arch)
    inputs, _ = batch()
    head = model.lm.get_output_embeddings()
    with EmbeddingCapture(model.embedding_point) as capture, torch.no_grad():
        logits = model(inputs)
    hidden = capture.output  # (B, T, d)
    assert hidden.shape == (3, 6, model.lm.config.hidden_size) == (3, 6, model.embedding_width)
    # The head applied to the tapped tensor gives the model's logits: it is the head's input.
    torch.testing.assert_close(logits, head(hidden))
    # ... and it is the final hidden state after the last norm.
    with torch.no_grad():
        states = model.lm(input_ids=inputs, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hidden, states[-1])


def test_projection_on_a_lora_model_matches_a_per_token_reference():
    model = hf("llama", peft="lora", lora_r=2, lora_alpha=4, lora_dropout=0.0)
    inputs, targets = batch()
    anchors = torch.randn(6, model.embedding_width, generator=torch.Generator().manual_seed(2))
    state = ASOState(anchors, ASO)
    params = [p for p in model.parameters() if p.requires_grad]
    with EmbeddingCapture(model.embedding_point) as capture:
        losses = per_token_losses(model(inputs), targets)
        weighted, _ = state.weight_losses(capture.output, losses, scored_tokens(targets))
    got = torch.autograd.grad(weighted.mean(), params)

    # Reference: token by token, J_i^T (s_i P + (1 - s_i) I) v_i (every adapter is upstream).
    with EmbeddingCapture(model.embedding_point) as capture:
        losses = per_token_losses(model(inputs), targets)
        embedding = capture.output
    flat = embedding.reshape(-1, embedding.shape[-1])  # (N, d)
    relevance = relevance_scores(embeddings=flat.detach(), anchors=anchors, tau=ASO.aso_tau)
    projector = state.basis @ state.basis.T
    n = losses.numel()
    want = [torch.zeros_like(p) for p in params]
    for i in range(n):
        token_loss = (1 + ASO.aso_lambda * relevance[i]) * losses[i] / n
        v = torch.autograd.grad(token_loss, embedding, retain_graph=True)[0].reshape(n, -1)[i]
        v_tilde = relevance[i] * (projector @ v) + (1 - relevance[i]) * v
        upstream = torch.autograd.grad((flat[i] * v_tilde).sum(), params, retain_graph=True)
        for total, grad in zip(want, upstream, strict=True):
            total += grad
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-4)


def test_padding_is_excluded_from_loss_relevance_anchors_and_counts():
    model = hf("llama")
    inputs, targets = batch(rows=4, seq=8)
    targets[:, 5:] = IGNORE_INDEX  # right padding: the last 3 positions carry no loss
    scored = scored_tokens(targets)
    with torch.no_grad(), EmbeddingCapture(model.embedding_point) as capture:
        model(inputs)
    flat = capture.output.reshape(-1, model.embedding_width)  # (N, d)
    # Anchors at the padded positions' embeddings: counted, padding would score highest.
    anchors = flat[~scored][:6].clone()
    data = TensorSplit(inputs=inputs, targets=targets)
    train = TrainConfig(batch_size=4, lr=1e-9, local_epochs=1, max_steps=1, device="cpu")
    result = train_local(model, data, anchors=anchors, aso=ASO, train=train, seed=0)
    assert result.num_tokens == int(scored.sum()) == 20
    want = relevance_scores(embeddings=flat[scored], anchors=anchors, tau=ASO.aso_tau)
    assert result.mean_relevance == pytest.approx(want.mean().item(), rel=1e-4)
    # The anchor update moved towards scored tokens only (Eq. 1 with the scored argmax).
    nearest = (
        torch.nn.functional.normalize(flat[scored], dim=1)
        @ torch.nn.functional.normalize(anchors, dim=1).T
    )
    moved = 0.99 * anchors + 0.01 * flat[scored][nearest.argmax(dim=0)]
    torch.testing.assert_close(result.anchors, moved, atol=1e-4, rtol=1e-4)
    # Loss and accuracy over scored tokens only, and embed() returns only scored rows.
    unpadded = TensorSplit(inputs=inputs[:, :5], targets=targets[:, :5])
    assert evaluate(model, data).loss == pytest.approx(evaluate(model, unpadded).loss, rel=1e-5)
    assert embed(model, data).shape == (20, model.embedding_width)


def test_lora_exchanges_only_adapters_and_the_base_never_travels():
    model = hf("llama", peft="lora", lora_r=4)
    names = exchanged_names(model)
    assert names and all("lora_" in name for name in names)
    arrays = model_to_arrays(model)
    lora_bytes = sum(a.nbytes for a in arrays.values())
    full_bytes = sum(a.nbytes for a in model_to_arrays(hf("llama")).values())
    assert lora_bytes < full_bytes / 5
    # Loading adapter arrays into a fresh LoRA model reproduces its outputs.
    changed = {name: array + 0.1 for name, array in arrays.items()}
    load_model_arrays(model, changed)
    other = hf("llama", peft="lora", lora_r=4)
    load_model_arrays(other, changed)
    inputs, _ = batch()
    with torch.no_grad():  # eval(): LoRA dropout off
        torch.testing.assert_close(model.eval()(inputs), other.eval()(inputs))
    with pytest.raises(ValueError, match="unexpected"):
        load_model_arrays(other, changed | {"lm.model.embed_tokens.weight": np.zeros((1, 1))})


def test_tied_weights_travel_once_in_a_full_fine_tune():
    model = hf("gpt2")  # GPT-2 ties its LM head to the token embedding
    names = exchanged_names(model)
    assert not any("lm_head" in name for name in names)
    assert any("wte" in name for name in names)


def test_dp_sgd_trains_lora_adapters_and_names_an_unsupported_module():
    inputs, targets = batch(rows=8)
    data = TensorSplit(inputs=inputs, targets=targets)
    train = TrainConfig(batch_size=4, lr=1e-3, local_epochs=1, device="cpu")
    dp = DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="hooks")
    anchors = torch.randn(6, 32)
    model = hf("llama", peft="lora", lora_r=2)
    before = {k: v.copy() for k, v in model_to_arrays(model).items()}
    result = train_local(model, data, anchors=anchors, aso=ASO, train=train, seed=0, dp_sgd=dp)
    assert result.dp_history and result.num_steps >= 1
    after = model_to_arrays(model)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match=r"module 'lm\.transformer\.h\.0\.attn\.c_attn'.*Conv1D"):
        train_local(hf("gpt2"), data, anchors=anchors, aso=ASO, train=train, seed=0, dp_sgd=dp)


def test_bf16_autocast_keeps_aso_math_in_fp32():
    model = hf("llama", peft="lora", lora_r=2)
    inputs, targets = batch(rows=4)
    data = TensorSplit(inputs=inputs, targets=targets)
    train = TrainConfig(batch_size=4, lr=1e-3, local_epochs=1, device="cpu", precision="bf16")
    result = train_local(model, data, anchors=torch.randn(6, 32), aso=ASO, train=train, seed=0)
    assert result.anchors.dtype == torch.float32 and torch.isfinite(result.anchors).all()
    assert 0 < result.mean_relevance < 1 and np.isfinite(result.train_loss)


def test_model_spec_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="model='gpt2'"):
        ModelConfig(model="gpt2")
    with pytest.raises(ValueError, match=r"peft='lora'.*hf: model"):
        ModelConfig(model="tinylm", peft="lora")
    with pytest.raises(ValueError, match="lora-r=0"):
        ModelConfig(lora_r=0)
    with pytest.raises(ValueError, match="could not be loaded"):
        build_model(model_spec(model="hf:/no/such/model/dir"))
    with pytest.raises(ValueError, match="lora-target-modules='nope'"):
        build_model(
            model_spec(
                model=f"hf:{tiny_hf_model('llama')}", peft="lora", lora_target_modules="nope"
            )
        )


def test_hf_model_is_an_hfcausallm_with_a_max_length():
    model = hf("qwen2")
    assert isinstance(model, HFCausalLM) and model.max_length == 128


def test_lora_dropout_does_not_depend_on_what_ran_before_in_the_process():
    """A simulation worker's global RNG holds whatever earlier messages left: one round must
    train the same from any state, and leave that state as it found it."""
    inputs, targets = batch(rows=8)
    data = TensorSplit(inputs=inputs, targets=targets)
    train = TrainConfig(batch_size=4, lr=1e-2, local_epochs=1, device="cpu")
    anchors = torch.randn(6, 32, generator=torch.Generator().manual_seed(1))
    replies = []
    for earlier in (1, 2):
        model = hf("llama", peft="lora", lora_r=2, lora_dropout=0.5)
        torch.manual_seed(earlier)
        before = torch.random.get_rng_state()
        result = train_local(model, data, anchors=anchors, aso=ASO, train=train, seed=7)
        assert torch.equal(torch.random.get_rng_state(), before)
        replies.append((model_to_arrays(model), result.train_loss))
    (first, loss_1), (second, loss_2) = replies
    assert loss_1 == loss_2
    assert all(np.array_equal(first[name], second[name]) for name in first)
    # The seed still matters: another round's seed draws other dropout masks.
    model = hf("llama", peft="lora", lora_r=2, lora_dropout=0.5)
    other = train_local(model, data, anchors=anchors, aso=ASO, train=train, seed=8)
    assert other.train_loss != loss_1
