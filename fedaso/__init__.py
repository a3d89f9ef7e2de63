"""FedASO core: Active Semantic Optimization math, models, data and privacy.

Everything in this package is plain PyTorch, NumPy and scikit-learn; it never imports
Flower, so it can be tested and reused outside a federation. The Flower glue lives in the
top-level ``clients`` and ``strategies`` packages.
"""
