"""The planner: every valid parallel plan for a model on a cluster, scored at once, ranked.

Enumeration. A *layout* fixes the degrees that must multiply to the GPU count,
``dp * tp * pp * cp = num_gpus``; layouts are checked with :func:`models.plan.check_plan`
(the same rules as ``estimate``). Every layout is then crossed with the remaining choices:
expert-parallel degree ``ep``, ``micro_batch_size``, (``schedule``, ``vpp``), ``zero_stage``,
``recompute`` and ``sp``. Combinations that repeat another one exactly (sp with tp = 1,
ZeRO with one data-parallel rank, a pipeline schedule with pp = 1) are left out.

Evaluation. The grid is handed to :func:`models.estimate.estimate_arrays` as numpy arrays
that *broadcast* (one axis per choice), so a term that depends on the layout only is
computed once per layout, not once per plan: the formulas are the analytical model's, one
code path. Chunks of layouts are independent tasks for a serial loop, a local process pool
or Ray (``ray.util.multiprocessing.Pool``, optional extra); results do not depend on the
backend because chunks and tie-breaks are fixed before they run.

Ranking. Plans that do not fit in memory are dropped; the rest are ranked by the objective
(``time``: iteration time; ``time-to-train``; ``cost``: dollars; ``energy``: kWh, the
failure-free figures of :func:`models.cost.run_figures`). For one GPU count, cost is
proportional to time, so the time-vs-cost Pareto front has at most one plan per GPU count;
searching several node counts (``Constraints.num_nodes``) gives a real front.

Rank placement is fixed as Megatron's (tp innermost, then cp, ep inside dp, pp outermost),
which is how ``estimate`` assigns NVLink and network bandwidth; it is not a search axis.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.cost import run_figures
from models.estimate import estimate, estimate_arrays, placement_strides, plan_arrays
from models.fields import check_value, option, options
from models.hardware import Cluster
from models.inputs import SEARCH_AXES, Training
from models.plan import (
    INNERMOST_PLACEMENTS,
    PLACEMENTS,
    RECOMPUTE_NAMES,
    SCHEDULE_NAMES,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    check_plan,
    normalise_placement,
)
from models.transformer import Transformer

OBJECTIVES = {"time": "step_time_s", "time-to-train": "time_to_train_s", "cost": "cost_usd", "energy": "energy_kwh"}
# Layout fields (one grid row per valid layout), then the declared search axes (models/plan.py
# fields whose Opt has ``search``), each a broadcast axis of the grid; (schedule, vpp) is one axis of pairs.
LAYOUT_FIELDS = ("tp", "pp", "cp", "dp", "placement")
CHOICE_AXES = tuple(a for a in SEARCH_AXES if a not in LAYOUT_FIELDS and a not in ("schedule", "vpp"))
GRID_FIELDS = ("tp", "pp", "cp", "dp", *CHOICE_AXES, "schedule", "vpp", "placement")
BACKENDS = ("auto", "serial", "process", "ray")
# Equal scores are ordered by the plan itself (fewer nodes, then smaller tp, pp, ...), never by chunk.
TIE_ORDER = ("num_nodes", *GRID_FIELDS)
# Grid points per task: large enough to amortise numpy call overhead, small enough to stay in cache-friendly
# memory (estimate_arrays keeps ~40 full-size float64 temporaries: 250k points ~ 80 MB).
CHUNK_POINTS = 250_000
# Sweeps above this many grid points use the process pool under backend="auto".
PROCESS_THRESHOLD_POINTS = 2_000_000
# Terms of the iteration-time breakdown compared to explain a ranking (StepEstimate fields).
BREAKDOWN_TERMS = {"compute_s": "compute", "bubble_s": "pipeline bubble",
                   "exposed_tp_comm_s": "exposed TP communication", "exposed_cp_comm_s": "exposed CP communication",
                   "exposed_ep_comm_s": "exposed EP all-to-all", "exposed_pp_comm_s": "exposed pipeline send/recv",
                   "exposed_dp_comm_s": "exposed DP/ZeRO communication"}
PLAN_COLUMNS = ("num_nodes", *options(Plan))


def _tuple(v):
    return None if v is None else tuple(v) if isinstance(v, (list, tuple)) else (v,)


def _constraint_values(name: str, values) -> tuple | None:
    """Allowed values of one search axis, checked against the field's declaration; enums as codes."""
    v = _tuple(values)
    if v is None:
        return None
    if not v:
        raise ValueError(f"constraints.{name}: give at least one value")
    if name == "placement":
        try:
            return tuple(normalise_placement(x) for x in v)
        except ValueError as e:
            raise ValueError(f"constraints.{str(e).removeprefix('plan.')}") from None
    if name in ("recompute", "schedule"):
        return tuple(_named(x, RECOMPUTE_NAMES if name == "recompute" else SCHEDULE_NAMES, name) for x in v)
    return tuple(check_value(Plan, name, x, where="constraints") for x in v)


