"""Planner speed: plans per second of models.estimate.estimate_arrays, and a full 405B search.

    python benchmarks/bench_planner.py            # prints the figures
    python benchmarks/bench_planner.py --quick    # smaller grids (CI smoke run)

1. estimate_arrays on a grid of ~1,000,000 plans for Llama-3 405B on 16,384 H100s, given as numpy
   arrays that broadcast (one axis per plan field: the planner's form), and the same plans given
   as flat 1-D arrays (one element per plan), in chunks of 100,000.
2. search() for Llama-3 405B on 16,384 H100s (global batch 2,048 x 8,192 tokens), serial and process pool:
   valid plans scored per second (median of --repeats runs, after a small warm-up search) and the peak RSS
   of this process after the serial searches (it runs first: the grids of part 1 are larger).
Targets: issue 4, >= 1e6 plans/s for estimate_arrays on a 2-core machine and a full search < 10 s; issue 19,
the whole search >= 1e6 valid plans/s with peak RSS < 200 MiB.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import numpy as np
from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

from models.estimate import estimate_arrays, plan_arrays
from models.hardware import make_cluster
from models.plan import Plan
from models.transformer import get_model
from simulator.planning import grid as grid_module
from simulator.planning.grid import PROCESS_MIN_CORES, PROCESS_THRESHOLD_POINTS
from simulator.planning.planner import Training, search

MODEL, GPU, NODES, GLOBAL_BATCH = "llama3-405b", "h100-sxm-80gb", 2048, 2048


def grid(quick: bool = False) -> tuple[dict, tuple]:
    """Broadcastable plan-field arrays: tp x pp x cp layouts (dp fills 16,384 GPUs) x the other fields."""
    n_gpus = NODES * 8
    lay = [(tp, pp, cp) for tp in (1, 2, 4, 8, 16, 32, 64, 128) for pp in (1, 2, 4, 8, 16, 32, 64)
           for cp in (1, 2, 4, 8, 16, 32, 64) if tp * pp * cp <= n_gpus]
    lay = np.array(lay[: 40 if quick else None])
    sv = np.array([(0, 1), (1, 1), (3, 1), (2, 2), (2, 3), (2, 4), (2, 6), (2, 8)])
    ax = lambda v, i, dt=np.int64: np.asarray(v, dtype=dt).reshape([-1 if j == i else 1 for j in range(10)])  # noqa: E731
    a = {"tp": ax(lay[:, 0], 0), "pp": ax(lay[:, 1], 0), "cp": ax(lay[:, 2], 0),
         "dp": ax(n_gpus // lay.prod(axis=1), 0), "ep": np.int64(1), "micro_batch_size": ax([1, 2, 4, 8], 1),
         "schedule": ax(sv[:, 0], 2), "vpp": ax(sv[:, 1], 2), "zero_stage": ax([0, 1, 2, 3], 3),
         "recompute": ax([0, 1, 2], 4), "sp": ax([False, True], 5, bool),
         "overlap_grad_reduce": ax([True, False], 6, bool),
         "overlap_tp_comm": ax([False, True], 7, bool), "global_batch_size": np.int64(GLOBAL_BATCH * 64)}
    # every other field (attention kernel, ...) as estimate's own plan_arrays gives it for a default plan
    a = {k: np.asarray(v) for k, v in plan_arrays(Plan()).items() if k not in a} | a
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
    return a, shape


def timed(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if platform.system() == "Darwin" else rss / 1024


def searches(model, cl, repeats: int) -> None:
    tr = Training(global_batch_size=GLOBAL_BATCH, tokens=15.6e12)
    # warm-up on the same GPU: imports and the GPU's kernel tables (models.kernel_tables loads scipy.interpolate on
    # first use, ~0.3 s here), which a first search pays once
    search(get_model("gpt-tiny"), make_cluster(GPU, 1), Training(global_batch_size=32))
    for backend in ("serial", "process"):
        times = []
        for _ in range(repeats):
            grid_module._layouts.cache_clear()   # each run enumerates its layouts, as one `clustersim search` does
            t = time.perf_counter()
            r = search(model, cl, tr, top=10, backend=backend)
            times.append(time.perf_counter() - t)
        el = statistics.median(times)
        print(f"search {MODEL} on {cl.num_gpus:,} H100s ({backend}): {r.plans_evaluated:,} valid plans "
              f"({r.grid_points:,} grid points, {r.plans_fit:,} fit) in {el:.3f} s (median of {repeats}) = "
              f"{r.plans_evaluated / el / 1e6:.2f} M valid plans/s (target >= 1); best {r.plans['plan_id'][0]} "
              f"step {r.plans['step_time_s'][0]:.3f} s MFU {r.plans['mfu'][0]:.1%}")
        if backend == "serial":
            print(f"  peak RSS after the serial searches: {peak_rss_mib():.0f} MiB (target < 200)")
    print(f"  backend auto: the process pool for searches above {PROCESS_THRESHOLD_POINTS:,} grid points on at least "
          f"{PROCESS_MIN_CORES} cores, else serial (serial for this search)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="runs per search backend; the median is printed")
    args = ap.parse_args()
    model, cl = get_model(MODEL), make_cluster(GPU, NODES)
    print(f"machine: {machine(f'numpy {np.__version__}')}")
    searches(model, cl, 1 if args.quick else args.repeats)
    a, shape = grid(args.quick)
    n = int(np.prod(shape))
    with np.errstate(all="ignore"):
        t = timed(lambda: estimate_arrays(model, cl, "bf16", **a))
        print(f"estimate_arrays, broadcast grid: {n:,} plans in {t:.3f} s = {n / t:,.0f} plans/s")
        flat = {k: np.broadcast_to(v, shape).ravel() for k, v in a.items()}
        m = min(n, 200_000 if args.quick else 1_000_000)
        chunk = 100_000
        def run_flat():
            for i in range(0, m, chunk):
                estimate_arrays(model, cl, "bf16", **{k: v[i:i + chunk] for k, v in flat.items()})
        t = timed(run_flat, repeat=1 if args.quick else 2)
        print(f"estimate_arrays, flat arrays (chunks of {chunk:,}): {m:,} plans in {t:.3f} s = {m / t:,.0f} plans/s")


if __name__ == "__main__":
    main()
