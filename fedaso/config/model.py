"""The model section: which network a run trains, and its LoRA adapters (spec section 11)."""

from __future__ import annotations

from dataclasses import dataclass

from fedaso.checks import is_count, is_finite_number, require
from fedaso.config.fields import Section, setting

HF_PREFIX = "hf:"
PY_PREFIX = "py:"
MODELS_ALLOWED = "tinylm, hf:NAME_OR_PATH, py:MODULE:FACTORY"
PEFT_METHODS = ("none", "lora")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """The run-config's model keys: the back-end, the reference models' shape, LoRA."""

    model: str = setting("tinylm", "tinylm | hf:NAME_OR_PATH | py:MODULE:FACTORY")
    model_width: int = setting(64, "embedding width d of the reference models")
    model_layers: int = setting(2, "transformer blocks of the reference LM")
    model_heads: int = setting(4, "attention heads of the reference LM (divide model-width)")
    peft: str = setting(
        "none", "lora: only LoRA adapters of an hf: model train and travel", choices=PEFT_METHODS
    )
    lora_r: int = setting(8, "LoRA rank r")
    lora_alpha: int = setting(16, "LoRA scaling numerator: updates are scaled by alpha / r")
    lora_dropout: float = setting(0.05, "dropout on LoRA's input, in [0, 1)")
    lora_target_modules: str = setting(
        "all-linear",
        ("PEFT's all-linear (every linear layer but the LM head), or names such as q_proj,v_proj"),
    )

    def check(self) -> None:
        require(
            self.model == "tinylm" or is_hf(self.model) or is_user_model(self.model),
            "model",
            self.model,
            f"must be one of {MODELS_ALLOWED}",
        )
        require(
            self.peft == "none" or is_hf(self.model),
            "peft",
            self.peft,
            f"LoRA adapters need an hf: model (model={self.model!r})",
        )
        for key in ("model_width", "model_layers", "model_heads", "lora_r", "lora_alpha"):
            value = getattr(self, key)
            require(
                is_count(value, minimum=1), key.replace("_", "-"), value, "must be an integer >= 1"
            )
        require(
            self.model_width % self.model_heads == 0,
            "model-heads",
            self.model_heads,
            f"must divide model-width={self.model_width}",
        )
        require(
            is_finite_number(self.lora_dropout) and 0 <= self.lora_dropout < 1,
            "lora-dropout",
            self.lora_dropout,
            "must be in [0, 1)",
        )
        require(
            bool(self.lora_target_modules_list()),
            "lora-target-modules",
            self.lora_target_modules,
            "must be 'all-linear' or comma-separated module names, e.g. 'q_proj,v_proj'",
        )

    @property
    def is_hf(self) -> bool:
        """True for an ``hf:`` model."""
        return is_hf(self.model)

    def lora_target_modules_list(self) -> str | list[str]:
        """``lora-target-modules`` as PEFT takes it."""
        if self.lora_target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]


def is_hf(model: str) -> bool:
    """True for ``hf:NAME_OR_PATH``."""
    return model.startswith(HF_PREFIX) and bool(hf_source(model))


def hf_source(model: str) -> str:
    """NAME_OR_PATH of ``hf:NAME_OR_PATH``."""
    return model.removeprefix(HF_PREFIX)


def is_user_model(model: str) -> bool:
    """True for ``py:MODULE:FACTORY`` (checked for form only; imported when built)."""
    return model.startswith(PY_PREFIX)