def _constraints_post_init(self) -> None:
    for name in SEARCH_AXES:
        object.__setattr__(self, name, _constraint_values(name, getattr(self, name)))
    nodes = _tuple(self.num_nodes)
    if nodes is not None and (not nodes or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in nodes)):
        raise ValueError(f"constraints.num_nodes: values must be positive integers, got {list(nodes)}")
    object.__setattr__(self, "num_nodes", nodes)
    if not 0 < self.max_memory_fraction <= 1.5:
        raise ValueError(f"constraints.max_memory_fraction: must be in (0, 1.5], got {self.max_memory_fraction}")


# Which values each search axis may take (None: the axis's default values, models/plan.py ``search``;
# tp: powers of two up to the NVLink domain, pp: divisors of the GPU count, ep: divisors of num_experts).
Constraints = dataclasses.make_dataclass(
    "Constraints",
    [(name, "tuple | None", dataclasses.field(default=None, metadata={"help": option(Plan, name).help}))
     for name in SEARCH_AXES]
    + [("num_nodes", "tuple | None", dataclasses.field(default=None, metadata={
        "help": "node counts to try (default: the cluster's); more than one gives a time-vs-cost Pareto front"})),
       ("max_memory_fraction", float, dataclasses.field(default=1.0, metadata={
           "help": "a plan fits when its peak memory <= this fraction of HBM"}))],
    frozen=True, slots=True, namespace={"__post_init__": _constraints_post_init,
                                        "__doc__": "Which values each plan field may take; None means every valid value."})
Constraints.__module__ = __name__


def _named(value, names: dict, fld: str) -> int:
    if isinstance(value, str):
        if value.lower() not in names:
            raise ValueError(f"constraints.{fld}: {value!r} unknown; choose one of {', '.join(names)}")
        return int(names[value.lower()])
    if int(value) not in [int(v) for v in names.values()]:
        raise ValueError(f"constraints.{fld}: {value!r} unknown; choose one of {', '.join(names)}")
    return int(value)


# ----------------------------------------------------------------------------------- the grid

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _pow2_upto(n: int) -> list[int]:
    return [2**i for i in range(int(math.log2(max(n, 1))) + 1)]


@dataclass(frozen=True, slots=True)
class Space:
    """The choice axes crossed with every layout (after defaults and constraints)."""
    axes: tuple                            # ((field, values), ...) in CHOICE_AXES order
    sched_vpp: tuple                       # (schedule, vpp) pairs

    @property
    def points_per_layout(self) -> int:
        return len(self.sched_vpp) * math.prod(len(v) for _, v in self.axes)


def _axis_default(model: Transformer, name: str) -> tuple:
    if name == "ep":
        return tuple(_divisors(model.num_experts)) if model.is_moe else (1,)
    values = option(Plan, name).search
    return _constraint_values(name, values)


def _space(model: Transformer, c: Constraints) -> Space:
    scheds = c.schedule or tuple(int(s) for s in Schedule)
    vpps = c.vpp or option(Plan, "vpp").search
    sv = tuple((s, v) for s in scheds for v in vpps if (s == Schedule.INTERLEAVED) == (v > 1))
    if not sv:
        raise ValueError("constraints.vpp: no (schedule, vpp) pair is possible: vpp > 1 needs the interleaved "
                         "schedule and interleaved needs vpp > 1")
    return Space(axes=tuple((a, getattr(c, a) or _axis_default(model, a)) for a in CHOICE_AXES), sched_vpp=sv)


