"""DP-SGD under Opacus composes with the ASO projection hook (docs/SPEC.md section 7)."""

import math

import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.validators import ModuleValidator

from fedaso.config import ASOConfig, RunConfig, TrainConfig
from fedaso.data import TensorSplit, load_partition
from fedaso.models import MLPClassifier, MLPConfig, TinyLM, TinyLMConfig
from fedaso.privacy import SEEDED_SAMPLING_ENV, DPSGDConfig
from fedaso.training.aso_state import ASOState
from fedaso.training.batches import EmbeddingCapture, per_token_losses, scored_tokens
from fedaso.training.trainer import train_local

ASO = ASOConfig(num_anchors=6, subspace_rank=3, aso_lambda=1.0, aso_tau=0.2)


def tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(TinyLMConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8))


def lm_batch(batch=5, seq=8):
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (batch, seq + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize(
    "model", [tiny_lm(), MLPClassifier(MLPConfig(num_features=12, hidden=8, num_classes=4))]
)
def test_reference_models_pass_opacus_validation(model):
    assert ModuleValidator.validate(model, strict=False) == []


def aso_gradients(model, inputs, targets, anchors, *, point, per_sample):
    """Gradients of the ASO loss, either plain ``.grad`` or Opacus' summed per-sample grads."""
    forward = GradSampleModule(model) if per_sample else model
    state = ASOState(anchors, ASO)
    with EmbeddingCapture(point) as capture:
        losses = per_token_losses(forward(inputs), targets)
        weighted, _ = state.weight_losses(capture.output, losses, scored_tokens(targets))
        loss = weighted.mean()
        loss.backward()
    if not per_sample:
        return {n: p.grad.clone() for n, p in model.named_parameters()}
    # loss_reduction="mean": Opacus scales each per-sample gradient by the batch size.
    grads = {n: p.grad_sample.sum(dim=0) / inputs.shape[0] for n, p in model.named_parameters()}
    forward.remove_hooks()
    return grads


def test_opacus_per_sample_gradients_are_the_projected_aso_gradients():
    inputs, targets = lm_batch()
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    reference_model, dp_model = tiny_lm(), tiny_lm()
    reference = aso_gradients(
        reference_model,
        inputs,
        targets,
        anchors,
        point=reference_model.embedding_point,
        per_sample=False,
    )
    per_sample = aso_gradients(
        dp_model, inputs, targets, anchors, point=dp_model.embedding_point, per_sample=True
    )
    assert set(per_sample) == set(reference)
    for name, grad in reference.items():
        torch.testing.assert_close(per_sample[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # The projection changes the gradient of every parameter upstream of the embedding point.
    plain = tiny_lm()
    per_token_losses(plain(inputs), targets).mean().backward()
    assert not torch.allclose(plain.ln_f.weight.grad, reference["ln_f.weight"], atol=1e-4)


def test_hooking_the_layernorm_itself_would_miss_its_own_per_sample_gradients():
    """Why the models have an identity tap: on ln_f's raw output, Opacus sees g unprojected."""
    inputs, targets = lm_batch()
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    reference_model, dp_model = tiny_lm(), tiny_lm()
    reference = aso_gradients(
        reference_model, inputs, targets, anchors, point=reference_model.ln_f, per_sample=False
    )
    wrong = aso_gradients(dp_model, inputs, targets, anchors, point=dp_model.ln_f, per_sample=True)
    assert not torch.allclose(wrong["ln_f.weight"], reference["ln_f.weight"], atol=1e-4)
    torch.testing.assert_close(wrong["blocks.0.fc.weight"], reference["blocks.0.fc.weight"])


def test_train_local_under_dp_sgd_reports_its_accountant_history():
    inputs, targets = lm_batch(batch=40)
    data = TensorSplit(inputs=inputs, targets=targets)
    model = tiny_lm()
    before = [p.detach().clone() for p in model.parameters()]
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    seed = 0
    train = TrainConfig(local_epochs=2, batch_size=8, lr=0.01)
    result = train_local(
        model,
        data,
        anchors=anchors,
        aso=ASO,
        train=train,
        seed=seed,
        dp_sgd=DPSGDConfig(noise_multiplier=1.1, max_grad_norm=0.5, grad_sample_mode="hooks"),
    )
    assert result.num_steps == 10  # 2 epochs x (40 / 8) Poisson batches
    assert result.dp_history == ((1.1, 8 / 40, 10),)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert 0 < result.mean_relevance < 1 and math.isfinite(result.train_loss)
    # Opacus' hooks are gone: the model can be wrapped again next round.
    assert not hasattr(model, "autograd_grad_sample_hooks") or not model.autograd_grad_sample_hooks
    GradSampleModule(model).remove_hooks()
    accountant = RDPAccountant()
    accountant.history = list(result.dp_history)
    assert 0 < accountant.get_epsilon(delta=1e-5) < math.inf


def test_dp_sgd_rejects_fedprox():
    inputs, targets = lm_batch(batch=8)
    with pytest.raises(ValueError, match="fedprox"):
        train_local(
            tiny_lm(),
            TensorSplit(inputs=inputs, targets=targets),
            anchors=None,
            aso=None,
            train=TrainConfig(),
            seed=0,
            proximal_mu=0.1,
            dp_sgd=DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="hooks"),
        )


def test_ghost_clipping_trains_exactly_as_per_sample_hooks(monkeypatch):
    """Without noise, Opacus' ghost clipping must take the same steps as its per-sample hooks,
    ASO projection included (the hook fires in both of ghost clipping's backward passes)."""
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "1")  # both modes must draw the same batches
    inputs, targets = lm_batch(batch=24)
    data = TensorSplit(inputs=inputs, targets=targets)
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(4))
    seed = 1
    train = TrainConfig(local_epochs=1, batch_size=6, lr=0.05, optimizer="sgd")
    weights = {}
    for clip in (0.05, 100.0):  # clipping every sample / no sample
        results = {}
        for mode in ("hooks", "ghost"):
            model = tiny_lm()
            dp_sgd = DPSGDConfig(noise_multiplier=0.0, max_grad_norm=clip, grad_sample_mode=mode)
            results[mode] = train_local(
                model, data, anchors=anchors, aso=ASO, train=train, seed=seed, dp_sgd=dp_sgd
            )
            weights[clip, mode] = dict(model.named_parameters())
        assert results["ghost"].num_steps == results["hooks"].num_steps == 4
        assert results["ghost"].dp_history == results["hooks"].dp_history
        torch.testing.assert_close(results["ghost"].anchors, results["hooks"].anchors)
        for name, hooks in weights[clip, "hooks"].items():
            ghost = weights[clip, "ghost"][name]
            torch.testing.assert_close(ghost, hooks, rtol=1e-4, atol=1e-6, msg=name)
    # Clipping is real: the tight clip takes other steps than the loose one.
    tight, loose = weights[0.05, "ghost"], weights[100.0, "ghost"]
    assert any(not torch.allclose(tight[name], loose[name], atol=1e-5) for name in tight)


