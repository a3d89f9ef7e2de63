"""A site's own policy: what the server may make this site run (docs/SITE_POLICY.md).

Every setting a client trains with arrives in the server's message. A :class:`SitePolicy`,
read from a TOML file that the site owns and names in its node config
(``flower-supernode --node-config "site-policy='/etc/fedaso/policy.toml'"``), bounds what
the site accepts: which models (the reference models, ``hf:`` directories under given
roots, ``py:`` factories by exact name, the model hub or not), which data (built-in
datasets, ``text:``/``file:`` paths under given roots), how large a job may be (parameters,
sequence length, batch, epochs, steps, anchors, subspace rank), which privacy it requires
(modes, a minimum noise, a maximum clip) and its epsilon budget across runs
(``clients.ledger``).

:meth:`SitePolicy.check` runs on the parsed message config before the client builds a model
or loads data: sizes are compared as numbers, and parameters are counted on PyTorch's
``meta`` device, which allocates no memory. A refusal is a :class:`PolicyRefusalError` whose text,
the one line the server gets, names the policy key and nothing else: no path, no column,
no hint whether a file exists. :func:`site_policy_mod` makes every other error of a client
under a policy just as quiet towards the server and logs the whole error on the site.

Which policy a node runs under (:func:`site_policy`): the file its node config names;
``site-policy='strict'`` or no ``site-policy`` at all on a deployed SuperNode gives the
strict default (``SitePolicy()``: reference models and built-in datasets only, no hub,
bounded sizes); ``site-policy='open'`` checks nothing. A node that Flower's simulation
runtime runs (inside a Ray actor: ``fedaso run``, ``flwr run`` with a simulation
federation) and whose node config names no policy is open, because the user who starts a
simulation owns the server and every site alike.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_type_hints

import torch
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from fedaso.config import RunConfig
from fedaso.config.privacy import ANCHOR_DP_MODES
from fedaso.data import DIGITS_NUM_FEATURES, TEXT_PREFIX, task_of
from fedaso.data.files import FILE_PREFIX
from fedaso.models import is_hf
from fedaso.models.hf import hf_source
from fedaso.models.user import PY_PREFIX, load_factory

SITE_POLICY_KEY = "site-policy"  # node config key: a TOML path, "strict" or "open"
STRICT = "strict"
OPEN = "open"
REFUSAL = "refused by site policy: "
_log = logging.getLogger(__name__)


class PolicyRefusalError(ValueError):
    """The site's policy refuses a job; the text names the policy key and nothing else."""

    def __init__(self, key: str) -> None:
        super().__init__(REFUSAL + key)
        self.key = key


class MessageConfigError(ValueError):
    """The message's own config is malformed; the text holds only what the server sent."""


class SiteError(RuntimeError):
    """What the server learns of a client error under a policy: its type, no details."""


@dataclass(frozen=True)
class ModelRules:
    """``[models]``: which models the site builds."""

    reference: bool = True  # tinylm and the digits MLP
    hf_roots: tuple[str, ...] = ()  # hf: directories under these absolute roots
    py_factories: tuple[str, ...] = ()  # exact py:MODULE:FACTORY values allowed
    hub: bool = False  # hf:NAME from the Hugging Face hub


@dataclass(frozen=True)
class DataRules:
    """``[data]``: which data the site trains on."""

    builtin_datasets: bool = True  # facts, pydoc, digits
    data_roots: tuple[str, ...] = ()  # text:/file: paths under these absolute roots


@dataclass(frozen=True)
class Limits:
    """``[limits]``: upper bounds on the size of a job, checked before any allocation."""

    max_parameters: int = 50_000_000
    max_seq_len: int = 2048
    max_batch_size: int = 256
    max_local_epochs: int = 20
    max_local_steps: int = 10_000
    max_anchors: int = 4096
    max_subspace_rank: int = 256
    max_facts_entities: int = 10_000