def layouts(model: Transformer, cluster: Cluster, training: Training, c: Constraints) -> np.ndarray:
    """Valid (tp, pp, cp, dp, placement code) layouts for the cluster's GPU count, an int array of shape (n, 5)."""
    n_gpus = cluster.num_gpus
    tps = c.tp or _pow2_upto(cluster.node.nvlink_domain_gpus)
    cps = c.cp or _pow2_upto(32)
    out = []
    for tp in tps:
        for cp in cps:
            if n_gpus % (tp * cp):
                continue
            for pp in (c.pp or _divisors(n_gpus // (tp * cp))):
                if n_gpus % (tp * cp * pp) or pp > model.num_layers:
                    continue
                dp = n_gpus // (tp * cp * pp)
                if training.global_batch_size % dp:
                    continue
                plan = Plan(dp=dp, tp=tp, pp=pp, cp=cp, **training.plan_kwargs())
                if not check_plan(plan, model, cluster):
                    out += [(tp, pp, cp, dp, code) for code in _distinct_placements(c, tp, cp, dp, pp)]
    return np.array(out, dtype=np.int64).reshape(-1, 5)


def _distinct_placements(c: Constraints, tp, cp, dp, pp) -> list[int]:
    """Codes (models.plan.PLACEMENTS indices) of the allowed placements that give distinct rank
    strides for the groups that exist in this layout (with cp = 1, 'cp-tp-dp-pp' is 'tp-cp-dp-pp': an
    exact repeat)."""
    seen, out = set(), []
    for name in c.placement or INNERMOST_PLACEMENTS:
        code = PLACEMENTS.index(name)
        strides = placement_strides(code, tp, cp, dp, pp)
        key = tuple(int(x) if size > 1 else 0 for x, size in zip(strides, (tp, cp, dp, pp)))  # size-1 dims: no group
        if key not in seen:
            seen.add(key)
            out.append(code)
    return out


def _grid_arrays(lay: np.ndarray, sp_: Space, training: Training) -> dict:
    """Plan-field arrays that broadcast to shape (layouts, sched/vpp, *choice axes)."""
    ndim = 2 + len(sp_.axes)

    def axis(values, i):
        shape = [1] * ndim
        shape[i] = len(values)
        return np.asarray(values).reshape(shape)
    out = {f: lay[:, j].reshape([-1] + [1] * (ndim - 1)) for j, f in enumerate(LAYOUT_FIELDS)}
    sv = np.asarray(sp_.sched_vpp, dtype=np.int64)
    out |= {"schedule": axis(sv[:, 0], 1), "vpp": axis(sv[:, 1], 1)}
    out |= {name: axis(values, 2 + i) for i, (name, values) in enumerate(sp_.axes)}
    return out | {k: np.asarray(v) for k, v in _scalar_fields(training).items()}


def _scalar_fields(training: Training) -> dict:
    """Fields every plan of the grid shares (attention kernel, overlaps...), via estimate's own plan_arrays."""
    base = plan_arrays(Plan(**training.plan_kwargs()))
    return {k: v for k, v in base.items() if k not in GRID_FIELDS}


def _valid(model: Transformer, a: dict) -> np.ndarray:
    """Plan-level rules beyond the layout (Plan.__post_init__ and check_plan), and no exact repeats."""
    tp, pp, cp, dp, ep, mb = a["tp"], a["pp"], a["cp"], a["dp"], a["ep"], a["micro_batch_size"]
    gb, sched, vpp, z, sp = a["global_batch_size"], a["schedule"], a["vpp"], a["zero_stage"], a["sp"]
    per_step = mb * dp
    m = gb // per_step
    ok = (gb % per_step == 0)
    ok = ok & ((sched != Schedule.INTERLEAVED) | ((pp > 1) & (m % pp == 0)))
    ok = ok & (pp * vpp <= model.num_layers)
    ok = ok & ((pp > 1) | (sched == Schedule.ONE_F_ONE_B))           # schedules coincide at pp = 1
    ok = ok & (~sp | ((tp > 1) & (model.seq_len % (tp * cp) == 0)))  # sp is a no-op at tp = 1
    ok = ok & ((z == 0) | (dp * cp > 1))                               # ZeRO is a no-op on one replica
    ok = ok & ((dp * cp) % ep == 0)
    ok = ok & ~(a["flash"] & (a["recompute"] == Recompute.SELECTIVE))  # flash already drops what selective would
    ok = ok & ((model.num_experts % ep == 0) if model.is_moe else (ep == 1))
    return ok


# ----------------------------------------------------------------------------------- one task

@dataclass(frozen=True, slots=True)
class _Task:
    model: Transformer
    cluster: Cluster
    training: Training
    space: Space
    layouts: np.ndarray
    objective: str
    keep: int
    max_memory_fraction: float
    task_id: int


def run_totals(model: Transformer, cluster: Cluster, training: Training, step_time_s, utilisation, tp, pp, dp, cp,
               zero_stage) -> dict:
    """Run figures (time_to_train_s, gpu_hours, cost_usd, energy_kwh; arrays ok) for ``training.tokens``
    tokens (one iteration's when None): failure-free, or with failures and checkpoints when
    ``training.failures`` (models.cost.run_figures_with_failures; adds goodput, expected_failures).
    ``utilisation`` drives GPU power: the compute share of the step (compute_s / step_time_s), as
    ``clustersim estimate`` and ``train-time`` use."""
    tokens = training.tokens or training.global_batch_size * model.seq_len
    args = (step_time_s, cluster.num_gpus, tokens, training.global_batch_size, model.seq_len, utilisation)
    base = run_figures(cluster, *args)
    if not training.failures:
        return base
    from models import cost
    with_failures, ckpt_costs = (getattr(cost, n, None) for n in ("run_figures_with_failures", "checkpoint_costs"))
    if with_failures is None or ckpt_costs is None:
        raise ValueError("training.failures: models.cost has no failure model in this build")
    r = with_failures(cluster, *args, ckpt_costs(cluster, model.num_params, tp, pp, dp, cp, zero_stage))
    return {k: r[k] for k in ("time_to_train_s", "gpu_hours", "cost_usd", "energy_kwh")} | {
        "failure_free_time_to_train_s": base["time_to_train_s"], "goodput": r["goodput"],
        "expected_failures": r["expected_failures"], "checkpoint_interval_s": r["checkpoint_interval_s"]}


def _objective(t: _Task, r: dict, a: dict, shape) -> tuple[np.ndarray, np.ndarray]:
    """(objective, Pareto key) arrays; the key is the time to train (the step time when it ranks the same)."""
    step = np.broadcast_to(r["step_time_s"], shape)
    if t.objective == "time" and not t.training.failures:
        return step, step
    util = np.broadcast_to(r["compute_s"] / r["step_time_s"], shape)
    figs = run_totals(t.model, t.cluster, t.training, step, util,
                      *(a[k] for k in ("tp", "pp", "dp", "cp", "zero_stage")))
    ttt = np.broadcast_to(figs["time_to_train_s"], shape)
    obj = step if t.objective == "time" else np.broadcast_to(figs[OBJECTIVES[t.objective]], shape)
    return obj, ttt


def _eval_task(t: _Task) -> dict:
    """Evaluate one chunk of layouts; return the best ``keep`` plans, the per-chunk fastest, and counts."""
    a = _grid_arrays(t.layouts, t.space, t.training)
    with np.errstate(divide="ignore", invalid="ignore"):  # invalid points (0 micro-batches) are masked below
        r = estimate_arrays(t.model, t.cluster, t.training.dtype, **a)
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
    valid = np.broadcast_to(_valid(t.model, a), shape)
    fits = valid & np.broadcast_to(r["peak_memory_bytes"] <= t.max_memory_fraction * t.cluster.gpu.hbm_bytes, shape)
    obj, key = _objective(t, r, a, shape)
    score = np.where(fits, obj, np.inf).ravel()
    k = min(t.keep, score.size)
    # plans tied with the k-th best are all kept (and so are ties for the fastest): how the grid is cut
    # into chunks must not decide between equal plans; the merge orders ties by the plan's fields
    idx = np.flatnonzero(score <= np.partition(score, k - 1)[k - 1]) if k < score.size else np.arange(score.size)
    idx = idx[np.isfinite(score[idx])]
    fastest = np.where(fits, key, np.inf).ravel()
    best_step = int(np.argmin(fastest))
    fastest_ties = np.flatnonzero(fastest == fastest[best_step]) if np.isfinite(fastest[best_step]) else idx[:0]
    idx = np.union1d(idx, fastest_ties)
    return {"task_id": t.task_id, "num_nodes": t.cluster.num_nodes, "grid_points": int(np.prod(shape)),
            "valid": int(valid.sum()), "fit": int(fits.sum()), "points": _decode(t, a, shape, idx),
            "score": score[idx], "pareto_key": key.ravel()[idx], "flat_index": idx,
            "is_fastest": np.isin(idx, fastest_ties)}


def _decode(t: _Task, a: dict, shape, idx: np.ndarray) -> dict:
    return {k: np.broadcast_to(a[k], shape).ravel()[idx] for k in GRID_FIELDS}


# ----------------------------------------------------------------------------------- backends

def _run_tasks(tasks: list, backend: str, workers: int | None) -> list[dict]:
    if backend == "serial" or len(tasks) <= 1:
        return [_eval_task(t) for t in tasks]
    if backend == "process":
        from concurrent.futures import ProcessPoolExecutor
        n = workers or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=min(n, len(tasks))) as ex:
            return list(ex.map(_eval_task, tasks))
    if backend == "ray":
        try:
            from ray.util.multiprocessing import Pool
        except ImportError:
            raise ValueError("backend: ray is not installed; pip install 'clustersim[ray]' or use "
                             "--backend process") from None
        with Pool(processes=workers) as pool:
            return list(pool.map(_eval_task, tasks))
    raise ValueError(f"backend: {backend!r} unknown; choose one of {', '.join(BACKENDS)}")


# ----------------------------------------------------------------------------------- search

@dataclass(frozen=True)
class SearchResult:
    """Ranked plans (best first) with every figure of ``estimate`` and the run figures."""
    plans: pd.DataFrame                   # the top plans, best first; column "rank" from 1
    pareto: pd.DataFrame                  # time-to-train vs cost front, fastest first
    why: str                              # why the top plan beats the runner-up
    objective: str
    plans_evaluated: int                  # valid plans scored by the analytical model
    grid_points: int                      # grid points before validity rules
    plans_fit: int                        # valid plans that fit in memory
    elapsed_s: float
    records: list = field(default_factory=list)   # one dict per top plan: estimate --json keys + plan fields
    notes: tuple = ()

    def to_json(self) -> dict:
        return {"plans": self.records, "plans_evaluated": self.plans_evaluated, "grid_points": self.grid_points,
                "plans_fit": self.plans_fit, "elapsed_s": self.elapsed_s, "objective": self.objective,
                "why": self.why, "pareto": self.pareto.to_dict(orient="records"), "notes": list(self.notes)}


def _tasks(model, cluster, training, c: Constraints, objective, keep, chunk_points=CHUNK_POINTS) -> list[_Task]:
    space = _space(model, c)
    tasks = []
    for nodes in (c.num_nodes or (cluster.num_nodes,)):
        cl = dataclasses.replace(cluster, num_nodes=nodes)
        lay = layouts(model, cl, training, c)
        per = max(1, chunk_points // space.points_per_layout)
        for i in range(0, len(lay), per):
            tasks.append(_Task(model, cl, training, space, lay[i:i + per], objective, keep, c.max_memory_fraction,
                               len(tasks)))
    return tasks


def search(model: Transformer, cluster: Cluster, training: Training, constraints: Constraints | None = None,
           objective: str = "time", top: int = 10, backend: str = "auto", workers: int | None = None,
           simulate_top: int = 0, chunk_points: int = CHUNK_POINTS) -> SearchResult:
    """Every valid plan for ``model`` on ``cluster``, ranked by ``objective``; the ``top`` best with full estimates.

    ``objective``: time | time-to-train | cost | energy. ``backend``: auto | serial | process | ray.
    ``simulate_top``: re-rank that many of the best with the discrete-event simulator when it is installed.
    ``chunk_points``: grid points per task (a task is a group of whole layouts).

    >>> from models.hardware import make_cluster
    >>> from models.transformer import get_model
    >>> r = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32), top=3)
    >>> len(r.plans), r.plans_evaluated > 100
    (3, True)
    """
    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: {objective!r} unknown; choose one of {', '.join(OBJECTIVES)}")
    if training.global_batch_size is None:
        raise ValueError("global_batch_size: required for search (sequences per iteration, --global-batch)")
    if top < 1:
        raise ValueError(f"top: must be >= 1, got {top}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} unknown; choose one of {', '.join(BACKENDS)}")
    c = constraints or Constraints()
    tasks = _tasks(model, cluster, training, c, objective, keep=top + 1, chunk_points=chunk_points)
    if backend == "auto":
        points = sum(len(t.layouts) * t.space.points_per_layout for t in tasks)
        backend = "process" if points > PROCESS_THRESHOLD_POINTS and (os.cpu_count() or 1) > 1 else "serial"
    results = _run_tasks(tasks, backend, workers)
    notes = []
    cand = _merge(results)
    fit = sum(r["fit"] for r in results)
    if not len(cand):
        raise ValueError(f"search: none of the {sum(r['valid'] for r in results)} valid plans fits in memory "
                         f"(max_memory_fraction={c.max_memory_fraction}); add GPUs, or allow zero_stage 3 / "
                         "full recompute / larger tp, pp")
    ranked = cand.sort_values(["score", *TIE_ORDER], kind="stable").head(top)
    records = [_record(model, cluster, training, row) for row in ranked.itertuples()]
    if simulate_top:
        records, note = _simulate_rerank(model, cluster, records, simulate_top)
        notes += [note] if note else []
    plans = pd.DataFrame([_flat(rec) for rec in records])
    plans.insert(0, "rank", range(1, len(plans) + 1))
    pareto = _pareto(model, cluster, training, cand)
    return SearchResult(plans=plans, pareto=pareto, why=explain(records), objective=objective,
                        plans_evaluated=sum(r["valid"] for r in results),
                        grid_points=sum(r["grid_points"] for r in results), plans_fit=fit,
                        elapsed_s=time.perf_counter() - t0, records=records, notes=tuple(notes))


def _merge(results: list[dict]) -> pd.DataFrame:
    frames = []
    for r in results:
        if not len(r["score"]):
            continue
        d = pd.DataFrame(r["points"])
        d["score"], d["pareto_key"], d["flat_index"] = r["score"], r["pareto_key"], r["flat_index"]
        d["task_id"], d["num_nodes"] = r["task_id"], r["num_nodes"]
        d["is_fastest"] = r["is_fastest"]
        frames.append(d)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _plan(training: Training, row) -> Plan:
    fields = {f: getattr(row, f) for f in GRID_FIELDS}
    fields = {f: (bool(v) if isinstance(v, (bool, np.bool_)) else int(v)) for f, v in fields.items()}
    fields["placement"] = PLACEMENTS[fields["placement"]]
    return Plan(**fields, **training.plan_kwargs())


def plan_fields(plan: Plan, num_nodes: int) -> dict:
    """A plan's fields as plain JSON values (enums by name)."""
    d = {f: getattr(plan, f) for f in PLAN_COLUMNS if f != "num_nodes"}
    d["zero_stage"] = int(plan.zero_stage)
    d["recompute"] = plan.recompute.name.lower()
    d["schedule"] = next(k for k, v in SCHEDULE_NAMES.items() if v == plan.schedule)
    return {"num_nodes": num_nodes, **d}


def evaluate_plan(model: Transformer, cluster: Cluster, plan: Plan, tokens: float | None = None,
                  failures: bool = False) -> dict:
    """``estimate --json`` keys, plan fields and run figures (time to train, GPU-hours, cost, energy) of one plan."""
    est = estimate(model, cluster, plan)
    rec = est.as_dict() | plan_fields(plan, cluster.num_nodes)
    tr = Training(global_batch_size=plan.global_batch_size, tokens=tokens, failures=failures, dtype=plan.dtype)
    figs = run_totals(model, cluster, tr, est.step_time_s, est.compute_s / est.step_time_s, plan.tp, plan.pp, plan.dp, plan.cp,
                      int(plan.zero_stage))
    rec.update({k: float(v) for k, v in figs.items()})
    rec["tokens"] = float(tokens or plan.global_batch_size * model.seq_len)
    rec["price_usd_per_gpu_hour"] = cluster.price_per_gpu_hour_usd
    return rec


def _record(model, cluster, training, row) -> dict:
    cl = dataclasses.replace(cluster, num_nodes=int(row.num_nodes))
    return evaluate_plan(model, cl, _plan(training, row), training.tokens, training.failures)


def _flat(rec: dict) -> dict:
    """One table row: nested breakdowns flattened with '/' keys (STYLE.md)."""
    out = {}
    for k, v in rec.items():
        if k == "exposed_comm_by_kind_s":
            out.update({f"exposed_{kind}_comm_s": x for kind, x in v.items()})
        elif k == "memory":
            out.update({f"memory/{m}": x for m, x in v.items()})
        elif k == "memory_by_stage":
            continue
        elif k == "warnings":
            out[k] = "; ".join(v)
        else:
            out[k] = v
    return out


def _pareto(model, cluster, training, cand: pd.DataFrame) -> pd.DataFrame:
    """Time-to-train vs cost front over the fastest plan of every chunk (exact: see module docstring)."""
    fastest = cand[cand["is_fastest"]].sort_values(["pareto_key", *TIE_ORDER], kind="stable")
    best_per_nodes = fastest.groupby("num_nodes", sort=True).head(1)
    rows = [_flat(_record(model, cluster, training, r)) for r in best_per_nodes.itertuples()]
    df = pd.DataFrame(rows).sort_values(["time_to_train_s", "cost_usd"], kind="stable")
    front = df[df["cost_usd"] < df["cost_usd"].cummin().shift(fill_value=np.inf)]
    cols = ["plan_id", "num_nodes", "num_gpus", "step_time_s", "time_to_train_s", "cost_usd", "energy_kwh", "mfu"]
    return front[cols].reset_index(drop=True)


def explain(records: list[dict]) -> str:
    """Which term of the iteration-time breakdown makes the top plan beat the runner-up."""
    if len(records) < 2:
        return "only one plan fits: it wins by default" if records else "no plan fits"
    a, b = _flat(records[0]), _flat(records[1])
    diffs = {k: b[k] - a[k] for k in BREAKDOWN_TERMS}
    key = max(diffs, key=lambda k: diffs[k])
    changed = [f"{f} {_show(b[f])}->{_show(a[f])}" for f in PLAN_COLUMNS if a[f] != b[f]]
    gap = (b["step_time_s"] - a["step_time_s"]) / b["step_time_s"]
    if abs(gap) < 1e-9:
        text = f"{a['plan_id']} ties with {b['plan_id']}: step {a['step_time_s']:.4g} s for both."
    else:
        text = (f"{a['plan_id']} beats {b['plan_id']}: step {a['step_time_s']:.4g} s vs {b['step_time_s']:.4g} s "
                f"({gap:.1%} faster). Deciding term: {BREAKDOWN_TERMS[key]}, {a[key]:.4g} s vs {b[key]:.4g} s "
                f"({diffs[key]:.3g} s less).")
    small = 1e-4 * b["step_time_s"]
    offsets = [f"{BREAKDOWN_TERMS[k]} {-d:+.3g} s" for k, d in diffs.items() if d < 0 and abs(d) > small]
    if offsets:
        text += " It pays back: " + ", ".join(offsets) + "."
    if a["num_gpus"] != b["num_gpus"]:
        text += f" GPUs: {a['num_gpus']} vs {b['num_gpus']} (cost ${a['cost_usd']:.4g} vs ${b['cost_usd']:.4g})."
    if changed:
        text += " Plans differ in: " + ", ".join(changed) + "."
    return text


def _show(v):
    return str(v).lower() if isinstance(v, bool) else str(v)


def _simulate_rerank(model, cluster, records: list[dict], k: int) -> tuple[list[dict], str | None]:
    """Simulate the best ``k`` plans and re-order them by simulated step time (skipped if no simulator)."""
    try:
        from simulator.des.simulate import simulate
    except ImportError:
        return records, "simulate_top: simulator.des.simulate is not available; kept the analytical ranking"
    head = records[:k]
    for rec in head:
        cl = dataclasses.replace(cluster, num_nodes=rec["num_nodes"])
        res = simulate(model, cl, _plan_from_record(rec))
        rec["sim_step_time_s"] = _sim_step(res)
    head.sort(key=lambda r: (r["sim_step_time_s"] is None, r["sim_step_time_s"] or 0.0))
    return head + records[k:], None


def _sim_step(res) -> float | None:
    for name in ("step_time_s", "iteration_time_s", "makespan_s"):
        v = getattr(res, name, None)
        if v is not None:
            return float(v)
    return None


def _plan_from_record(rec: dict) -> Plan:
    return Plan(**{f: rec[f] for f in PLAN_COLUMNS if f != "num_nodes"})


__all__ = ["run_totals", "search", "SearchResult", "Training", "Constraints", "layouts", "explain", "evaluate_plan",
           "plan_fields", "OBJECTIVES", "BACKENDS", "ZeroStage", "Recompute"]