def test_an_unknown_grad_sample_mode_is_named():
    with pytest.raises(ValueError, match=r"dp-grad-sample-mode.*'functorch'"):
        DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="functorch")


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_dp_sgd_survives_empty_poisson_batches(mode, monkeypatch):
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "1")  # a draw known to have empty batches
    inputs, targets = lm_batch(batch=3)
    data = TensorSplit(inputs=inputs, targets=targets)
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(5))
    # Sample rate 1/3 on 3 records: about 30% of the 30 Poisson batches are empty.
    seed = 2
    train = TrainConfig(local_epochs=10, batch_size=1, lr=0.01)
    model = tiny_lm()
    result = train_local(
        model, data, anchors=anchors, aso=ASO, train=train, seed=seed,
        dp_sgd=DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode=mode),
    )  # fmt: skip
    assert result.num_steps == 30 and result.num_examples < 30
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(result.anchors).all()


def test_dp_sgd_batches_are_secret_unless_the_site_asks_for_seeded_sampling(monkeypatch):
    """Issue 17: batches seeded by the run seed, round and partition (all known to the server)
    would let the server reproduce them, voiding the amplification by subsampling."""
    inputs, targets = lm_batch(batch=40)
    data = TensorSplit(inputs=inputs, targets=targets)
    anchors = torch.randn(6, 8, generator=torch.Generator().manual_seed(6))
    seed = 3
    train = TrainConfig(local_epochs=1, batch_size=8, lr=0.05, optimizer="sgd")
    # No noise and no active clip: the weights after training depend on the batches alone.
    dp_sgd = DPSGDConfig(noise_multiplier=0.0, max_grad_norm=100.0, grad_sample_mode="hooks")

    def weights_after_training() -> torch.Tensor:
        model = tiny_lm()
        train_local(model, data, anchors=anchors, aso=ASO, train=train, seed=seed, dp_sgd=dp_sgd)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert not torch.equal(weights_after_training(), weights_after_training())
    monkeypatch.setenv(SEEDED_SAMPLING_ENV, "1")
    torch.testing.assert_close(weights_after_training(), weights_after_training())


def test_under_dp_sgd_one_record_is_one_window_of_text_no_other_window_holds():
    """Issue 17: overlapping windows put one span of text in several DP-SGD records, so a
    record-level guarantee would not cover the span. Under DP-SGD windows tile the stream."""
    run = RunConfig.of(facts_entities=12, seq_len=32, window_stride=16)
    overlapping = load_partition(run.data_config(num_partitions=2), 0).train
    disjoint = load_partition(run.replace(dp_sgd=True).data_config(num_partitions=2), 0).train
    # Windows of T + 1 = 33 tokens every 16 tokens: the stream is the first window, then
    # each next window's last 16 tokens.
    windows = torch.cat([overlapping.inputs, overlapping.targets[:, -1:]], dim=1)  # (n, 33)
    stream = torch.cat([windows[0], windows[1:, -16:].flatten()])
    tiled = torch.cat([disjoint.inputs, disjoint.targets[:, -1:]], dim=1)  # (m, 33)
    # The overlapping windows may miss up to 15 tokens at the stream's end.
    assert len(stream) // 33 <= len(tiled) <= (len(stream) + 15) // 33
    shared = len(stream) // 33
    torch.testing.assert_close(tiled[:shared].flatten(), stream[: shared * 33])
