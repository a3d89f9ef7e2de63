"""Central evaluation: the global model on the server's held-out data after every round.

Loss, accuracy and perplexity on ``central.eval``, fact recall on ``facts``, and (given the
anchors) how well relevance tells fact tokens from the others; with ``extra-eval-dataset``
the same on a second dataset, under ``extra-`` keys (forgetting). :class:`CentralEvaluator`
is the ``evaluate_fn`` that Flower's round loop calls, and times each round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord

from fedaso.aso.relevance import RelevanceProbe
from fedaso.config import RunConfig
from fedaso.config.training import resolve_device
from fedaso.data import CentralData, load_central, task_of
from fedaso.data.tokens import TextCodec, load_codec
from fedaso.models.arrays import load_model_arrays
from fedaso.training.evaluate import evaluate, fact_recall
from fedaso.training.fact_relevance import relevance_by_token_kind
from fedaso.wire import probe_of, split_payload
from flower_wire.records import metric_record, record_to_arrays

# Called with each round's number and central metrics (e.g. to show progress).
RoundCallback = Callable[[int, Mapping[str, float]], None]


def central_metrics(
    model: torch.nn.Module,
    central: CentralData,
    dataset: str,
    codec: TextCodec,
    anchors: np.ndarray | None = None,
    run: RunConfig | None = None,
    relevance_probe: RelevanceProbe | None = None,
) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``central.eval``; perplexity and fact recall if any.

    Fact recall encodes prompts and answers with ``codec``, the model's tokenizer or bytes.
    Given the global ``anchors`` or ``relevance_probe`` and the ``run`` (its relevance
    settings) on ``facts``, also the mean relevance of fact and filler tokens and the AUROC
    of relevance for fact tokens against the others (``fedaso.training.fact_relevance``),
    scored by ``relevance_probe`` if given; not under ``relevance-source = oracle``.
    """
    result = evaluate(model, central.eval)
    metrics: dict[str, float] = {"loss": result.loss, "accuracy": result.accuracy}
    if task_of(dataset) == "lm":
        metrics["perplexity"] = math.exp(min(result.loss, 50.0))
    if central.recall_prompts:
        recall = fact_recall(model, central.recall_prompts, codec=codec)
        metrics["fact-recall"] = recall.exact_match
        metrics["fact-answer-loss"] = recall.answer_loss
    # The oracle's s is the fact indicator itself (AUROC 1 by construction); its anchors
    # give only the projection's subspace, so their relevance is not what it weights by.
    if (
        central.fact_probe is not None
        and (anchors is not None or relevance_probe is not None)
        and run is not None
        and run.aso.relevance_source != "oracle"
    ):
        relevance = relevance_by_token_kind(
            model, central.fact_probe, anchors, tau=run.aso.aso_tau, kind=run.aso.relevance,
            relevance_probe=relevance_probe,
        )  # fmt: skip
        metrics["relevance-fact"] = relevance.fact
        metrics["relevance-filler"] = relevance.filler
        metrics["relevance-auroc"] = relevance.auroc
    return metrics


class CentralEvaluator:
    """``evaluate_fn`` of ``Strategy.start``: evaluates the global model, times each round.

    With ``extra-eval-dataset`` set, the model is also evaluated on that dataset's central
    data, reported under ``extra-`` keys (e.g. ``extra-fact-recall``). ``on_round``, if
    given, receives each round's number and metrics (e.g. to show progress).
    """

    def __init__(
        self, run: RunConfig, central: CentralData, on_round: RoundCallback | None = None
    ) -> None:
        self.run = run
        self.central = central
        self.extra = (
            load_central(
                run.replace(dataset=run.outputs.extra_eval_dataset).data_config(num_partitions=1)
            )
            if run.outputs.extra_eval_dataset
            else None
        )
        self.on_round = on_round
        self.codec = load_codec(run.data_config(num_partitions=1).tokenizer)
        self.model = run.build_model().to(resolve_device(run.training.device))
        self.last_end = time.perf_counter()

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        start = time.perf_counter()
        payload = record_to_arrays(arrays)
        model_arrays, anchors = split_payload(payload)
        probe = probe_of(payload)
        relevance_probe = RelevanceProbe(*probe) if probe is not None else None
        load_model_arrays(self.model, model_arrays)
        metrics = central_metrics(
            self.model, self.central, self.run.data.dataset, self.codec, anchors, self.run,
            relevance_probe,
        )  # fmt: skip
        if self.extra is not None:
            extra = central_metrics(
                self.model,
                self.extra,
                self.run.outputs.extra_eval_dataset,
                self.codec,
                anchors,
                self.run,
                relevance_probe,
            )
            metrics |= {f"extra-{key}": value for key, value in extra.items()}
        end = time.perf_counter()
        metrics["round-seconds"] = start - self.last_end if server_round else 0.0
        metrics["eval-seconds"] = end - start
        self.last_end = end
        if self.on_round is not None:
            self.on_round(server_round, metrics)
        return metric_record(metrics)