@dataclass(frozen=True)
class PrivacyRules:
    """``[privacy]``: the privacy the site requires of what it releases."""

    anchor_dp: tuple[str, ...] = ANCHOR_DP_MODES  # allowed anchor-dp modes
    dp_sgd: tuple[bool, ...] = (False, True)  # allowed dp-sgd settings
    min_anchor_noise_multiplier: float = 0.0  # under anchor-dp = local
    max_anchor_clip: float = math.inf  # under anchor-dp = local
    max_anchor_init_clip: float = math.inf  # under anchor-dp = local
    min_dp_noise_multiplier: float = 0.0  # under dp-sgd
    max_dp_grad_norm: float = math.inf  # under dp-sgd
    min_relevance_noise: float = 0.0


@dataclass(frozen=True)
class Budget:
    """``[budget]``: the site's epsilon across runs (``clients.ledger``)."""

    epsilon_budget: float = math.inf  # inf: no budget, no ledger
    budget_delta: float = 1e-5  # delta at which the ledger's epsilon is computed
    ledger_dir: str = ""  # "" = <state root>/site-ledger (clients.state)


SECTIONS = {
    "models": ModelRules,
    "data": DataRules,
    "limits": Limits,
    "privacy": PrivacyRules,
    "budget": Budget,
}


@dataclass(frozen=True)
class SitePolicy:
    """A site's policy; the defaults are the strict policy of a SuperNode that names none."""

    site: str = "site"  # the ledger's name for this site
    models: ModelRules = field(default_factory=ModelRules)
    data: DataRules = field(default_factory=DataRules)
    limits: Limits = field(default_factory=Limits)
    privacy: PrivacyRules = field(default_factory=PrivacyRules)
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        check_rules(self)

    @classmethod
    def from_toml(cls, text: str) -> SitePolicy:
        """Parse a policy file's text; an unknown key or a bad value is a ``ValueError``."""
        table = tomllib.loads(text)
        site = table.pop("site", "site")
        if not isinstance(site, str) or not site:
            raise ValueError(f"site={site!r} is invalid: must be a non-empty string")
        sections: dict[str, Any] = {}
        for name, values in table.items():
            if name not in SECTIONS:
                known = ", ".join(["site", *(f"[{s}]" for s in SECTIONS)])
                raise ValueError(f"unknown site policy key {name!r} (known: {known})")
            if not isinstance(values, dict):
                raise ValueError(f"site policy key {name!r} must be a table [{name}]")
            sections[name] = parse_section(name, values)
        return cls(site=site, **sections)

    def check(self, run: RunConfig) -> None:
        """Refuse (:class:`PolicyRefusalError`) a job this site does not run; allocates nothing."""
        self.check_model(run)
        self.check_data(run.data.dataset)
        self.check_sizes(run)
        self.check_privacy(run)
        self.check_parameters(run)

    def check_model(self, run: RunConfig) -> None:
        """The model must be a reference model, an allowed hf: directory or py: factory."""
        if run.model.model.startswith(PY_PREFIX):
            refuse_unless(run.model.model in self.models.py_factories, "py-factories")
        elif is_hf(run.model.model):
            source = hf_source(run.model.model)
            if not under_roots(source, self.models.hf_roots):
                refuse_unless(self.models.hub and not Path(source).is_absolute(), "hf-roots")
        else:
            refuse_unless(self.models.reference, "reference")

    def check_data(self, dataset: str) -> None:
        """``text:``/``file:`` paths must lie under a data root; built-ins must be allowed."""
        path = data_path(dataset)
        if path is None:
            refuse_unless(self.data.builtin_datasets, "builtin-datasets")
        else:
            refuse_unless(under_roots(path, self.data.data_roots), "data-roots")

    def check_sizes(self, run: RunConfig) -> None:
        """Every bounded run-config size, compared as a number."""
        limits = self.limits
        for key, value in (
            ("max-seq-len", run.data.seq_len),
            ("max-batch-size", run.training.batch_size),
            ("max-local-epochs", run.training.local_epochs),
            ("max-local-steps", run.training.max_steps),
            ("max-anchors", run.aso.num_anchors),
            ("max-subspace-rank", run.aso.subspace_rank),
            ("max-facts-entities", run.data.facts_entities),
        ):
            refuse_unless(value <= getattr(limits, key.replace("-", "_")), key)

    def check_steps(self, run: RunConfig, num_train: int) -> None:
        """The round's local steps, known once the site's data is loaded, must be bounded."""
        steps = run.training.local_epochs * math.ceil(num_train / run.training.batch_size)
        if run.training.max_steps:
            steps = min(steps, run.training.max_steps)
        refuse_unless(steps <= self.limits.max_local_steps, "max-local-steps")

    def check_privacy(self, run: RunConfig) -> None:
        """Allowed modes; under local DP and DP-SGD a minimum noise and a maximum clip."""
        rules = self.privacy
        refuse_unless(run.privacy.anchor_dp in rules.anchor_dp, "anchor-dp")
        refuse_unless(run.privacy.dp_sgd in rules.dp_sgd, "dp-sgd")
        refuse_unless(
            run.privacy.relevance_noise >= rules.min_relevance_noise, "min-relevance-noise"
        )
        if run.privacy.anchor_dp == "local":
            refuse_unless(
                run.privacy.anchor_noise_multiplier >= rules.min_anchor_noise_multiplier,
                "min-anchor-noise-multiplier",
            )
            refuse_unless(run.privacy.anchor_clip <= rules.max_anchor_clip, "max-anchor-clip")
            refuse_unless(
                run.privacy.anchor_init_clip <= rules.max_anchor_init_clip, "max-anchor-init-clip"
            )
        if run.privacy.dp_sgd:
            refuse_unless(
                run.privacy.dp_noise_multiplier >= rules.min_dp_noise_multiplier,
                "min-dp-noise-multiplier",
            )
            refuse_unless(
                run.privacy.dp_max_grad_norm <= rules.max_dp_grad_norm, "max-dp-grad-norm"
            )

    def check_parameters(self, run: RunConfig) -> None:
        """Count the model's parameters on the ``meta`` device: no memory is allocated."""
        limit = self.limits.max_parameters
        counted = count_parameters(run, limit, hub=self.models.hub)
        refuse_unless(counted <= limit, "max-parameters")


