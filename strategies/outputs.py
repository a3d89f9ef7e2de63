"""What a finished run leaves in ``out-dir``: metrics.json, the final model, the anchors.

``metrics.json`` holds the resolved run-config and every round's client train and evaluate
metrics, central evaluation and traffic; ``model.pt`` the final model's exchanged arrays
(without the reserved anchor key; only the adapters under LoRA); ``anchors.npy`` the final
anchors; an ``hf:`` model also its Hugging Face folder (``adapter/`` or ``model/``). With
``tracking`` set, all of it is logged to the tracking back-end (``strategies.tracking``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.common import log
from flwr.serverapp.strategy import Result

from fedaso.config import RunConfig
from fedaso.durable import write_atomically, write_text_atomically
from fedaso.models import HFCausalLM
from fedaso.models.arrays import load_model_arrays
from fedaso.wire import split_payload
from flower_wire.records import record_to_arrays
from strategies.tracking import log_run, tracking_of


def history(
    result: Result, traffic: Callable[[int], Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Per-round records: client train/evaluate metrics, central evaluation, traffic."""
    rounds = sorted(
        set(result.evaluate_metrics_serverapp)
        | set(result.train_metrics_clientapp)
        | set(result.evaluate_metrics_clientapp)
    )
    return [
        {
            "round": r,
            "train": dict(result.train_metrics_clientapp.get(r, {})),
            "evaluate": dict(result.evaluate_metrics_clientapp.get(r, {})),
            "central": dict(result.evaluate_metrics_serverapp.get(r, {})),
            "traffic": dict(traffic(r)) if traffic is not None else {},
        }
        for r in rounds
    ]


def write_outputs(
    out_dir: Path,
    run: RunConfig,
    result: Result,
    seconds: float,
    traffic: Callable[[int], Mapping[str, Any]] | None = None,
) -> None:
    """Write metrics.json, model.pt (no reserved keys) and anchors.npy (if any).

    ``model.pt`` holds the arrays that travel (``fedaso.models.arrays``): the whole state dict of
    a reference model, the adapters of a LoRA model. An ``hf:`` model is also written in
    Hugging Face format (``HFCausalLM.save``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model_arrays, anchors = split_payload(record_to_arrays(result.arrays))
    if model_arrays:
        model = run.build_model()
        load_model_arrays(model, model_arrays)
        tensors = {name: torch.from_numpy(np.asarray(a)) for name, a in model_arrays.items()}
        write_atomically(out_dir / "model.pt", lambda stream: torch.save(tensors, stream))
        if isinstance(model, HFCausalLM):
            log(INFO, "FedASO: wrote %s", model.save(out_dir))
    if anchors is not None:
        write_atomically(out_dir / "anchors.npy", lambda stream: np.save(stream, anchors))
    rounds = history(result, traffic)
    metrics = {
        "config": run.to_flat(),
        "total-seconds": seconds,
        "rounds": rounds,
    }
    write_text_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    log(INFO, "FedASO: wrote %s", out_dir / "metrics.json")
    tracking = tracking_of(run.outputs.tracking, run.outputs.tracking_dir, str(out_dir))
    if tracking is not None:  # run-config, per-round metrics, files (strategies/tracking.py)
        files = [out_dir / name for name in ("model.pt", "anchors.npy", "metrics.json")]
        # An hf: model's Hugging Face folder: the adapter (LoRA) or the full model.
        files += sorted(
            path for folder in ("adapter", "model") for path in (out_dir / folder).glob("*")
        )
        log_run(tracking, run.to_flat(), rounds, files)
