"""The run-config: every user-facing setting of a FedASO run, typed and validated once.

Flower hands a ServerApp a flat ``{kebab-case-key: value}`` run-config (from
``[tool.flwr.app.config]`` plus ``--run-config`` overrides). :class:`RunConfig` is its typed
form: :meth:`RunConfig.from_flat` rejects unknown keys, wrong types and bad values before any
training starts, with one message naming the key, the value and what is allowed. The server
then sends the clients their view of it (:meth:`RunConfig.client_view`: every key but the
``SERVER_ONLY_KEYS``), which they parse into a :class:`ClientConfig` and rebuild the same
typed configs from, so there is one source of truth that flows one way:
run-config -> server -> messages -> clients.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from fedaso.aso.aggregation import AGGREGATION_WEIGHTS
from fedaso.aso.robust import ReplyBounds
from fedaso.config import ASOConfig, TrainConfig, is_finite_number, require
from fedaso.data import (
    DATASETS_ALLOWED,
    DIGITS_NUM_CLASSES,
    DIGITS_NUM_FEATURES,
    FACTS_DOMAINS,
    VOCAB_SIZE,
    DataConfig,
    is_dataset_name,
    task_of,
)
from fedaso.fault_plan import parse_fault_plan
from fedaso.models import LoraSettings, ModelSpec, build_model, embedding_width_of, is_hf
from fedaso.models.hf import hf_source
from fedaso.privacy import PrivacyConfig
from fedaso.wire import RUN_KEY, SERVER_ROUND

STRATEGIES = ("fedaso", "fedavg", "fedprox", "fedadam")
TRACKING_BACKENDS = ("none", "tensorboard", "mlflow")  # run-config `tracking`
# num-anchors and subspace-rank of 0 mean "the model's default": the report's M = 512 and
# R = 16 for hf: models, the small values below for the reference models (spec section 11).
AUTO_ANCHORS = {"hf": (512, 16), "reference": (32, 8)}
# Run-config keys only the server reads: never sent to clients (``RunConfig.client_view``).
# Every other key, including keys added later, reaches the clients without further edits.
SERVER_ONLY_KEYS = frozenset(
    {
        "num-server-rounds",
        "fraction-train",
        "fraction-evaluate",
        "min-train-nodes",
        "aggregation-weight",
        "anchor-staleness-decay",
        "server-lr",
        "anchor-init",
        "anchor-seed",
        "update-dp",
        "update-clip",
        "update-noise-multiplier",
        "out-dir",
        "round-timeout",
        "max-update-norm-ratio",
        "max-update-norm",
        "max-client-share",
        "max-reported-count",
        "checkpoint-dir",
        "resume",
        "fault-plan",  # a testing aid; the server tells only the faulty node (strategies.grids)
        "fault-delay",
        "initial-model",
        "initial-anchors",
        "extra-eval-dataset",
        "tracking",
        "tracking-dir",
    }
)


@dataclass(frozen=True)
class RunConfig:
    """All run-config keys; field ``a_b`` is run-config key ``a-b``."""

    # Federation
    strategy: str = "fedaso"  # fedaso | fedavg | fedprox | fedadam
    num_server_rounds: int = 10  # federated rounds
    fraction_train: float = 0.2  # fraction of nodes sampled for training each round
    fraction_evaluate: float = 0.0  # fraction of nodes for federated evaluation (0 = off)
    min_train_nodes: int = 2  # at least this many nodes train per round
    seed: int = 0  # seeds data, model init, anchors, client sampling and batch order
    # Local training
    local_epochs: int = 2  # passes over the local training split per round
    batch_size: int = 16  # windows (LM) or samples (digits) per step
    lr: float = 0.003  # client learning rate
    optimizer: str = "adam"  # adam | sgd
    max_steps: int = 0  # cap on local steps per round, 0 = none
    # ASO (spec sections 2-5)
    aso_lambda: float = 1.0  # semantic emphasis in (1 + lambda * s)
    aso_tau: float = 0.1  # relevance temperature
    aso_alpha: float = 0.01  # anchor EMA rate (Eq. 1)
    num_anchors: int = 0  # M; 0 = the model's default (512 for hf:, 32 otherwise)
    subspace_rank: int = 0  # R; 0 = the model's default (16 for hf:, 8 otherwise; < M)
    relevance: str = "max"  # max | entropy
    project_gradients: bool = True  # Eq. 5 on/off
    update_anchors: bool = True  # Eq. 1 on/off
    subspace_refresh_steps: int = 0  # refresh U every K local steps, 0 = once per round
    relevance_source: str = "anchors"  # anchors | anchors-refit | probe | oracle (research)
    project_low_relevance: bool = False  # variant: project g by 1 - s (irrelevant tokens)
    anchor_blend: float = 0.5  # share of the received global anchors in a client's own set
    # FedASO server (spec sections 5-6)
    aggregation_weight: str = "relevance"  # relevance | relevance-x-examples | examples
    anchor_staleness_decay: float = 0.5  # gamma: weight of a partition's report decays gamma^age
    # Baselines
    proximal_mu: float = 0.01  # FedProx proximal weight
    server_lr: float = 0.01  # FedAdam server learning rate (eta)
    # Data
    dataset: str = "facts"  # facts | facts:a | facts:b | pydoc | digits | text:PATH
    partitioner: str = "iid"  # iid | dirichlet:ALPHA | natural
    seq_len: int = 64  # LM context length in tokens (bytes for the reference model)
    window_stride: int = 16  # bytes between training windows' starts (0 = disjoint windows)
    test_fraction: float = 0.2  # per-client held-out share
    facts_entities: int = 40  # entities per facts domain
    anchor_seed: str = "generic"  # server's k-means seed: generic | knowledge | knowledge-values
    # Model
    model_width: int = 64  # embedding width d
    model_layers: int = 2  # transformer blocks (LM)
    model_heads: int = 4  # attention heads (LM)
    # Privacy (spec section 7; docs/PRIVACY.md)
    anchor_dp: str = "none"  # none | local | central
    anchor_clip: float = 2.0  # c: per-row bound of an anchor change under anchor DP (C = c sqrt M)
    anchor_noise_multiplier: float = 1.0  # sigma of anchor releases
    anchor_delta: float = 1e-5  # delta of the reported anchor epsilon
    anchor_init: str = "server"  # server (seed corpus k-means) | federated (federated k-means)
    anchor_init_clip: float = 40.0  # Frobenius bound of a client's centroid matrix (federated)
    relevance_noise: float = 0.0  # std of Gaussian noise on a client's mean relevance, 0 = off
    dp_sgd: bool = False  # record-level DP-SGD (Opacus) in local training
    dp_noise_multiplier: float = 1.0  # DP-SGD noise multiplier
    dp_max_grad_norm: float = 1.0  # DP-SGD per-sample gradient clip
    dp_grad_sample_mode: str = "hooks"  # hooks | ghost: Opacus' per-sample clipping method
    dp_delta: float = 1e-5  # delta of the reported DP-SGD epsilon
    update_dp: str = "none"  # none | server-fixed | client-fixed (Flower's DP wrappers)
    update_clip: float = 10.0  # clipping norm of Flower's DP wrappers
    update_noise_multiplier: float = 1.0  # noise multiplier of Flower's DP wrappers
    # Output
    out_dir: str = ""  # if set, the server writes metrics.json and the final model here
    # Reliability (docs/RELIABILITY.md)
    round_timeout: float = 3600.0  # seconds the server waits for a round's replies
    max_update_norm_ratio: float = 10.0  # drop updates > ratio x the round's median norm; 0 off
    max_update_norm: float = 1000.0  # drop model updates longer than this; 0 off
    max_client_share: float = 0.5  # no reply holds more of a round's aggregate; 1 = no cap
    max_reported_count: int = 10**9  # a reply's num-examples / num-tokens are capped here
    checkpoint_dir: str = ""  # checkpoint every round here; "" = out-dir/checkpoint (if out-dir)
    resume: str = ""  # continue the run saved in this checkpoint directory
    fault_plan: str = ""  # TESTING AID: "PARTITION:KIND,..." makes partitions misbehave
    fault_delay: float = 0.0  # TESTING AID: a "delay" fault replies this long after the time-out
    # Continuing from a previous run (experiments: forgetting)
    initial_model: str = ""  # model.pt of a previous run to start from; "" = fresh init
    initial_anchors: str = ""  # anchors.npy to start FedASO from; "" = k-means (seed corpus)
    extra_eval_dataset: str = ""  # also evaluate centrally on this dataset each round
    # Model back-end (README: Bring your own model; spec section 11)
    model: str = "tinylm"  # tinylm | hf:NAME_OR_PATH | py:MODULE:FACTORY
    peft: str = "none"  # none | lora (hf: models): only the adapters train and travel
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator (updates scaled by alpha / r)
    lora_dropout: float = 0.05  # dropout on LoRA's input
    lora_target_modules: str = "all-linear"  # PEFT's all-linear, or names: "q_proj,v_proj"
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; ASO's own math stays fp32)
    # Experiment tracking (strategies/tracking.py)
    tracking: str = "none"  # none | tensorboard | mlflow
    tracking_dir: str = ""  # where tracking logs go; "" = out-dir/tracking

    def __post_init__(self) -> None:
        self._resolve_auto_anchors()
        require(
            self.strategy in STRATEGIES,
            "strategy",
            self.strategy,
            f"must be one of {', '.join(STRATEGIES)}",
        )
        require(
            self.aggregation_weight in AGGREGATION_WEIGHTS,
            "aggregation-weight",
            self.aggregation_weight,
            f"must be one of {', '.join(AGGREGATION_WEIGHTS)}",
        )
        for key in (
            "num_server_rounds",
            "min_train_nodes",
            "model_width",
            "model_layers",
            "model_heads",
        ):
            value = getattr(self, key)
            require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                key.replace("_", "-"),
                value,
                "must be an integer >= 1",
            )
        require(
            is_finite_number(self.fraction_train) and 0 < self.fraction_train <= 1,
            "fraction-train",
            self.fraction_train,
            "must be in (0, 1]",
        )
        require(
            is_finite_number(self.fraction_evaluate) and 0 <= self.fraction_evaluate <= 1,
            "fraction-evaluate",
            self.fraction_evaluate,
            "must be in [0, 1]",
        )
        require(
            is_finite_number(self.anchor_blend) and 0 <= self.anchor_blend <= 1,
            "anchor-blend",
            self.anchor_blend,
            "must be in [0, 1]",
        )
        require(
            is_finite_number(self.anchor_staleness_decay) and 0 <= self.anchor_staleness_decay <= 1,
            "anchor-staleness-decay",
            self.anchor_staleness_decay,
            "must be in [0, 1]",
        )
        require(
            is_finite_number(self.server_lr) and self.server_lr > 0,
            "server-lr",
            self.server_lr,
            "must be a finite number > 0",
        )
        require(
            self.model_width % self.model_heads == 0,
            "model-heads",
            self.model_heads,
            f"must divide model-width={self.model_width}",
        )
        require(
            is_finite_number(self.proximal_mu) and self.proximal_mu >= 0,
            "proximal-mu",
            self.proximal_mu,
            "must be a finite number >= 0",
        )
        self._check_relevance_source()
        self.check_reliability()
        self._check_continuation()
        # The component configs validate their own fields, naming the same keys.
        self.model_spec()
        if not is_hf(self.model):  # an hf: model's width is known once it is loaded
            self.aso().check_width(self.model_width)
        self.train(seed=self.seed)
        self.data(num_partitions=1)
        self.check_privacy()
        check_tracking(self.tracking, self.tracking_dir, self.out_dir)

    def check_privacy(self) -> None:
        """Validate the privacy keys and how they combine with the strategy."""
        privacy = self.privacy()
        for key, value, default in (
            ("anchor-dp", privacy.anchor_dp, "none"),
            ("anchor-init", privacy.anchor_init, "server"),
        ):
            require(
                value == default or self.strategy == "fedaso",
                key,
                value,
                f"needs strategy='fedaso' (strategy={self.strategy!r} sends no anchors)",
            )
        require(
            not (privacy.dp_sgd and self.strategy == "fedprox"),
            "dp-sgd",
            privacy.dp_sgd,
            "cannot be combined with strategy='fedprox' (its proximal term is not per-sample)",
        )

    def _check_relevance_source(self) -> None:
        """Validate ``relevance-source`` against what its variant needs (spec section 13)."""
        require(
            self.relevance_source not in ("oracle", "probe") or self.dataset in FACTS_DOMAINS,
            "relevance-source",
            self.relevance_source,
            f"needs the fact spans of a facts dataset (dataset={self.dataset!r} has none)",
        )
        require(
            self.relevance_source not in ("anchors-refit", "probe") or self.update_dp == "none",
            "relevance-source",
            self.relevance_source,
            f"sends the server's own arrays that replies do not echo, which update-dp="
            f"{self.update_dp!r}'s wrappers cannot clip against; use update-dp=none",
        )
        require(
            self.relevance_source != "anchors-refit" or self.anchor_dp == "none",
            "relevance-source",
            self.relevance_source,
            f"sends no anchors up, so anchor-dp={self.anchor_dp!r} has nothing to protect; "
            "use anchor-dp=none",
        )

    def _check_continuation(self) -> None:
        """Validate the keys of continuing runs (the files are checked by the ServerApp)."""
        require(
            not self.initial_anchors or self.strategy == "fedaso",
            "initial-anchors",
            self.initial_anchors,
            f"only strategy='fedaso' uses anchors (strategy={self.strategy!r}); leave it empty",
        )
        if self.extra_eval_dataset:
            self.data(num_partitions=1)  # the run's own dataset first, for its own message
            require(
                is_dataset_name(self.extra_eval_dataset)
                and task_of(self.extra_eval_dataset) == task_of(self.dataset),
                "extra-eval-dataset",
                self.extra_eval_dataset,
                f"must be a dataset of the same task as dataset={self.dataset!r} "
                f"(one of {DATASETS_ALLOWED})",
            )

    def _resolve_auto_anchors(self) -> None:
        """Replace num-anchors / subspace-rank of 0 by the model's defaults (spec 11)."""
        family = "hf" if isinstance(self.model, str) and is_hf(self.model) else "reference"
        num_anchors, rank = AUTO_ANCHORS[family]
        # Frozen dataclass: resolved once, here, so that every view and to_flat agree.
        if self.num_anchors == 0:
            object.__setattr__(self, "num_anchors", num_anchors)
        if self.subspace_rank == 0:
            # Centered anchors span at most M - 1 dimensions: a small M lowers the default.
            fitting = min(rank, self.num_anchors - 1) if isinstance(self.num_anchors, int) else rank
            object.__setattr__(self, "subspace_rank", max(1, fitting))

    # -- typed views -------------------------------------------------------------------
    def aso(self, *, enabled: bool | None = None) -> ASOConfig:
        """ASO settings; ``enabled`` defaults to whether the strategy is FedASO."""
        return ASOConfig(
            enabled=self.strategy == "fedaso" if enabled is None else enabled,
            aso_tau=self.aso_tau,
            aso_lambda=self.aso_lambda,
            aso_alpha=self.aso_alpha,
            num_anchors=self.num_anchors,
            subspace_rank=self.subspace_rank,
            relevance=self.relevance,
            project_gradients=self.project_gradients,
            update_anchors=self.update_anchors,
            subspace_refresh_steps=self.subspace_refresh_steps,
            relevance_source=self.relevance_source,
            project_low_relevance=self.project_low_relevance,
        )

    def privacy(self) -> PrivacyConfig:
        """Privacy settings (spec section 7)."""
        names = {f.name for f in dataclasses.fields(PrivacyConfig)}
        return PrivacyConfig(**{name: getattr(self, name) for name in names})

    def train(self, *, seed: int, proximal_mu: float = 0.0) -> TrainConfig:
        """Local optimization settings with a per-client, per-round ``seed``."""
        return TrainConfig(
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            max_steps=self.max_steps,
            proximal_mu=proximal_mu,
            seed=seed,
            device=self.device,
            precision=self.precision,
        )

    def data(self, *, num_partitions: int) -> DataConfig:
        """Data settings for a federation of ``num_partitions`` partitions.

        Under DP-SGD training windows are disjoint (stride 0), whatever ``window-stride``
        says: its unit of privacy is one window, which protects a span of text only if no
        other window holds it too (docs/PRIVACY.md).
        """
        return DataConfig(
            dataset=self.dataset,
            partitioner=self.partitioner,
            num_partitions=num_partitions,
            seq_len=self.seq_len,
            test_fraction=self.test_fraction,
            seed=self.seed,
            facts_entities=self.facts_entities,
            window_stride=0 if self.dp_sgd else self.window_stride,
            tokenizer=hf_source(self.model) if is_hf(self.model) else "",
            anchor_seed=self.anchor_seed,
        )

    def model_spec(self) -> ModelSpec:
        """Which model this run trains (``fedaso.models``)."""
        return ModelSpec(
            model=self.model,
            task=task_of(self.dataset),
            vocab_size=VOCAB_SIZE,
            num_features=DIGITS_NUM_FEATURES,
            num_classes=DIGITS_NUM_CLASSES,
            width=self.model_width,
            layers=self.model_layers,
            heads=self.model_heads,
            seq_len=self.seq_len,
            peft=self.peft,
            lora=LoraSettings(
                r=self.lora_r,
                alpha=self.lora_alpha,
                dropout=self.lora_dropout,
                target_modules=self.lora_target_modules,
            ),
        )

    def build_model(self) -> nn.Module:
        """Return this run's model: freshly initialized, or the pretrained ``hf:`` model.

        The ASO settings are checked against the model's embedding width.
        """
        model = build_model(self.model_spec(), run_config=self)
        self.aso().check_width(embedding_width_of(model))
        return model

    # -- flat (run-config / ConfigRecord) form -----------------------------------------
    def to_flat(self) -> dict[str, Any]:
        """Return ``{kebab-case-key: value}`` for every field."""
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], *, strict: bool = True) -> RunConfig:
        """Build from a flat run-config; with ``strict``, unknown keys raise ``ValueError``.

        Missing keys take their defaults. ``strict=False`` ignores unknown keys, for the
        ConfigRecords that Flower's strategies extend with keys of their own.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        defaults = cls()
        values: dict[str, Any] = {}
        for key, value in flat.items():
            name = key.replace("-", "_")
            if name not in fields:
                if strict:
                    raise ValueError(unknown_key_message(key, fields))
                continue
            values[name] = coerce(key, value, type(getattr(defaults, name)))
        return cls(**values)

    def client_view(self) -> dict[str, Any]:
        """The flat keys a client needs: every key but the server-only ones."""
        return {k: v for k, v in self.to_flat().items() if k not in SERVER_ONLY_KEYS}

    @classmethod
    def client_keys(cls) -> frozenset[str]:
        """The run-config keys every client message must carry."""
        return frozenset(name.replace("_", "-") for name in cls.__dataclass_fields__) - (
            SERVER_ONLY_KEYS
        )

    def replace(self, **changes: Any) -> RunConfig:
        """Return a copy with ``changes`` (snake_case field names), validated."""
        return dataclasses.replace(self, **changes)

    def check_reliability(self) -> None:
        """Validate the time-out, norm bound, checkpoint and fault-injection keys."""
        require(
            is_finite_number(self.round_timeout) and self.round_timeout > 0,
            "round-timeout",
            self.round_timeout,
            "must be a finite number of seconds > 0",
        )
        self.reply_bounds()  # validates the norm bounds, the share cap and the count cap
        require(
            is_finite_number(self.fault_delay) and self.fault_delay >= 0,
            "fault-delay",
            self.fault_delay,
            "must be a finite number of seconds >= 0",
        )
        parse_fault_plan(self.fault_plan)

    def reply_bounds(self) -> ReplyBounds:
        """What the server allows one training reply (``fedaso.aso.robust``), validated."""
        return ReplyBounds(
            max_update_norm_ratio=self.max_update_norm_ratio,
            max_update_norm=self.max_update_norm,
            max_client_share=self.max_client_share,
            max_reported_count=self.max_reported_count,
        )

    def checkpoint_path(self) -> str:
        """Where checkpoints go: ``checkpoint-dir``, else ``out-dir/checkpoint``, else ``""``."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        return str(Path(self.out_dir) / "checkpoint") if self.out_dir else ""