def refuse_unless(allowed: bool, key: str) -> None:
    """Raise :class:`PolicyRefusalError` naming ``key`` unless ``allowed``."""
    if not allowed:
        raise PolicyRefusalError(key)


def data_path(dataset: str) -> str | None:
    """PATH of ``text:PATH`` or ``file:PATH``; None for a built-in dataset."""
    for prefix in (TEXT_PREFIX, FILE_PREFIX):
        if dataset.startswith(prefix):
            return dataset.removeprefix(prefix)
    return None


def under_roots(path: str, roots: tuple[str, ...]) -> bool:
    """True if ``path`` is absolute and, links and ``..`` resolved, lies under a root.

    A relative path is refused: it would resolve against whatever folder the node runs in.
    """
    if not path or not Path(path).is_absolute():
        return False
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError, RuntimeError):  # a null byte, a link loop: not a data path
        return False
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots)


def count_parameters(run: RunConfig, limit: int, *, hub: bool = False) -> int:
    """The number of parameters of ``run``'s model, built on the ``meta`` device.

    A reference language model is built with one and with two blocks, and the count
    extrapolated, so that a hostile ``model-layers`` costs nothing; a model whose
    ``model-layers`` times ``model-width`` already exceeds ``limit`` is not built at all
    (the number returned is then only known to exceed ``limit``). An ``hf:`` model's config
    comes from the hub only with ``hub``.
    """
    if run.model.model.startswith(PY_PREFIX):
        return meta_count(lambda: load_factory(run.model.model)(run)[0])
    if is_hf(run.model.model):
        return hf_parameters(hf_source(run.model.model), hub=hub)
    if task_of(run.data.dataset) != "lm":
        width = run.model.model_width
        if width * DIGITS_NUM_FEATURES > limit:
            return width * DIGITS_NUM_FEATURES
        return meta_count(run.build_model)
    if run.model.model_layers * run.model.model_width > limit or run.model.model_width**2 > limit:
        return run.model.model_layers * run.model.model_width**2
    one, two = (meta_count(run.replace(model_layers=n).build_model) for n in (1, 2))
    return one + (run.model.model_layers - 1) * (two - one)


