"""The equations of Active Semantic Optimization (spec sections 1-6), as pure functions.

``relevance`` (Eq. 2-3: how relevant is a token to the anchors), ``projection`` (Eq. 4-5:
the semantic subspace and the projected gradient), ``anchors`` (Eq. 1 and the k-means start),
``aggregation`` (Eq. 6: the server's weighted average), ``robust`` (what one reply may do to
a round) and ``relevance_probe`` (the logistic relevance source of spec section 13). Nothing
here imports the rest of the project beyond its validation helpers: the modules take and
return tensors and arrays.
"""
