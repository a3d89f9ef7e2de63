"""Anchor initialization (k-means) and the online update of Eq. 1 against a loop."""

import numpy as np
import pytest
import torch

from fedaso.aso.anchors import ema_update_towards, kmeans_anchors
from fedaso.aso.relevance import score_tokens


def test_ema_update_matches_loop_reference():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(5, 4, generator=generator)
    embeddings = torch.randn(9, 4, generator=generator)
    # Each anchor's nearest token as a training step finds it, from the scoring pass.
    nearest = score_tokens(embeddings=embeddings, anchors=anchors, tau=0.1).nearest_token
    got = ema_update_towards(
        anchors=anchors, embeddings=embeddings, nearest_token=nearest, alpha=0.2
    )
    want = anchors.clone()
    for j in range(5):
        best, best_sim = 0, -2.0
        for i in range(9):
            a, e = anchors[j], embeddings[i]
            sim = float(a @ e / (a.norm() * e.norm()))
            if sim > best_sim:
                best, best_sim = i, sim
        want[j] = 0.8 * anchors[j] + 0.2 * embeddings[best]
    torch.testing.assert_close(got, want)


def test_ema_update_towards_given_tokens_moves_each_anchor_towards_its_token():
    generator = torch.Generator().manual_seed(1)
    anchors = torch.randn(4, 3, generator=generator)
    embeddings = torch.randn(6, 3, generator=generator)
    nearest = torch.tensor([5, 0, 0, 2])
    got = ema_update_towards(
        anchors=anchors, embeddings=embeddings, nearest_token=nearest, alpha=0.1
    )
    torch.testing.assert_close(got, 0.9 * anchors + 0.1 * embeddings[nearest])


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    points = np.concatenate([c + 0.1 * rng.standard_normal((50, 3)) for c in centers])
    anchors = kmeans_anchors(embeddings=points, num_anchors=3, seed=0)
    assert anchors.shape == (3, 3) and anchors.dtype == np.float32
    errors = [np.linalg.norm(anchors - c, axis=1).min() for c in centers]
    assert max(errors) < 0.1
    again = kmeans_anchors(embeddings=points, num_anchors=3, seed=0)
    np.testing.assert_array_equal(anchors, again)


def test_kmeans_with_too_few_points_names_the_values():
    with pytest.raises(ValueError, match="num-anchors=8 exceeds the 5"):
        kmeans_anchors(embeddings=np.zeros((5, 2)), num_anchors=8, seed=0)
