"""Gradient projection (docs/SPEC.md section 4) against a brute-force per-token reference."""

import pytest
import torch

from fedaso.aso.projection import project_gradient, projection_weights, semantic_subspace
from fedaso.aso.relevance import relevance_scores
from fedaso.config import ASOConfig
from fedaso.models import TinyLM, TinyLMConfig
from fedaso.training.aso_state import ASOState
from fedaso.training.batches import EmbeddingCapture, per_token_losses, scored_tokens


def test_subspace_is_orthonormal_and_matches_numpy_svd():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(12, 6, generator=generator)
    basis = semantic_subspace(anchors=anchors, rank=3)
    assert basis.shape == (6, 3)
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), atol=1e-5, rtol=0)
    centered = (anchors - anchors.mean(0)).double().numpy()
    import numpy as np

    _, _, vt = np.linalg.svd(centered)
    want = vt[:3].T @ vt[:3]
    torch.testing.assert_close(
        (basis @ basis.T).double(), torch.from_numpy(want), atol=1e-5, rtol=0
    )


def test_subspace_rank_out_of_range_names_the_value():
    with pytest.raises(ValueError, match="R=7"):
        semantic_subspace(anchors=torch.randn(5, 6), rank=7)


def test_project_gradient_limits():
    generator = torch.Generator().manual_seed(1)
    gradient = torch.randn(4, 6, generator=generator)
    basis = semantic_subspace(anchors=torch.randn(8, 6, generator=generator), rank=2)
    untouched = project_gradient(gradient=gradient, basis=basis, relevance=torch.zeros(4))
    torch.testing.assert_close(untouched, gradient)
    fully = project_gradient(gradient=gradient, basis=basis, relevance=torch.ones(4))
    torch.testing.assert_close(fully, gradient @ basis @ basis.T)
    relevance = torch.tensor([0.0, 0.25, 0.9, 1.0])
    torch.testing.assert_close(projection_weights(relevance, low_relevance=False), relevance)
    torch.testing.assert_close(projection_weights(relevance, low_relevance=True), 1 - relevance)


def brute_force_grads(model, inputs, targets, anchors, aso, basis):
    """Sum over tokens of the per-token ASO gradient, one token at a time.

    Upstream parameters get J_i^T (s_i P + (1 - s_i) I) v_i with v_i the gradient of token
    i's weighted loss at its own embedding; the head gets the plain gradient.
    """
    head = {id(p) for p in model.lm_head.parameters()}
    params = list(model.parameters())
    with EmbeddingCapture(model.embedding_point) as capture:
        logits = model(inputs)
        embedding = capture.output  # (B, T, d)
    flat = embedding.reshape(-1, embedding.shape[-1])  # (N, d)
    losses = per_token_losses(logits, targets)
    relevance = relevance_scores(
        embeddings=flat.detach(), anchors=anchors, tau=aso.aso_tau, kind=aso.relevance
    )
    n = losses.numel()
    projector = basis @ basis.T
    totals = [torch.zeros_like(p) for p in params]
    for i in range(n):
        token_loss = (1 + aso.aso_lambda * relevance[i]) * losses[i] / n
        v = torch.autograd.grad(token_loss, embedding, retain_graph=True)[0].reshape(n, -1)[i]
        # Eq. 5 projects by s_i; the low-relevance variant by 1 - s_i.
        w = 1 - relevance[i] if aso.project_low_relevance else relevance[i]
        v_tilde = w * (projector @ v) + (1 - w) * v
        upstream = torch.autograd.grad(
            (flat[i] * v_tilde).sum(), params, retain_graph=True, allow_unused=True
        )
        plain = torch.autograd.grad(token_loss, params, retain_graph=True, allow_unused=True)
        for k, p in enumerate(params):
            grad = plain[k] if id(p) in head else upstream[k]
            if grad is not None:
                totals[k] += grad
    return totals


@pytest.mark.parametrize("low_relevance", [False, True])
def test_hook_matches_brute_force_per_token_reference(low_relevance):
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(vocab_size=11, block_size=5, n_layer=1, n_head=2, n_embd=8))
    inputs = torch.randint(0, 11, (3, 5))
    targets = torch.randint(0, 11, (3, 5))
    aso = ASOConfig(
        num_anchors=6, subspace_rank=3, aso_tau=0.3, aso_lambda=0.7,
        project_low_relevance=low_relevance,
    )  # fmt: skip
    anchors = torch.randn(6, 8)
    state = ASOState(anchors, aso)

    with EmbeddingCapture(model.embedding_point) as capture:
        losses = per_token_losses(model(inputs), targets)
        weighted, _ = state.weight_losses(capture.output, losses, scored_tokens(targets))
        loss = weighted.mean()
    model.zero_grad()
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]

    want = brute_force_grads(model, inputs, targets, anchors, aso, state.basis)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-4)
    # The projection must matter: the same weighted loss without it moves upstream grads.
    unprojected = ASOState(anchors, ASOConfig(**{**aso.__dict__, "project_gradients": False}))
    model.zero_grad()
    with EmbeddingCapture(model.embedding_point) as capture:
        losses = per_token_losses(model(inputs), targets)
        weighted, _ = unprojected.weight_losses(capture.output, losses, scored_tokens(targets))
        loss = weighted.mean()
    loss.backward()
    hooked = dict(zip([name for name, _ in model.named_parameters()], got, strict=True))
    assert not torch.allclose(model.blocks[0].fc.weight.grad, hooked["blocks.0.fc.weight"])
    torch.testing.assert_close(model.lm_head.weight.grad, hooked["lm_head.weight"])