def meta_count(build: Callable[[], torch.nn.Module]) -> int:
    """Parameters of the module ``build()`` returns when built on the ``meta`` device."""
    try:
        with torch.device("meta"):
            module = build()
    except Exception as error:  # a model that cannot be sized is not run
        _log.warning("site policy: the model could not be sized on the meta device: %r", error)
        raise PolicyRefusalError("max-parameters") from None
    return sum(parameter.numel() for parameter in module.parameters())


def hf_parameters(source: str, *, hub: bool) -> int:
    """Parameters of the ``hf:`` model ``source``, from its config alone (hub: if allowed)."""

    def build() -> torch.nn.Module:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(source, local_files_only=not hub)
        return AutoModelForCausalLM.from_config(config)

    return meta_count(build)


def parse_section(name: str, values: Mapping[str, Any]) -> Any:
    """Build section ``name``'s dataclass from its TOML table; unknown keys are errors."""
    kind = SECTIONS[name]
    hints = get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        attribute = key.replace("-", "_")
        if attribute not in fields:
            known = ", ".join(sorted(f.replace("_", "-") for f in fields))
            raise ValueError(f"unknown site policy key [{name}] {key!r} (known: {known})")
        parsed[attribute] = policy_value(f"[{name}] {key}", value, hints[attribute])
    return kind(**parsed)


def policy_value(key: str, value: Any, kind: Any) -> Any:
    """``value`` as the field type ``kind`` (bool, int, float, str or a tuple of them)."""
    element = get_args(kind)[0] if get_args(kind) else None
    if element is not None:
        if not isinstance(value, list):
            raise ValueError(f"site policy {key}={value!r} is invalid: must be a list")
        return tuple(policy_value(key, item, element) for item in value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"site policy {key}={value!r} is invalid: must be {kind.__name__}")
    return value


def check_rules(policy: SitePolicy) -> None:
    """Validate a policy's values, naming the key."""
    for name, value in dataclasses.asdict(policy.limits).items():
        if value < 1:
            raise ValueError(f"site policy [limits] {name.replace('_', '-')}={value} must be >= 1")
    for section, key in (("models", "hf_roots"), ("data", "data_roots")):
        for root in getattr(getattr(policy, section), key):
            if not Path(root).is_absolute():
                kebab = key.replace("_", "-")
                raise ValueError(f"site policy [{section}] {kebab}: {root!r} is not absolute")
    unknown = set(policy.privacy.anchor_dp) - set(ANCHOR_DP_MODES)
    if unknown:
        raise ValueError(
            f"site policy [privacy] anchor-dp={sorted(unknown)} is invalid: "
            f"modes are {', '.join(ANCHOR_DP_MODES)}"
        )
    privacy = policy.privacy
    for name in ("min_anchor_noise_multiplier", "min_dp_noise_multiplier", "min_relevance_noise"):
        if not (math.isfinite(getattr(privacy, name)) and getattr(privacy, name) >= 0):
            raise ValueError(f"site policy [privacy] {name.replace('_', '-')} must be >= 0")
    for name in ("max_anchor_clip", "max_anchor_init_clip", "max_dp_grad_norm"):
        if not getattr(privacy, name) > 0:
            raise ValueError(f"site policy [privacy] {name.replace('_', '-')} must be > 0")
    budget = policy.budget
    if not budget.epsilon_budget > 0:
        raise ValueError(f"site policy [budget] epsilon-budget={budget.epsilon_budget} must be > 0")
    if not 0 < budget.budget_delta < 1:
        raise ValueError(f"site policy [budget] budget-delta={budget.budget_delta} not in (0, 1)")


