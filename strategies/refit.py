"""FedASO with what the server fits each round (docs/SPEC.md section 13): anchors, or a probe.

``relevance-source = anchors-refit`` (:class:`AnchorRefitFedASO`):

Fine-tuning rotates the states at the embedding point, so anchors that clients move by
Eq. 1 from a fixed start lose the tokens they stood for. Under ``anchors-refit`` the server
instead re-fits the anchor set after every round: k-means over its public seed corpus,
embedded by the new global model, warm-started from the last centroids
(``fedaso.aso.anchors.refit_anchors``). The anchors travel down only: clients score relevance
and project against them but neither move nor send them (``clients.client_app``), so a
reply is the model's arrays alone, the section 5 merge is unused, and a round's upload
carries no anchor bytes. A reply that does carry anchors is rejected like any reply whose
arrays differ from what was asked for.

``relevance-source = probe`` (:class:`ProbeFedASO`): after every round the server fits a
logistic probe on its span-labelled public documents under the new global model
(``fedaso.aso.relevance_probe``) and sends its ``w`` and ``b`` with the payload, under
``fedaso.wire``'s reserved probe keys. Clients score relevance with it. Under Eq. 5 the
anchors still move by Eq. 1, travel up and are merged as usual, since the projection's
subspace comes from them; without Eq. 5 nothing reads them (``ASOConfig.uses_anchors``),
so none exist: the payload is the model and the probe, a reply the model alone, and a
round's traffic carries no anchor bytes. Replies do not echo the probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Message

from fedaso.aso.relevance import RelevanceProbe
from fedaso.privacy import PrivacyConfig
from fedaso.wire import join_payload, probe_of, split_payload, with_probe, without_probe
from strategies.fedaso import FedASO
from strategies.replies import ClientUpdate, parse_train_reply

# (the new global model's arrays, the last anchors (M, d)) -> the re-fitted anchors (M, d)
AnchorFit = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]
# the global model's arrays -> the relevance probe fitted under that model
ProbeFit = Callable[[dict[str, np.ndarray]], RelevanceProbe]


class AnchorRefitFedASO(FedASO):
    """FedASO whose anchors the server re-fits each round; clients send models only.

    Parameters
    ----------
    refit : AnchorFit
        The server's re-fit: given the round's aggregated model arrays and the anchors it
        sent, the anchors to send next (``strategies.factory.SeedCorpusRefit``).
    **kwargs
        As for :class:`strategies.fedaso.FedASO`.
    """

    def __init__(
        self, *, refit: AnchorFit, privacy: PrivacyConfig | None = None, **kwargs: Any
    ) -> None:
        if privacy is not None and privacy.anchors_private:
            raise ValueError(
                f"anchor_dp={privacy.anchor_dp!r}: anchors-refit sends no anchors up, so "
                "there is nothing to privatize; use anchor_dp='none'"
            )
        super().__init__(privacy=privacy, **kwargs)
        self.refit = refit

    def parse_reply(self, msg: Message) -> ClientUpdate | str:
        """Check the reply against the model's arrays alone (no anchors may come up).

        The usable update is given the anchors that were sent, so that the strategy's
        anchor-change bound sees a change of zero.
        """
        model_arrays, anchors = split_payload(self.global_arrays)
        parsed = parse_train_reply(msg, model_arrays, self.aggregation_weight, self.bounds)
        if isinstance(parsed, str):
            return parsed
        return dataclasses.replace(parsed, arrays=join_payload(parsed.arrays, anchors))

    def _aggregate(
        self, server_round: int, updates: list[ClientUpdate]
    ) -> tuple[dict[str, np.ndarray], float]:
        """The weighted model and the anchors re-fitted under it; the anchors' mean row move."""
        previous = self.anchors()
        model = self.aggregate_models(updates)
        refitted = self.refit(model, previous).astype(previous.dtype)
        drift = float(np.linalg.norm(refitted - previous, axis=1).mean())
        return join_payload(model, refitted), drift


class ProbeFedASO(FedASO):
    """FedASO whose relevance comes from a logistic probe the server fits each round.

    Parameters
    ----------
    fit_probe : ProbeFit
        The server's fit: given the global model's arrays, the probe to send with them
        (``strategies.factory.PublicDocumentProbe``).
    uses_anchors : bool (default: True)
        Whether the payload carries anchors (``ASOConfig.uses_anchors``: Eq. 5 needs their
        subspace); without them no anchor is sent, received or merged.
    **kwargs
        As for :class:`strategies.fedaso.FedASO`.
    """

    def __init__(
        self,
        *,
        fit_probe: ProbeFit,
        uses_anchors: bool = True,
        privacy: PrivacyConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if not uses_anchors and privacy is not None and privacy.anchors_private:
            raise ValueError(
                f"anchor_dp={privacy.anchor_dp!r}: the probe without Eq. 5 uses no anchors, so "
                "there is nothing to privatize; use anchor_dp='none'"
            )
        super().__init__(privacy=privacy, **kwargs)
        self.fit_probe = fit_probe
        self.uses_anchors = uses_anchors

    def check_global_payload(self) -> None:
        """Raise unless the payload carries the probe, and anchors exactly when they are used."""
        if probe_of(self.global_arrays) is None:
            raise ValueError("FedASO with the probe needs the probe in the ArrayRecord it sends")
        if self.uses_anchors:
            super().check_global_payload()
        elif split_payload(self.global_arrays)[1] is not None:
            raise ValueError(
                "FedASO with the probe and no Eq. 5 uses no anchors, but the payload carries them"
            )

    def with_probe(self, payload: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``payload`` with the probe fitted under its model (the initial one, or a round's)."""
        probe = self.fit_probe(split_payload(payload)[0])
        return with_probe(payload, probe.weight, probe.bias)

    def parse_reply(self, msg: Message) -> ClientUpdate | str:
        """Check the reply against the global payload less the probe, which is not echoed."""
        return parse_train_reply(
            msg, without_probe(self.global_arrays), self.aggregation_weight, self.bounds
        )

    def _aggregate(
        self, server_round: int, updates: list[ClientUpdate]
    ) -> tuple[dict[str, np.ndarray], float]:
        """FedASO's aggregate (the model alone without anchors), with the probe re-fitted."""
        if not self.uses_anchors:
            return self.with_probe(self.aggregate_models(updates)), 0.0
        payload, drift = super()._aggregate(server_round, updates)
        return self.with_probe(payload), drift
