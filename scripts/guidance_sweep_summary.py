"""The table of scripts/guidance_sweep.sh: per setting, the share of generated cells the 4-class classifier calls the
class, and the classes the 7-class classifier calls them (the mitotic phases inside M).

    python scripts/guidance_sweep_summary.py OUT [CLASS]
"""

import sys
from pathlib import Path

import pandas as pd


def main(out: str, name: str = "M") -> None:
    rows = []
    for four in sorted(Path(out).glob("*.classifier-jurkat4.csv")):
        setting = four.name.removesuffix(".classifier-jurkat4.csv")
        seven = pd.read_csv(four.with_name(f"{setting}.classifier-jurkat7.csv"))["class"].value_counts(normalize=True)
        calls = pd.read_csv(four)["class"]
        rows.append({"setting": setting, "cells": len(calls), f"called {name}": (calls == name).mean(),
                     **{c: seven.get(c, 0.0) for c in ("G1", "S_phase", "G2", "Prophase", "Metaphase", "Anaphase",
                                                        "Telophase")}})
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
