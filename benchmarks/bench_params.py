"""`archlang params` on a 40-network WRN sweep, as a whole process, against a process that imports
torch and builds the same 40 networks on the meta device to count their parameters.

Both are timed end to end as subprocesses (interpreter start-up and imports included), repeated,
interleaved, and the medians compared. Goal: params / build <= 0.2. The counts of the two are
also compared, network by network.

    python benchmarks/bench_params.py
    python benchmarks/bench_params.py --repeats 1
    python benchmarks/bench_params.py --sweep "wrn(depth={16,28}, k={2,10})"
    python benchmarks/bench_params.py --smoke   # seconds: a 2-network sweep, one repeat
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = "wrn(depth={10,16,22,28,34,40,46,52}, k={1,2,4,8,10})"

# The torch side: expand the sweep with archlang (cheap), then build every network's module on
# the meta device (no memory, no initialisation cost) and count sum(p.numel()).
BUILD_SCRIPT = """
import json, sys
import torch
import archlang
sweep = sys.argv[1]
out = []
for c in archlang.compile_all(sweep):
    with torch.device("meta"):
        module = c.build()
    out.append({"spec": c.canonical, "params": sum(p.numel() for p in module.parameters())})
print(json.dumps(out))
"""


def params_command(sweep: str) -> list[str]:
    exe = shutil.which("archlang") or str(Path(sys.executable).parent / "archlang")
    if Path(exe).exists():
        return [exe, "params", sweep, "--json"]
    return [sys.executable, "-m", "archlang", "params", sweep, "--json"]


def run(cmd: list[str]) -> tuple[float, list[dict]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd[:3])} ...\n{proc.stderr}")
    return elapsed, json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default=SWEEP, help="the sweep spec (default: 8 depths x 5 widths = 40 WRNs)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each process (median reported)")
    p.add_argument("--goal", type=float, default=0.2, help="params/build time ratio to meet")
    p.add_argument("--smoke", action="store_true", help="a 2-network sweep, one repeat: checks the benchmark runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.sweep, args.repeats = "wrn(depth={10,16}, k=1)", 1

    count_cmd = params_command(args.sweep)
    build_cmd = [sys.executable, "-c", BUILD_SCRIPT, args.sweep]
    times: dict[str, list[float]] = {"params": [], "build": []}
    results: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        order = [("params", count_cmd), ("build", build_cmd)]
        if r % 2:
            order.reverse()
        for label, cmd in order:
            elapsed, out = run(cmd)
            times[label].append(elapsed)
            results[label] = out

    counted = {row["spec"]: row["params"] for row in results["params"]}
    built = {row["spec"]: row["params"] for row in results["build"]}
    mismatched = sorted(s for s in built if counted.get(s) != built[s])
    t_params, t_build = statistics.median(times["params"]), statistics.median(times["build"])
    ratio = t_params / t_build
    print(f"sweep: {args.sweep} ({len(counted)} networks)")
    print(f"archlang params (whole process):            {t_params:7.2f} s  (runs: "
          + ", ".join(f"{t:.2f}" for t in times["params"]) + ")")
    print(f"import torch + build on meta (whole process): {t_build:7.2f} s  (runs: "
          + ", ".join(f"{t:.2f}" for t in times["build"]) + ")")
    print(f"ratio params/build: {ratio:.3f} ({'meets' if ratio <= args.goal else 'misses'} the goal of {args.goal})")
    if len(counted) != len(built) or mismatched:
        print(f"COUNT MISMATCH between the IR and the built modules: {mismatched[:5]}")
        return 1
    print(f"counts agree for all {len(built)} networks "
          f"({min(built.values()):,} .. {max(built.values()):,} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
