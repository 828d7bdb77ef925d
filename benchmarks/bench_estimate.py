"""Speed of the analytical model: one estimate (issue 19 target: at most 0.2 ms) and a numpy grid.

Run: python benchmarks/bench_estimate.py
"""

from __future__ import annotations

import time

import numpy as np
from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

from models import numeric
from models.estimate import estimate, estimate_arrays, plan_arrays
from models.hardware import make_cluster
from models.plan import Plan
from models.transformer import get_model


def bench(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    model, cluster = get_model("gpt3-175b"), make_cluster("a100-sxm-80gb", 128)
    plan = Plan(dp=8, tp=8, pp=16, vpp=3, micro_batch_size=1, global_batch_size=1536, sp=True,
                recompute="selective", zero_stage=1, schedule="interleaved")
    t_one = bench(lambda: estimate(model, cluster, plan), 500)
    # a plan never seen: the caches keyed on plan values (GEMM shapes, plan codes) emptied before each call
    t_new = bench(lambda: (numeric.clear_plan_caches(), estimate(model, cluster, plan)), 200)
    a = plan_arrays(plan)
    t_arr = bench(lambda: estimate_arrays(model, cluster, "bf16", **a), 500)
    n = 1_000_000
    cols = {k: np.full(n, v) for k, v in a.items()}
    cols["micro_batch_size"] = np.tile([1, 2], n // 2)
    cols["global_batch_size"] = np.full(n, 1536)
    t_grid = bench(lambda: estimate_arrays(model, cluster, "bf16", **cols), 2)
    print(f"machine: {machine()}")
    print(f"estimate(): one GPT-3 175B plan          {t_one * 1e3:8.3f} ms")
    print(f"estimate(): the same, plan caches empty  {t_new * 1e3:8.3f} ms")
    print(f"estimate_arrays(): one plan (0-d arrays) {t_arr * 1e3:8.3f} ms")
    print(f"estimate_arrays(): 1,000,000-plan grid   {t_grid:8.3f} s  = {n / t_grid:,.0f} plans/s")


if __name__ == "__main__":
    main()
