"""Gated ResNet Fig. 5 (right) on the d=100 runs of Table 1: test accuracy against removed blocks.

    python reproduce/pruning.py          # after reproduce/gated_mnist.py has finished the d=100 runs

Runs `archlang prune` (greedy and random for the gated net, random for the plain ResNet) on the
full MNIST test set, writes the JSON and plots to reproduce/analysis/, and records the accuracy
after removing 30 of the 50 blocks in results.json (the paper shows this figure as curves only).
"""

from __future__ import annotations

import json
import subprocess
import sys

from jobs import ROOT, merge_results

PAPER = "Gated ResNet (Savarese et al., later version)"
STEPS = "0,5,10,15,20,25,30,35,40,45,50"
RUNS = [("gated-mnist-d100", "gated-d100", "greedy"), ("gated-mnist-d100", "gated-d100", "random"),
        ("residual-mnist-d100", "residual-d100", "random")]


def main() -> None:
    entries = []
    for out_name, run, strategy in RUNS:
        out = ROOT / "reproduce" / "analysis" / out_name
        out.mkdir(parents=True, exist_ok=True)
        result = out / f"prune-{strategy}.json"
        folder = ROOT / "reproduce" / "runs" / "gated-mnist" / run
        argv = ["prune", str(folder.relative_to(ROOT)), "--strategy", strategy, "--steps", STEPS, "--seeds", "3",
                "--out", str(out.relative_to(ROOT)), "--json"]
        if not result.is_file():
            text = subprocess.run([sys.executable, "-m", "archlang", *argv], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            result.write_text(text)
        data = json.loads(result.read_text())
        at30 = data["accuracy"][data["removed"].index(30)]
        spec = (folder / "spec.canonical.arch").read_text().strip()
        entries.append({"paper": PAPER, "table": "Figure 5", "spec": spec,
                        "metric": f"test accuracy (%) with 30 of 50 blocks removed, {run.split('-')[0]}, {strategy}",
                        "paper_value": None, "ours": round(at30, 2), "epochs": 100,
                        "scale": "the d=100 nets of Table 1 (full scale); random: mean of 3 orders",
                        "command": "archlang " + " ".join(argv)})
    merge_results(entries, (PAPER, "Figure 5"))
    print(f"{len(entries)} results")


if __name__ == "__main__":
    main()