# -- which policy a node runs under ----------------------------------------------------
def site_policy(node_config: Mapping[str, Any]) -> SitePolicy | None:
    """This node's policy (see the module docstring); None when it checks nothing."""
    named = str(node_config.get(SITE_POLICY_KEY, "") or "")
    if named == OPEN or (not named and in_flower_simulation()):
        return None
    if named in ("", STRICT):
        return SitePolicy()
    path = Path(named)
    return load_policy(str(path), path.stat().st_mtime_ns)


def site_policy_file(named: str) -> str:
    """Check a ``--site-policy`` value before a simulation starts; return its node config value.

    ``strict`` and ``open`` name themselves; a file is read and validated now, so that a bad
    one fails before round 1, and named by its absolute path.
    """
    if named in (STRICT, OPEN):
        return named
    path = Path(named).resolve()
    if not path.is_file():
        raise ValueError(f"--site-policy={named!r}: no such file (or 'strict')")
    load_policy(str(path), path.stat().st_mtime_ns)
    return str(path)


@functools.lru_cache(maxsize=8)
def load_policy(path: str, modified_ns: int) -> SitePolicy:
    """The policy in file ``path`` (cached until the file changes)."""
    try:
        return SitePolicy.from_toml(Path(path).read_text())
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"site policy {path}: {error}") from None


def in_flower_simulation() -> bool:
    """True inside a Ray actor: where Flower's simulation runtime runs ClientApps.

    A deployed SuperNode runs its ClientApp in its own process, never in a Ray actor, and
    nothing in a server's message can change where it runs.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().get_actor_id() is not None


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Keep the Hugging Face hub out of reach while ``offline`` (transformers, hub client).

    The hub client reads ``HF_HUB_OFFLINE`` once, when imported; its constant is set too.
    """
    if not offline:
        yield
        return
    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(dict.fromkeys(saved, "1"))
    constants = sys.modules.get("huggingface_hub.constants")
    was_offline = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        setattr(constants, "HF_HUB_OFFLINE", True)  # noqa: B010 (a module's constant)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            setattr(constants, "HF_HUB_OFFLINE", was_offline)  # noqa: B010


def site_policy_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run the message under the node's policy; tell the server nothing but generic lines.

    A :class:`PolicyRefusalError` passes as it is (its text names only the key), and so does
    a :class:`MessageConfigError` (it repeats what the server sent). Any other error
    is logged here, on the site, in full, and reaches the server as a :class:`SiteError`
    naming only its type: an error's text can hold a path, a column name, or whether a file
    exists. A node without a policy passes everything through untouched.
    """
    try:
        policy = site_policy(context.node_config)
    except Exception:
        _log.exception("site policy: cannot load %s", context.node_config.get(SITE_POLICY_KEY))
        raise SiteError("the site's policy could not be loaded (see the site's log)") from None
    if policy is None:
        return call_next(msg, context)
    try:
        with hub_offline(not policy.models.hub):
            return call_next(msg, context)
    except PolicyRefusalError as refusal:
        _log.warning("site policy refused a %s message: %s", msg.metadata.message_type, refusal)
        raise
    except MessageConfigError:
        raise
    except Exception as error:
        _log.exception("client error under the site policy")
        kind = "OSError" if isinstance(error, OSError) else type(error).__name__
        raise SiteError(f"client error under site policy: {kind} (see the site's log)") from None
