"""The run-config: every section of a FedASO run, parsed from Flower's flat key-value form.

Flower hands a ServerApp a flat ``{kebab-case-key: value}`` run-config (pyproject's
``[tool.flwr.app.config]`` plus ``--run-config`` overrides). :meth:`RunConfig.from_flat`
routes each key to the one section that declares it, coerces its type and lets the section
check it, before any training starts. The server sends clients their keys
(:meth:`RunConfig.client_view`: all but the ones declared ``server_only``), and they parse
them back the same way: one declaration, flowing run-config -> server -> messages -> clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedaso.checks import require
from fedaso.config.aso import ASOConfig
from fedaso.config.data import (
    DATASETS_ALLOWED,
    FACTS_DOMAINS,
    DataSettings,
    is_dataset_name,
    task_of,
)
from fedaso.config.federation import FederationConfig
from fedaso.config.fields import Key, coerce, keys_of, unknown_key_message
from fedaso.config.model import ModelConfig, hf_source
from fedaso.config.outputs import OutputsConfig
from fedaso.config.privacy import PrivacyConfig
from fedaso.config.reliability import ReliabilityConfig
from fedaso.config.training import TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from fedaso.data.config import DataConfig
    from fedaso.models import ModelSpec

# The sections, in the order the generated files list them: attribute name -> type.
SECTIONS: dict[str, type] = {
    "federation": FederationConfig,
    "training": TrainConfig,
    "aso": ASOConfig,
    "data": DataSettings,
    "model": ModelConfig,
    "privacy": PrivacyConfig,
    "reliability": ReliabilityConfig,
    "outputs": OutputsConfig,
}


@cache
def run_config_keys() -> dict[str, Key]:
    """Every run-config key, by its kebab-case name, from the sections' declarations."""
    keys: dict[str, Key] = {}
    for section_name, section_type in SECTIONS.items():
        for key in keys_of(section_type, section_name):
            if key.name in keys:
                raise TypeError(f"run-config key {key.name!r} is declared twice")
            keys[key.name] = key
    return keys


@cache
def server_only_keys() -> frozenset[str]:
    """The keys only the server reads: never sent to clients."""
    return frozenset(name for name, key in run_config_keys().items() if key.server_only)


@cache
def client_keys() -> frozenset[str]:
    """The keys every client message carries."""
    return frozenset(run_config_keys()) - server_only_keys()


