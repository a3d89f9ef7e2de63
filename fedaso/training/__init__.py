"""Local training and evaluation of a model on one split of data.

``trainer`` (the local loop of spec section 4, with or without ASO), ``aso_state`` (what
ASO adds to a step: Eq. 1, 4 and 5), ``dp_sgd`` (Opacus wiring for DP-SGD), ``batches``
(batching and per-token losses shared by training and evaluation), ``evaluate`` (loss,
accuracy, embeddings and fact recall) and ``fact_relevance`` (how well relevance tells
fact tokens from the others, and the logistic probe fitted on public facts).
"""