def unknown_key_message(key: str, fields: Mapping[str, Any]) -> str:
    """Explain an unknown run-config key and suggest the closest known ones."""
    known = [name.replace("_", "-") for name in fields]
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown run-config key {key!r}{hint} (known keys: {', '.join(sorted(known))})"


def coerce(key: str, value: Any, kind: type) -> Any:
    """Return ``value`` as ``kind`` (int, float, bool or str) or raise naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ValueError(f"{key}={value!r} is invalid: must be of type {kind.__name__}")


@dataclass(frozen=True)
class ClientConfig:
    """What a client is told with a message: its run-config view and the protocol keys.

    ``run`` holds the client keys as sent; its server-only fields keep their defaults and
    no client code reads them. ``extra`` holds the keys Flower's own strategies and wrappers
    add (e.g. FedProx's ``proximal-mu``, the client-side clipping norm).
    """

    run: RunConfig
    server_round: int
    run_key: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_message(cls, flat: Mapping[str, Any]) -> ClientConfig:
        """Parse a message's ConfigRecord; every client key must be there.

        Raises
        ------
        ValueError
            Naming the missing keys (never a silent fall-back to a client-side default), a
            server-only key that should not have been sent, or a bad value.
        """
        required = cls.required_keys()
        missing = sorted(required - set(flat))
        if missing:
            raise ValueError(f"the message's config lacks required key(s) {', '.join(missing)}")
        leaked = sorted(SERVER_ONLY_KEYS & set(flat))
        if leaked:
            raise ValueError(f"the message's config carries server-only key(s) {leaked}")
        keys = RunConfig.client_keys()
        return cls(
            run=RunConfig.from_flat({k: v for k, v in flat.items() if k in keys}),
            server_round=coerce(SERVER_ROUND, flat[SERVER_ROUND], int),
            run_key=coerce(RUN_KEY, flat[RUN_KEY], str),
            extra={k: v for k, v in flat.items() if k not in required},
        )

    @staticmethod
    def required_keys() -> frozenset[str]:
        """The client keys of the run-config and the protocol's own."""
        return RunConfig.client_keys() | {SERVER_ROUND, RUN_KEY}

    def to_message(self) -> dict[str, Any]:
        """The flat ConfigRecord content a server sends (inverse of :meth:`from_message`)."""
        protocol = {SERVER_ROUND: self.server_round, RUN_KEY: self.run_key}
        return dict(self.extra) | self.run.client_view() | protocol


def check_tracking(backend: str, tracking_dir: str, out_dir: str) -> None:
    """Raise ``ValueError`` naming the key if the tracking keys do not fit together.

    Whether the back-end is installed is checked by the server alone
    (``strategies.tracking.check_backend_installed``): clients rebuild the run-config too,
    and a site need not install the tracking extras.
    """
    require(
        backend in TRACKING_BACKENDS,
        "tracking",
        backend,
        f"must be one of {', '.join(TRACKING_BACKENDS)}",
    )
    if backend == "none":
        return
    require(
        bool(tracking_dir or out_dir),
        "tracking-dir",
        tracking_dir,
        f"must be set when tracking={backend!r} and out-dir is empty",
    )
