"""Local training and evaluation of a model on one split of data.

``trainer`` (the local loop of spec section 4, with or without ASO), ``dp_sgd`` (Opacus
wiring for DP-SGD), ``evaluate`` (loss, accuracy, embeddings and fact recall) and
``fact_relevance`` (how well relevance tells fact tokens from the others).
"""
