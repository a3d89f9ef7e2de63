"""The files generated from the schema: pyproject's run-config table and docs/CONFIG.md.

``python -m fedaso.config --write`` rewrites both; ``--check`` (and a unit test) fails when
either differs from what the sections declare, so a key, default or help text is edited in
one place only: its section.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedaso.config.fields import Key
from fedaso.config.run import SECTIONS, run_config_keys

TABLE_HEADER = "[tool.flwr.app.config]"
CONFIG_DOC = Path("docs") / "CONFIG.md"
PYPROJECT = Path("pyproject.toml")


def toml_value(value: bool | int | float | str) -> str:
    """``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _by_section() -> dict[str, list[Key]]:
    grouped: dict[str, list[Key]] = {name: [] for name in SECTIONS}
    for key in run_config_keys().values():
        grouped[key.section].append(key)
    return grouped


def _described(key: Key) -> str:
    """The key's help and choices as one Markdown table cell."""
    choices = f" (one of: {', '.join(key.choices)})" if key.choices else ""
    return (key.help + choices).replace("|", "\\|")


def run_config_table() -> str:
    """pyproject's ``[tool.flwr.app.config]`` table, every key with its default."""
    lines = [
        TABLE_HEADER,
        "# Generated from fedaso/config/ by `python -m fedaso.config --write`: edit the",
        "# sections there, not this table. docs/CONFIG.md describes every key.",
        "# Override with: flwr run . --run-config \"strategy='fedavg' num-server-rounds=10\"",
    ]
    for section, keys in _by_section().items():
        lines.append(f"# {section} (fedaso/config/{_module(section)}.py)")
        lines += [f"{key.name} = {toml_value(key.default)}" for key in keys]
    return "\n".join(lines) + "\n"


def config_doc() -> str:
    """docs/CONFIG.md: one table per section."""
    lines = [
        "# Run-config reference",
        "",
        "Generated from `fedaso/config/` by `python -m fedaso.config --write`; do not edit by",
        "hand. Set a key in `pyproject.toml`'s `[tool.flwr.app.config]`, with",
        '`flwr run . --run-config "key=value"`, or with `fedaso run --set key=value`.',
        "Server-only keys are never sent to clients. The spec is [SPEC.md](SPEC.md).",
    ]
    for section, keys in _by_section().items():
        lines += ["", f"## {section}", "", "| key | default | sent to clients | meaning |"]
        lines.append("|---|---|---|---|")
        for key in keys:
            sent = "no" if key.server_only else "yes"
            lines.append(
                f"| `{key.name}` | `{toml_value(key.default)}` | {sent} | {_described(key)} |"
            )
    return "\n".join(lines) + "\n"


def _module(section: str) -> str:
    return SECTIONS[section].__module__.rsplit(".", 1)[-1]


def with_table(pyproject: str) -> str:
    """``pyproject`` with its run-config table replaced by :func:`run_config_table`."""
    start = pyproject.index(TABLE_HEADER)
    end = pyproject.find("\n[", start + len(TABLE_HEADER))
    end = len(pyproject) if end == -1 else end + 1
    rest = pyproject[end:]
    return pyproject[:start] + run_config_table() + ("\n" + rest if rest else "")


def expected_files(root: Path) -> dict[Path, str]:
    """What the generated files should hold, by path under ``root``."""
    return {
        root / PYPROJECT: with_table((root / PYPROJECT).read_text(encoding="utf-8")),
        root / CONFIG_DOC: config_doc(),
    }


def stale_files(root: Path) -> list[Path]:
    """The generated files under ``root`` that differ from the schema."""
    return [
        path
        for path, text in expected_files(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
