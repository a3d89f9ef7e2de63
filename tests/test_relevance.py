"""Relevance scores (docs/SPEC.md section 2) against a slow, obviously right loop reference."""

import math

import pytest
import torch

from fedaso.aso.relevance import (
    column_max,
    cosine_similarities,
    literal_eq3_scores,
    relevance_from_similarities,
    relevance_scores,
    score_tokens,
)


def loop_relevance(embeddings, anchors, tau, kind):
    """Token by token, anchor by anchor, in float64 Python arithmetic."""
    scores = []
    for e in embeddings.double().tolist():
        sims = []
        for a in anchors.double().tolist():
            dot = sum(x * y for x, y in zip(e, a, strict=True))
            norm = math.sqrt(sum(x * x for x in e)) * math.sqrt(sum(y * y for y in a))
            sims.append(dot / norm)
        weights = [math.exp(c / tau) for c in sims]
        probs = [w / sum(weights) for w in weights]
        m = len(anchors)
        if kind == "max":
            scores.append((m * max(probs) - 1) / (m - 1))
        else:
            entropy = -sum(p * math.log(p) for p in probs if p > 0)
            scores.append(1 - entropy / math.log(m))
    return torch.tensor(scores)


@pytest.mark.parametrize("kind", ["max", "entropy"])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_relevance_matches_loop_reference(kind, tau):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(13, 5, generator=generator)
    anchors = torch.randn(7, 5, generator=generator)
    got = relevance_scores(embeddings=embeddings, anchors=anchors, tau=tau, kind=kind)
    want = loop_relevance(embeddings, anchors, tau, kind).float()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_literal_eq3_is_constant_one_over_m():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(50, 8, generator=generator)
    anchors = torch.randn(9, 8, generator=generator)
    literal = literal_eq3_scores(embeddings=embeddings, anchors=anchors, tau=0.1)
    torch.testing.assert_close(literal, torch.full((50,), 1 / 9))


@pytest.mark.parametrize("kind", ["max", "entropy"])
def test_scores_span_zero_to_one_on_constructed_inputs(kind):
    num_anchors = 4
    anchors = torch.eye(num_anchors + 1)[:num_anchors]  # orthonormal anchors in R^5
    on_anchor = anchors[2:3]  # identical to one anchor
    equidistant = torch.eye(num_anchors + 1)[num_anchors:]  # orthogonal to every anchor
    embeddings = torch.cat([on_anchor, equidistant])
    scores = relevance_scores(embeddings=embeddings, anchors=anchors, tau=0.01, kind=kind)
    assert scores[0] > 0.999
    assert scores[1] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["max", "entropy"])
def test_tiny_temperature_is_stable_and_bounded(kind):
    generator = torch.Generator().manual_seed(2)
    similarities = cosine_similarities(
        embeddings=torch.randn(100, 6, generator=generator),
        anchors=torch.randn(10, 6, generator=generator),
    )
    scores = relevance_from_similarities(similarities=similarities, tau=1e-6, kind=kind)
    assert torch.isfinite(scores).all()
    assert (scores >= 0).all() and (scores <= 1).all()


def test_bad_arguments_are_named():
    similarities = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="tau=0"):
        relevance_from_similarities(similarities=similarities, tau=0, kind="max")
    with pytest.raises(ValueError, match="'median'"):
        relevance_from_similarities(similarities=similarities, tau=0.1, kind="median")
    with pytest.raises(ValueError, match="M=1"):
        relevance_from_similarities(similarities=torch.zeros(3, 1), tau=0.1)


def ties_matrix():
    """Similarities with repeated maxima in several columns."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(37, 9, generator=generator)
    matrix[[4, 20, 30], 2] = 9.0  # three-way tie: the first (row 4) must win
    matrix[[0, 36], 5] = 7.0
    matrix[:, 7] = 0.5  # the whole column ties
    return matrix


def test_column_max_equals_torch_max_with_first_index_on_ties():
    matrix = ties_matrix()
    values, rows = column_max(matrix)
    want_values, want_rows = matrix.max(dim=0)
    assert torch.equal(values, want_values)
    assert torch.equal(rows, want_rows)
    assert rows[2] == 4 and rows[5] == 0 and rows[7] == 0


@pytest.mark.parametrize("kind", ["max", "entropy"])
@pytest.mark.parametrize("block_rows", [1, 5, 64, None])
def test_score_tokens_equals_whole_matrix_reductions(kind, block_rows):
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(50, 6, generator=generator)
    embeddings[17] = embeddings[3]  # identical tokens tie for every anchor
    anchors = torch.randn(11, 6, generator=generator)
    got = score_tokens(
        embeddings=embeddings, anchors=anchors, tau=0.2, kind=kind, block_rows=block_rows
    )
    similarities = cosine_similarities(embeddings=embeddings, anchors=anchors)
    want = relevance_from_similarities(similarities=similarities, tau=0.2, kind=kind)
    torch.testing.assert_close(got.relevance, want, atol=1e-6, rtol=1e-6)
    assert torch.equal(got.nearest_token, similarities.argmax(dim=0))
    want_loop = loop_relevance(embeddings, anchors, 0.2, kind).float()
    torch.testing.assert_close(got.relevance, want_loop, atol=1e-5, rtol=1e-5)


def test_score_tokens_on_an_empty_batch_scores_nothing_and_still_checks_arguments():
    empty = score_tokens(embeddings=torch.zeros(0, 4), anchors=torch.randn(3, 4), tau=0.1)
    assert empty.relevance.shape == (0,) and empty.nearest_token is None
    with pytest.raises(ValueError, match="tau=0"):
        score_tokens(embeddings=torch.zeros(0, 4), anchors=torch.randn(3, 4), tau=0)
