"""Every benchmark runs: its --smoke mode, in a subprocess as a user runs it, prints its figure lines.

The values are not asserted (they depend on the machine); the lines that carry them are, so a
benchmark that stops computing a figure, or stops running at all, fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[0-9]+(\.[0-9]+)?"

# benchmark -> patterns its output must contain (one figure line each)
FIGURES = {
    "bench_data.py": [rf"training steps fed by the loader : +{NUMBER} s", rf"same steps on prepared batches +: +{NUMBER} s",
                      rf"ratio \(goal <= 1\.05\) +: +{NUMBER}"],
    "bench_fold.py": [rf"folded / unfolded = {NUMBER}", rf"folded / plain += {NUMBER}"],
    "bench_params.py": [rf"ratio params/build: {NUMBER}", r"counts agree for all 2 networks"],
    "bench_seeds.py": [rf"gated-fc-d100 .* G=8 .* ratio vs 1 single step: +{NUMBER} \(median\)",
                       rf"highway-fc-50 .* G=8 .* ratio vs 1 single step: +{NUMBER} \(median\)",
                       rf"wrn-16-1 .* G=4 .* ratio vs 4 single steps: +{NUMBER} \(median\)"],
    "bench_step.py": [rf"gated-fc-d100 .* ratio +{NUMBER}", rf"highway-fc-50 .* ratio +{NUMBER}",
                      rf"worst ratio compiled/hand-written: {NUMBER}"],
}


def test_every_benchmark_has_a_smoke_test():
    assert sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py")) == sorted(FIGURES)


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_smoke_run_prints_its_figures(script):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for pattern in FIGURES[script]:
        assert re.search(pattern, proc.stdout), f"{script}: no line matching {pattern!r} in:\n{proc.stdout}"
