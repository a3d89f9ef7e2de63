"""The logistic relevance probe of ``relevance-source = probe`` (docs/SPEC.md section 13).

Anchor relevance tells fact tokens from the others barely better than chance (AUROC 0.59
to 0.65 in issue 18's measurements), so this source learns the distinction instead: the
server fits a logistic regression on public documents whose fact-value spans are known
(the ``facts`` world's public entities, ``CentralData.public_fact_probe``), under the
current global model, and sends its ``d + 1`` numbers to the clients, who score

    s_i = sigmoid(w . e_i + b)

for Eq. 4 and Eq. 5. Classes are weighted to balance (fact tokens are few), so that the
boundary ``s = 0.5`` lies between them rather than below nearly every token. The
projection's subspace U still comes from the anchors.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from fedaso.aso.relevance import RelevanceProbe

MAX_PROBE_TOKENS = 20_000  # per class: a logistic fit over more buys little and costs seconds


def fit_relevance_probe(fact: np.ndarray, other: np.ndarray, *, seed: int) -> RelevanceProbe:
    """Fit the probe on the embeddings ``(n, d)`` of fact tokens (1) and other tokens (0).

    ``fedaso.training.fact_relevance.fit_probe_on_public`` embeds a public
    ``FactProbe`` under a model and calls this.
    """
    # Imported here: scikit-learn is slow to import and only the server fits a probe.
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    classes = [_at_most(rows, rng) for rows in (fact, other)]
    features = np.concatenate(classes)  # (n, d)
    labels = np.repeat([1, 0], [len(rows) for rows in classes])  # (n,)
    # Standardized features: the L2 penalty then means the same whatever the scale of the
    # embedding point (a fresh model's states are tiny); the scaling folds into (w, b).
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6  # (d,), (d,)
    logistic = LogisticRegression(class_weight="balanced", max_iter=1000)
    with threadpool_limits(limits=1):  # as fedaso.aso.anchors' k-means: next to busy actors
        logistic.fit((features - mean) / std, labels)
    weight = logistic.coef_[0] / std  # (d,): w . e + b = coef . (e - mean) / std + intercept
    bias = float(logistic.intercept_[0] - weight @ mean)
    return RelevanceProbe(weight=weight.astype(np.float32), bias=bias)


def _at_most(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` ``(n, d)``, or ``MAX_PROBE_TOKENS`` of them drawn by ``rng`` in order."""
    if len(rows) <= MAX_PROBE_TOKENS:
        return rows
    return rows[np.sort(rng.choice(len(rows), MAX_PROBE_TOKENS, replace=False))]
