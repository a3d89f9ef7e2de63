"""Named variants of ASO: each relevance source and each ablation, as run-config keys.

The central command (``fedaso central``, Table A) runs them as they are; the strategy
comparison (``fedaso compare``, Table B) joins them to FedASO (``fedaso+aso-probe``).
Names join with ``+`` and their keys apply left to right: ``aso-oracle+no-projection`` is
the oracle's loss weights without Eq. 5.
"""

from __future__ import annotations

from simulations.experiment.runner import Variant, parse_list

ASO_VARIANTS: dict[str, Variant] = {
    variant.label: variant
    for variant in (
        Variant("plain", (("strategy", "fedavg"),)),
        # Plain training with FedProx's proximal pull (proximal-mu) towards the weights the
        # round started from: the regularised baseline of Table C's plane.
        Variant("prox", (("strategy", "fedprox"),)),
        Variant("aso", (("strategy", "fedaso"),)),
        Variant("aso-refit", (("strategy", "fedaso"), ("relevance-source", "anchors-refit"))),
        Variant("aso-probe", (("strategy", "fedaso"), ("relevance-source", "probe"))),
        Variant("aso-oracle", (("strategy", "fedaso"), ("relevance-source", "oracle"))),
        Variant("no-projection", (("strategy", "fedaso"), ("project-gradients", False))),
        Variant("lambda-0", (("strategy", "fedaso"), ("aso-lambda", 0.0))),
        Variant("lambda-3", (("strategy", "fedaso"), ("aso-lambda", 3.0))),
        Variant("static-anchors", (("strategy", "fedaso"), ("update-anchors", False))),
        Variant("project-low", (("strategy", "fedaso"), ("project-low-relevance", True))),
    )
}


def joined_variant(name: str, flag: str = "--variants") -> Variant:
    """The variant ``name``: registered names joined by ``+``, their keys left to right.

    Raises ``ValueError`` naming ``flag`` and every unknown part.
    """
    parts = name.split("+")
    unknown = [part for part in parts if part not in ASO_VARIANTS]
    if unknown:
        raise ValueError(
            f"{flag}: {', '.join(unknown)} not in {', '.join(ASO_VARIANTS)} "
            "(or several of them joined by +)"
        )
    settings = dict(item for part in parts for item in ASO_VARIANTS[part].settings)
    return Variant(name, tuple(settings.items()))


def chosen_variants(text: str) -> list[Variant]:
    """The variants named in ``text`` (comma-separated ``--variants``), in the given order."""
    return [joined_variant(name) for name in parse_list(text, "--variants")]
