"""Speed of the discrete-event simulator: the reference runs of issue 3 and the scaling of issue 19.

    python benchmarks/bench_simulator.py                 # both parts
    python benchmarks/bench_simulator.py --part scale    # issue 19's figures only (~15 s on 2 cores)

Reference runs (issue 3): wall time of simulate() (program build + simpy run + tables), simpy
events, events per second, simulated vs analytical iteration time. Targets: GPT-3 175B on 1,024
A100s (TP8 PP16 DP8, 1536 sequences, interleaved) < 10 s; Llama-3 405B on 16,384 H100s (TP8 PP16
DP128) < 60 s, on a 2-core machine.

Scaling (issue 19): GPT-3 175B, TP8, 32 micro-batches per pipeline. The engine's own wall time
(``SimResult.wall_s``: program build and simpy run), the minimum over ``--repeats`` runs
interleaved in this one process, its events and microseconds per event. Targets: at 65,536 GPUs
(PP8 DP1024) within 1.5x of 64 GPUs (PP8 DP1); microseconds per event at PP96 within 2x of PP4,
without and with ZeRO-2 (DP8). 64 GPUs have DP1 and so no gradient reduction: 128 GPUs (DP2),
with the events of 65,536, is printed as the equal-work reference.
"""

from __future__ import annotations

import argparse
import time

from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

from models.hardware import make_cluster
from models.plan import Plan
from models.transformer import get_model
from simulator.des.simulate import simulate

REFERENCE = [
    # Narayanan et al. SC'21 Table 1 row for GPT-3 175B uses 96 layers on 1,024 A100s at batch 1536;
    # vpp 3 (interleaved) as in the example plan.
    ("GPT-3 175B, 1,024 x A100, TP8 PP16 DP8, gb 1536, interleaved vpp3", 10.0,
     ("gpt3-175b", "a100-sxm-80gb", 128,
      dict(tp=8, pp=16, dp=8, vpp=3, schedule="interleaved", global_batch_size=1536))),
    # Llama 3 (Dubey et al. 2024) Table 4: 16,384 H100s, TP8 CP1 PP16 DP128, 16M tokens = 2048 x 8192.
    ("Llama-3 405B, 16,384 x H100, TP8 PP16 DP128, gb 2048, 1F1B", 60.0,
     ("llama3-405b", "h100-sxm-80gb", 2048, dict(tp=8, pp=16, dp=128, global_batch_size=2048))),
]

MICROBATCHES = 32            # per pipeline, micro-batch size 1
SCALE_TARGET = 1.5           # engine wall at 65,536 GPUs / at 64 GPUs
PER_EVENT_TARGET = 2.0       # us/event at pp 96 / at pp 4


def _gpt3(gpus: int, pp: int, zero_stage: int = 0):
    """GPT-3 175B on ``gpus`` H100s at TP8 and ``pp`` stages, 32 micro-batches per pipeline."""
    dp = gpus // (8 * pp)
    return ("gpt3-175b", "h100-sxm-80gb", gpus // 8,
            dict(tp=8, pp=pp, dp=dp, global_batch_size=MICROBATCHES * dp, zero_stage=zero_stage))


SCALE = {   # name -> inputs
    "64 GPUs, PP8 DP1": _gpt3(64, 8),
    "128 GPUs, PP8 DP2": _gpt3(128, 8),
    "65,536 GPUs, PP8 DP1024": _gpt3(65_536, 8),
    "PP4 DP8": _gpt3(256, 4),
    "PP96 DP8": _gpt3(6_144, 96),
    "PP4 DP8 ZeRO-2": _gpt3(256, 4, 2),
    "PP96 DP8 ZeRO-2": _gpt3(6_144, 96, 2),
}


def _inputs(spec):
    model, gpu, nodes, plan = spec
    return get_model(model), make_cluster(gpu, nodes), Plan(**plan)


def reference() -> None:
    for name, target_s, spec in REFERENCE:
        args = _inputs(spec)
        t0 = time.perf_counter()
        r = simulate(*args)
        wall = time.perf_counter() - t0
        verdict = "ok" if wall < target_s else "SLOW"
        print(f"{name}\n  wall {wall:6.2f} s (target < {target_s:.0f} s: {verdict}); engine {r.wall_s:.2f} s, "
              f"{r.num_events:,} events, {r.events_per_s:,.0f} events/s")
        print(f"  iteration: simulated {r.step_time_s:.3f} s, analytical {r.analytical.step_time_s:.3f} s "
              f"({r.step_time_s / r.analytical.step_time_s - 1:+.1%}); {len(r.timeline):,} timeline rows")


def scale(repeats: int) -> None:
    args = {k: _inputs(v) for k, v in SCALE.items()}
    best, events = dict.fromkeys(SCALE, float("inf")), {}
    for _ in range(repeats):              # interleaved: a slow spell of the machine hits every case
        for k, a in args.items():
            r = simulate(*a)
            best[k], events[k] = min(best[k], r.wall_s), r.num_events
    us = {k: best[k] / events[k] * 1e6 for k in SCALE}
    print(f"GPT-3 175B, TP8, {MICROBATCHES} micro-batches per pipeline: engine wall (min of {repeats}), events")
    for k in SCALE:
        print(f"  {k:26s} {best[k]:8.3f} s {events[k]:9,} events {us[k]:7.2f} us/event")

    def verdict(x, target):
        return f"{x:.2f}x (target <= {target}x: {'ok' if x <= target else 'MISSED'})"
    small, big, equal = "64 GPUs, PP8 DP1", "65,536 GPUs, PP8 DP1024", "128 GPUs, PP8 DP2"
    print(f"  wall 65,536 / 64 GPUs:   {verdict(best[big] / best[small], SCALE_TARGET)}; "
          f"events {events[big] / events[small]:.2f}x")
    print(f"  wall 65,536 / 128 GPUs:  {best[big] / best[equal]:.2f}x at equal work "
          f"(events {events[big] / events[equal]:.2f}x)")
    for z in ("", " ZeRO-2"):
        print(f"  us/event PP96 / PP4{z or '':7s} {verdict(us['PP96 DP8' + z] / us['PP4 DP8' + z], PER_EVENT_TARGET)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "reference", "scale"), default="all")
    ap.add_argument("--repeats", type=int, default=5, help="runs per scaling case; the minimum is kept")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    if a.part in ("all", "scale"):
        scale(a.repeats)
    if a.part in ("all", "reference"):
        reference()


if __name__ == "__main__":
    main()