def _reference_aso() -> ASOConfig:
    return ASOConfig().resolved(hf_model=False)  # the default model is the reference TinyLM


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole run's settings: one typed, validated section per concern.

    Build it with :meth:`from_flat` (a run-config) or :meth:`of` (field names), which fill
    in the model family's M and R; the cross-section checks run here.
    """

    federation: FederationConfig = field(default_factory=FederationConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    aso: ASOConfig = field(default_factory=_reference_aso)
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    reliability: ReliabilityConfig = field(default_factory=ReliabilityConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)

    def __post_init__(self) -> None:
        require(
            self.aso.num_anchors != 0 and self.aso.subspace_rank != 0,
            "num-anchors",
            self.aso.num_anchors,
            "must be resolved to the model's default before a RunConfig is built "
            "(RunConfig.of / from_flat do it; or pass aso.resolved(...))",
        )
        self._check_model_fits_task()
        self._check_privacy()
        self._check_relevance_source()
        self._check_extra_eval_dataset()

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], *, strict: bool = True) -> RunConfig:
        """Build from a flat run-config; with ``strict``, unknown keys raise ``ValueError``.

        Missing keys take their defaults. ``strict=False`` ignores unknown keys, for the
        ConfigRecords that Flower's strategies extend with keys of their own.
        """
        keys = run_config_keys()
        settings: dict[str, Any] = {}
        for name, value in flat.items():
            key = keys.get(name)
            if key is None:
                if strict:
                    raise ValueError(unknown_key_message(name, keys))
                continue
            settings[key.field_name] = coerce(name, value, key.kind)
        return cls.of(**settings)

    @classmethod
    def of(cls, **settings: Any) -> RunConfig:
        """Build from field names (``aso_lambda=2.0``), each routed to its section.

        Unset keys take their defaults; M and R of 0 resolve to the model family's
        defaults (spec section 11).
        """
        changes = _by_section(settings)
        sections = {name: kind(**changes.get(name, {})) for name, kind in SECTIONS.items()}
        return _resolved(sections)

    def replace(self, **settings: Any) -> RunConfig:
        """A copy with ``settings`` (field names) changed, re-validated."""
        changes = _by_section(settings)
        sections = {
            name: dataclasses.replace(getattr(self, name), **changes.get(name, {}))
            for name in SECTIONS
        }
        return _resolved(sections)

    # -- the flat (run-config / ConfigRecord) form ---------------------------------------
    def to_flat(self) -> dict[str, Any]:
        """``{kebab-case-key: value}`` for every key, with M and R as resolved."""
        return {
            name: getattr(getattr(self, key.section), key.field_name)
            for name, key in run_config_keys().items()
        }

    def client_view(self) -> dict[str, Any]:
        """The flat keys a client needs: every key but the server-only ones."""
        return {k: v for k, v in self.to_flat().items() if k in client_keys()}

    # -- what the sections derive together -----------------------------------------------
    def local_aso(self) -> ASOConfig | None:
        """The ASO section when clients train with ASO (strategy fedaso), else None."""
        return self.aso if self.federation.strategy == "fedaso" else None

    def data_config(self, *, num_partitions: int) -> DataConfig:
        """What ``fedaso.data`` loads for a federation of ``num_partitions`` partitions.

        Under DP-SGD training windows are disjoint (stride 0), whatever ``window-stride``
        says: its unit of privacy is one window, which protects a span of text only if no
        other window holds it too (docs/PRIVACY.md).
        """
        from fedaso.data.config import DataConfig  # fedaso.data reads its names from here

        settings = self.data
        if self.privacy.dp_sgd:
            settings = dataclasses.replace(settings, window_stride=0)
        return DataConfig.of(
            settings,
            num_partitions=num_partitions,
            seed=self.federation.seed,
            tokenizer=hf_source(self.model.model) if self.model.is_hf else "",
        )

    def model_spec(self) -> ModelSpec:
        """Which model this run trains (``fedaso.models``)."""
        from fedaso.data.config import DIGITS_NUM_CLASSES, DIGITS_NUM_FEATURES, VOCAB_SIZE
        from fedaso.models import ModelSpec  # fedaso.models reads its names from here

        return ModelSpec(
            config=self.model,
            task=self.data.task,
            seq_len=self.data.seq_len,
            vocab_size=VOCAB_SIZE,
            num_features=DIGITS_NUM_FEATURES,
            num_classes=DIGITS_NUM_CLASSES,
        )

    def build_model(self) -> nn.Module:
        """This run's model, freshly initialized or the pretrained ``hf:`` weights.

        The ASO settings are checked against the model's embedding width.
        """
        from fedaso.models import build_model, embedding_width_of

        model = build_model(self.model_spec(), run_config=self)
        self.aso.check_width(embedding_width_of(model))
        return model

    def checkpoint_path(self) -> str:
        """Where checkpoints go: ``checkpoint-dir``, else ``out-dir/checkpoint``, else ``""``."""
        if self.reliability.checkpoint_dir:
            return self.reliability.checkpoint_dir
        out_dir = self.outputs.out_dir
        return str(Path(out_dir) / "checkpoint") if out_dir else ""

    # -- checks across sections ----------------------------------------------------------
    def _check_model_fits_task(self) -> None:
        require(
            not (self.model.is_hf and self.data.task != "lm"),
            "model",
            self.model.model,
            "hf: models are causal language models: use a text dataset, not digits",
        )
        if not self.model.is_hf:  # an hf: model's width is known once it is loaded
            self.aso.check_width(self.model.model_width)

    def _check_privacy(self) -> None:
        strategy = self.federation.strategy
        for key, value, default in (
            ("anchor-dp", self.privacy.anchor_dp, "none"),
            ("anchor-init", self.privacy.anchor_init, "server"),
        ):
            require(
                value == default or strategy == "fedaso",
                key,
                value,
                f"needs strategy='fedaso' (strategy={strategy!r} sends no anchors)",
            )
        require(
            not (self.privacy.dp_sgd and strategy == "fedprox"),
            "dp-sgd",
            self.privacy.dp_sgd,
            "cannot be combined with strategy='fedprox' (its proximal term is not per-sample)",
        )

    def _check_relevance_source(self) -> None:
        """Validate ``relevance-source`` against what its variant needs (spec section 13)."""
        source = self.aso.relevance_source
        require(
            source not in ("oracle", "probe") or self.data.dataset in FACTS_DOMAINS,
            "relevance-source",
            source,
            f"needs the fact spans of a facts dataset (dataset={self.data.dataset!r} has none)",
        )
        require(
            source not in ("anchors-refit", "probe") or self.privacy.update_dp == "none",
            "relevance-source",
            source,
            f"sends the server's own arrays that replies do not echo, which update-dp="
            f"{self.privacy.update_dp!r}'s wrappers cannot clip against; use update-dp=none",
        )
        require(
            source != "anchors-refit" or self.privacy.anchor_dp == "none",
            "relevance-source",
            source,
            f"sends no anchors up, so anchor-dp={self.privacy.anchor_dp!r} has nothing to "
            "protect; use anchor-dp=none",
        )
        self._check_anchors_used()

    def _check_anchors_used(self) -> None:
        """Without anchors (probe, no Eq. 5: ``ASOConfig.uses_anchors``) no anchor key applies."""
        if self.aso.uses_anchors or self.federation.strategy != "fedaso":
            return
        unused = "relevance-source='probe' with project-gradients=false uses no anchors"
        require(
            self.privacy.anchor_dp == "none",
            "anchor-dp",
            self.privacy.anchor_dp,
            f"has nothing to protect: {unused}; use anchor-dp=none",
        )
        require(
            not self.federation.initial_anchors,
            "initial-anchors",
            self.federation.initial_anchors,
            f"would be ignored: {unused}; leave it unset",
        )

    def _check_extra_eval_dataset(self) -> None:
        extra = self.outputs.extra_eval_dataset
        require(
            not extra or (is_dataset_name(extra) and task_of(extra) == self.data.task),
            "extra-eval-dataset",
            extra,
            f"must be a dataset of the same task as dataset={self.data.dataset!r} "
            f"(one of {DATASETS_ALLOWED})",
        )


def _by_section(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Group ``{field_name: value}`` by the section that declares each field."""
    keys = {key.field_name: key for key in run_config_keys().values()}
    changes: dict[str, dict[str, Any]] = {}
    for name, value in settings.items():
        if name not in keys:
            raise ValueError(unknown_key_message(name.replace("_", "-"), run_config_keys()))
        changes.setdefault(keys[name].section, {})[name] = value
    return changes


def _resolved(sections: dict[str, Any]) -> RunConfig:
    """A RunConfig of ``sections``, with the ASO section's M and R resolved."""
    model: ModelConfig = sections["model"]
    return RunConfig(**(sections | {"aso": sections["aso"].resolved(hf_model=model.is_hf)}))
