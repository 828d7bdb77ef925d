"""Speed of the discrete-event simulator on the issue's two reference runs (issue 3).

    python benchmarks/bench_simulator.py

Prints, per case: wall time of simulate() (program build + simpy run + tables), simpy events,
events per second, and the simulated vs analytical iteration time. Targets: GPT-3 175B on
1,024 A100s (TP8 PP16 DP8, 1536 sequences, interleaved) < 10 s; Llama-3 405B on 16,384 H100s
(TP8 PP16 DP128) < 60 s, on a 2-core machine.
"""

from __future__ import annotations

import os
import platform
import time

from models.inputs import build_inputs
from simulator.des.simulate import simulate

CASES = [
    # Narayanan et al. SC'21 Table 1 row for GPT-3 175B uses 96 layers on 1,024 A100s at batch 1536;
    # vpp 3 (interleaved) as in the example plan.
    ("GPT-3 175B, 1,024 x A100, TP8 PP16 DP8, gb 1536, interleaved vpp3", 10.0,
     dict(model="gpt3-175b", gpu="a100-sxm-80gb", nodes=128, tp=8, pp=16, dp=8, vpp=3, global_batch=1536)),
    # Llama 3 (Dubey et al. 2024) Table 4: 16,384 H100s, TP8 CP1 PP16 DP128, 16M tokens = 2048 x 8192.
    ("Llama-3 405B, 16,384 x H100, TP8 PP16 DP128, gb 2048, 1F1B", 60.0,
     dict(model="llama3-405b", gpu="h100-sxm-80gb", nodes=2048, tp=8, pp=16, dp=128, global_batch=2048)),
]


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    for name, target_s, kw in CASES:
        inp = build_inputs(**kw)
        t0 = time.perf_counter()
        r = simulate(inp.model, inp.cluster, inp.plan)
        wall = time.perf_counter() - t0
        verdict = "ok" if wall < target_s else "SLOW"
        print(f"{name}\n  wall {wall:6.2f} s (target < {target_s:.0f} s: {verdict}); simpy run {r.wall_s:.2f} s, "
              f"{r.num_events:,} events, {r.events_per_s:,.0f} events/s")
        print(f"  iteration: simulated {r.step_time_s:.3f} s, analytical {r.analytical.step_time_s:.3f} s "
              f"({r.step_time_s / r.analytical.step_time_s - 1:+.1%}); {len(r.timeline):,} timeline rows")


if __name__ == "__main__":
    main()
