"""Add (or update) a bundle in the model zoo's registry: its kind, description, sha256 of every file,
metrics and the docs/results.md section that measured them.

    python scripts/zoo_add.py models/ddpm-jurkat4-cut10-v --description "..." \
        --metric "KID×10³ (DPM-Solver++(2M)-20)=..." --results "docs/results.md §6b"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_cellsynth.core.zoo_publish import add_to_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="a bundle folder inside the zoo folder (models/: the shipped registry)")
    parser.add_argument("--description", required=True)
    parser.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--results", default="", help="the docs/results.md section that measured the metrics")
    args = parser.parse_args()
    path = add_to_registry(args.bundle, args.description, dict(m.split("=", 1) for m in args.metric), args.results)
    print(f"{path}: {Path(args.bundle).name}")


if __name__ == "__main__":
    main()
