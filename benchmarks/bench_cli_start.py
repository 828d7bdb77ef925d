"""Start-up of the CLI as a whole command: `clustersim estimate` against `python -c "import numpy, yaml"`
(issue 19's target: at most 2.5x), interleaved runs, medians.

    python benchmarks/bench_cli_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

ESTIMATE = [sys.executable, "-m", "simulator.cli", "estimate", "--model", "gpt3-175b", "--gpu", "a100", "--nodes",
            "128", "--tp", "8", "--pp", "16", "--vpp", "3", "--global-batch", "1536"]
PRESETS = [sys.executable, "-m", "simulator.cli", "presets"]
BASELINE = [sys.executable, "-c", "import numpy, yaml"]


def wall_s(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    times = {"estimate": [], "presets": [], "baseline": []}
    for argv in (ESTIMATE, PRESETS, BASELINE):   # warm the file cache
        wall_s(argv)
    for _ in range(args.runs):
        for name, argv in (("estimate", ESTIMATE), ("presets", PRESETS), ("baseline", BASELINE)):
            times[name].append(wall_s(argv))
    base = statistics.median(times["baseline"])
    for name in ("estimate", "presets"):
        med = statistics.median(times[name])
        print(f"clustersim {name:9s} {med:.3f} s median of {args.runs} = {med / base:.2f}x "
              f"'python -c \"import numpy, yaml\"' ({base:.3f} s)" + ("  (target <= 2.5x)" if name == "estimate" else ""))


if __name__ == "__main__":
    main()
