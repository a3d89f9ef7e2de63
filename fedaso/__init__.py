"""FedASO core: Active Semantic Optimization math, models, data and privacy.

Everything in this package is plain PyTorch, NumPy and scikit-learn; it never imports
Flower, so it can be tested and reused outside a federation. The Flower glue lives in the
top-level ``clients`` and ``strategies`` packages.

Docstrings across the project cite the specification, ``docs/SPEC.md``, by its section
numbers ("spec section 2", "docs/SPEC.md section 13") and the source report's equations as
"Eq. n" (SPEC.md says how the two number them).
"""
