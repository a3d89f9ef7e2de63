"""``python -m fedaso.config --write | --check``: regenerate or verify the generated files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedaso.config.generated import expected_files, stale_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedaso.config", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 if any has drifted")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    if args.write:
        for path, text in expected_files(args.root).items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    stale = stale_files(args.root)
    for path in stale:
        print(f"{path} differs from fedaso/config/: run python -m fedaso.config --write")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
