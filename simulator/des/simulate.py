"""simulate(model, cluster, plan) -> SimResult: one training iteration as a discrete-event
simulation (simpy) next to the analytical estimate.

Scale by symmetry: one pipeline (one data-parallel replica) is simulated with one
representative GPU per stage; TP ranks of a stage do identical work and the other replicas'
flows are counted on the links they share (see simulator.des.program). With a straggler the
replica holding the slow GPU is the one simulated: the DP gradient reduction makes every
replica wait for it, so it sets the iteration time.

>>> from models.hardware import make_cluster
>>> from models.plan import Plan
>>> from models.transformer import get_model
>>> r = simulate(get_model("gpt-tiny"), make_cluster("h100-sxm-80gb", 1), Plan(dp=2, tp=2, pp=2, global_batch_size=8))
>>> abs(r.step_time_s / r.analytical.step_time_s - 1) < 0.05
True
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.estimate import PlanError, StepEstimate, estimate
from models.hardware import Cluster
from models.plan import Plan, check_plan
from models.transformer import Transformer
from simulator.des import engine
from simulator.des.bounds import check_simulation_size
from simulator.des.program import build_program, link_capacities, memory_total_bytes
from simulator.des.topology import Placement
from simulator.des.trace import chrome_trace, memory_frame, timeline_frame

KINDS = ("tp", "cp", "ep", "pp", "dp")


@dataclass(frozen=True, slots=True)
class SimResult:
    step_time_s: float                # simulated iteration time
    analytical: StepEstimate          # models.estimate for the same inputs
    compute_s: float                  # on the bottleneck stage (the one holding most of the critical path)
    exposed_comm_by_kind_s: dict      # tp, cp, ep, pp, dp -> seconds the compute stream waited on them
    bubble_s: float                   # waiting for the neighbouring stage's data
    idle_s: float                     # finished before the slowest stage
    critical_stage: int
    timeline: pd.DataFrame            # rank, stream, op, kind, start_s, end_s, bytes, flops, microbatch, stage, layer
    memory_timeline: pd.DataFrame     # rank, stage, time_s, activation_bytes, allocated_bytes
    by_stage: pd.DataFrame            # breakdown per stage
    num_events: int                   # simpy events processed
    wall_s: float                     # seconds the simulation took
    slowdown_by_stage: tuple = field(default_factory=tuple)
    critical_path: pd.DataFrame | None = None   # stage, phase, microbatch, chunk, start_s, end_s

    def critical_path_summary(self) -> str:
        """One line: how many ops the critical path has and on which stages it runs."""
        cp = self.critical_path
        if cp is None or cp.empty:
            return "critical path: (none)"
        share = (cp.assign(d=cp.end_s - cp.start_s).groupby("stage")["d"].sum() / self.step_time_s)
        top = share.sort_values(ascending=False).head(4)
        hops = int((cp["stage"].diff().fillna(0) != 0).sum())
        return (f"critical path: {len(cp)} ops, {hops} stage changes; time on stages "
                + ", ".join(f"{s}: {v:.0%}" for s, v in top.items()))

    @property
    def exposed_comm_s(self) -> float:
        return float(sum(self.exposed_comm_by_kind_s.values()))

    @property
    def peak_memory_bytes(self) -> float:
        return float(self.memory_timeline["allocated_bytes"].max())

    @property
    def events_per_s(self) -> float:
        return self.num_events / max(self.wall_s, 1e-9)

    def chrome_trace(self) -> dict:
        return chrome_trace(self.timeline, f"clustersim {self.analytical.plan.plan_id}", memory=self.memory_timeline)

    def as_dict(self) -> dict:
        """The keys of ``estimate --json`` with the simulated time, plus the analytical time and breakdown."""
        est = self.analytical
        d = est.as_dict()
        ratio = est.step_time_s / self.step_time_s
        d.update({"step_time_s": self.step_time_s, "tokens_per_s": est.tokens_per_s * ratio,
                  "tflops_per_gpu": est.tflops_per_gpu * ratio, "mfu": est.mfu * ratio, "hfu": est.hfu * ratio,
                  "analytical_step_time_s": est.step_time_s,
                  "analytical": {"compute_s": est.compute_s, "exposed_comm_s": est.exposed_comm_s,
                                 "bubble_s": est.bubble_s, "exposed_comm_by_kind_s": dict(est.exposed_comm_by_kind_s)},
                  "compute_s": self.compute_s, "exposed_comm_s": self.exposed_comm_s, "bubble_s": self.bubble_s,
                  "idle_s": self.idle_s, "exposed_comm_by_kind_s": dict(self.exposed_comm_by_kind_s),
                  "simulated": {"step_time_s": self.step_time_s, "compute_s": self.compute_s,
                                "exposed_comm_s": self.exposed_comm_s,
                                "exposed_comm_by_kind_s": dict(self.exposed_comm_by_kind_s),
                                "bubble_s": self.bubble_s, "idle_s": self.idle_s,
                                "critical_stage": self.critical_stage,
                                "peak_memory_bytes": self.peak_memory_bytes,
                                "num_events": self.num_events, "wall_s": self.wall_s},
                  "simulated_peak_memory_bytes": self.peak_memory_bytes})
        return d


def _slowdowns(plan: Plan, pl: Placement, seed: int, straggler_rank, straggler_slowdown, speed_cv) -> list[float]:
    """Per-stage time multipliers of the simulated replica (the slowest one)."""
    if straggler_slowdown < 1:
        raise ValueError(f"straggler_slowdown: must be >= 1 (a time multiplier), got {straggler_slowdown}")
    if speed_cv < 0:
        raise ValueError(f"speed_cv: must be >= 0, got {speed_cv}")
    world = plan.world_size
    mult = np.ones(world)
    if speed_cv > 0:   # per-GPU speed spread: lognormal time multiplier, mean 1
        rng = np.random.default_rng(seed)
        # a lognormal with coefficient of variation cv has sigma^2 = ln(1 + cv^2); mu = -sigma^2/2 keeps
        # the mean at 1 (the cv itself is not sigma: with sigma = cv = 5 the spread made GPUs faster)
        sigma = math.sqrt(math.log1p(speed_cv ** 2))
        mult = rng.lognormal(-sigma ** 2 / 2, sigma, world)
    if straggler_rank is not None:
        if not 0 <= straggler_rank < world:
            raise ValueError(f"straggler_rank: must be in [0, {world - 1}], got {straggler_rank}")
        mult[straggler_rank] *= straggler_slowdown
    if not (speed_cv > 0 or straggler_rank is not None):
        return [1.0] * plan.pp
    # grid [pp, dp, cp*tp] via placement; a stage of a replica runs at its slowest GPU's pace
    per = np.ones((plan.pp, plan.dp))
    for s in range(plan.pp):
        for d in range(plan.dp):
            per[s, d] = max(mult[pl.rank(s, d, c, t)] for c in range(plan.cp) for t in range(plan.tp))
    worst = int(np.argmax(per.sum(axis=0)))
    return [float(x) for x in per[:, worst]]


def simulate(model: Transformer, cluster: Cluster, plan: Plan, seed: int = 0, straggler_rank: int | None = None,
             straggler_slowdown: float = 1.0, speed_cv: float = 0.0, placement_order: tuple | None = None) -> SimResult:
    """Simulate one iteration; raises PlanError / ValueError on bad input (one line each)."""
    errors = check_plan(plan, model, cluster)
    if errors:
        raise PlanError(errors)
    check_simulation_size(plan)  # bounded work: refused before any is done
    if placement_order is not None:   # the simulation and its analytical comparison use the same placement
        plan = dataclasses.replace(plan, placement="-".join(placement_order))
    est = estimate(model, cluster, plan)
    order = tuple(plan.placement.split("-"))
    pl = Placement(plan.tp, plan.cp, plan.dp, plan.pp, cluster.gpus_per_node, order)
    slow = _slowdowns(plan, pl, seed, straggler_rank, straggler_slowdown, speed_cv)
    t0 = time.perf_counter()
    prog = build_program(model, cluster, plan, order)
    sim = engine.run(prog, link_capacities(cluster, pl), slow)
    wall = time.perf_counter() - t0
    ranks = [sp.rank for sp in prog.stages]
    step = max(sim.end_s)
    rows = []
    for s, acc in enumerate(sim.acc):
        rows.append({"stage": s, "rank": ranks[s], "end_s": sim.end_s[s], "compute_s": acc["compute"],
                     "bubble_s": acc["bubble"], **{f"{k}_s": acc[k] for k in KINDS},
                     "idle_s": step - sim.end_s[s], "slowdown": slow[s]})
    by_stage = pd.DataFrame(rows)
    last = int(np.argmax(sim.end_s))
    path = pd.DataFrame([(s, op[0], op[1], op[2], t_a, t_b) for s, op, t_a, t_b in engine.critical_path(sim, last)],
                        columns=["stage", "phase", "microbatch", "chunk", "start_s", "end_s"])
    # the breakdown is that of the bottleneck: the stage holding most of the critical path
    crit = int((path.end_s - path.start_s).groupby(path.stage).sum().idxmax()) if len(path) else last
    acc = sim.acc[crit]
    timeline = timeline_frame(sim.records, ranks)
    memory = memory_frame(sim.memory, ranks, [sp.static_bytes for sp in prog.stages], memory_total_bytes)
    try:
        events = next(sim.env._eid)   # simpy's event counter (every scheduled event)
    except (AttributeError, TypeError):
        events = len(sim.records)
    return SimResult(step_time_s=step, analytical=est, compute_s=acc["compute"],
                     exposed_comm_by_kind_s={k: acc[k] for k in KINDS}, bubble_s=acc["bubble"],
                     idle_s=step - sim.end_s[crit], critical_stage=crit, timeline=timeline, memory_timeline=memory,
                     by_stage=by_stage, num_events=int(events), wall_s=wall, slowdown_by_stage=tuple(slow),
                     critical_path=path)


__all__ = ["simulate", "SimResult", "chrome_trace"]
