"""The planner: every valid parallel plan for a model on a cluster, scored at once, ranked.

The grid and its evaluation are in :mod:`simulator.planning.grid` (layouts crossed with the
declared search axes, scored by :func:`models.estimate.estimate_arrays`: one code path with
``estimate``). Results do not depend on the backend: chunks and tie-breaks are fixed before
they run, and equal scores are ordered by the plan's own fields.

Ranking. Plans that do not fit in memory are dropped; the rest are ranked by the objective
(``time``: iteration time; ``time-to-train``; ``cost``: dollars; ``energy``: kWh, the
failure-free figures of :func:`models.cost.run_figures` for ``training.tokens``, by default a
Chinchilla budget of 20 tokens per parameter, as ``estimate``). For one GPU count, cost is
proportional to time, so the time-vs-cost Pareto front has at most one plan per GPU count;
searching several node counts (``Constraints.num_nodes``) gives a real front. Rank placement
(which dimension sits on NVLink) is a search axis like the others.

Rankings do not oversell. Plans whose figures are identical (same step time, memory and every
breakdown term to ``IDENTICAL_RTOL``: dp32 mb1 = dp16 cp2 mb2, or two placements of one layout)
are one row, with ``collapsed`` saying how many others it stands for. Plans whose objective is
within ``RANKING_UNCERTAINTY`` of the best share rank 1 (``tie``): the model cannot tell them apart.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from models.cost import default_token_budget, is_finetuning
from models.estimate import estimate
from models.fields import options
from models.hardware import Cluster
from models.inputs import Training
from models.plan import (
    PLACEMENTS,
    Plan,
    Recompute,
    ZeroStage,
    user_value,
)
from models.transformer import Transformer
from simulator.planning.bounds import check_search_candidates, check_search_points
from simulator.planning.grid import (
    BACKENDS,
    CHOICE_AXES,
    CHUNK_POINTS,
    GRID_FIELDS,
    IDENTICAL_RTOL,
    OBJECTIVES,
    PROCESS_MIN_CORES,
    PROCESS_THRESHOLD_POINTS,
    Constraints,
    Task,
    default_tokens,
    framework_constraints,
    group_identical,
    identity_matrix,
    layout_groups,
    layouts,
    run_tasks,
    run_totals,
    search_space,
    tokens_rule,
)

# Equal scores are ordered by the plan itself (fewer nodes, then smaller tp, pp, ...), never by chunk.
TIE_ORDER = ("num_nodes", *GRID_FIELDS)
# Terms of the iteration-time breakdown compared to explain a ranking (StepEstimate fields).
BREAKDOWN_TERMS = {"compute_s": "compute", "bubble_s": "pipeline bubble",
                   "exposed_tp_comm_s": "exposed TP communication", "exposed_cp_comm_s": "exposed CP communication",
                   "exposed_ep_comm_s": "exposed EP all-to-all", "exposed_pp_comm_s": "exposed pipeline send/recv",
                   "exposed_dp_comm_s": "exposed DP/ZeRO communication"}
PLAN_COLUMNS = ("num_nodes", *options(Plan))
# The model's own stated uncertainty: the median |error| of the predicted iteration time over the
# high-reliability published runs of the dev set (docs/dev_set.md, "high records": 89 runs, median
# |error| 6.4%). Plans whose objective is within this fraction of the best are ties, not ranks.
RANKING_UNCERTAINTY = 0.064


# ----------------------------------------------------------------------------------- search

@dataclass(frozen=True)
class SearchResult:
    """Ranked plans (best first) with every figure of ``estimate`` and the run figures."""
    plans: pd.DataFrame                   # the top distinct plans, best first; "rank" from 1 (ties share 1),
                                          # "tie", "collapsed" (identical plans this row stands for)
    pareto: pd.DataFrame                  # time-to-train vs cost front, fastest first
    by_nodes: pd.DataFrame                # the fastest plan of each node count searched, "on_front" marks the front
    why: str                              # why the top plan beats the runner-up
    objective: str
    plans_evaluated: int                  # valid plans scored by the analytical model
    grid_points: int                      # grid points before validity rules
    plans_fit: int                        # valid plans that fit in memory
    elapsed_s: float
    records: list = field(default_factory=list)   # one dict per top plan: estimate --json keys + plan fields
    notes: tuple = ()
    plans_collapsed: int = 0              # plans shown as another row because their figures are identical
    tokens: float = 0.0                   # tokens the run figures are for
    tokens_rule: str = ""                 # how that budget was chosen (given, or Chinchilla's default)
    uncertainty: float = RANKING_UNCERTAINTY   # ties: objective within this fraction of the best
    node_counts: tuple = ()               # node counts searched

    def to_json(self) -> dict:
        return {"plans": self.records, "plans_evaluated": self.plans_evaluated, "grid_points": self.grid_points,
                "plans_fit": self.plans_fit, "plans_collapsed": self.plans_collapsed, "elapsed_s": self.elapsed_s,
                "objective": self.objective, "tokens": self.tokens, "tokens_rule": self.tokens_rule,
                "tie_tolerance": self.uncertainty, "node_counts": list(self.node_counts), "why": self.why,
                "pareto": self.pareto.to_dict(orient="records"),
                "best_by_nodes": self.by_nodes.to_dict(orient="records"), "notes": list(self.notes)}


def _search_grid(model, cluster, training, c: Constraints) -> tuple:
    """(constraints as searched, their Space, [(cluster of each node count, its valid layouts)])."""
    c = framework_constraints(c, training)  # only what the framework can run (models/frameworks.py)
    # a training-section axis (finetune, optimizer, offload) not searched keeps the run's own value
    kw = training.plan_kwargs()
    c = dataclasses.replace(c, **{a: (kw[a],) for a in CHOICE_AXES if getattr(c, a) is None and kw.get(a) is not None})
    clusters = [dataclasses.replace(cluster, num_nodes=nodes) for nodes in (c.num_nodes or (cluster.num_nodes,))]
    return c, search_space(model, c), [(cl, layouts(model, cl, training, c)) for cl in clusters]


def _tasks(model, cluster, training, c: Constraints, objective, keep, chunk_points=CHUNK_POINTS) -> list[Task]:
    """The tasks of a search: chunks of layouts that share a grid (grid.layout_groups)."""
    c, space, lays = _search_grid(model, cluster, training, c)
    tasks = []
    for cl, lay in lays:
        for sub, group in layout_groups(model, space, lay, training, chunk_points):
            per = max(1, chunk_points // sub.points_per_layout)
            for i in range(0, len(group), per):
                tasks.append(Task(model, cl, training, sub, group[i:i + per], objective, keep, c.max_memory_fraction,
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
    # one token budget for every plan: a fine-tuning run (the method or optimizer, given or searched) trains on
    # a stated dataset, not Chinchilla's pre-training budget (models.cost.default_token_budget)
    finetuning = is_finetuning(training.finetune, training.optimizer) or any(
        is_finetuning(f, o) for f in (c.finetune or ()) for o in (c.optimizer or (training.optimizer,)))
    budget_rule = tokens_rule(training, model, finetuning)
    if finetuning and not training.tokens:
        training = dataclasses.replace(training, tokens=default_tokens(model, training, True))
    check_search_candidates(model, cluster, c)     # bounded work, refused before any of it
    searched, space, lays = _search_grid(model, cluster, training, c)   # layouts are cached: _tasks reuses them
    grid_points = check_search_points(sum(len(lay) for _, lay in lays), space, model, cluster, training, searched)
    tasks = _tasks(model, cluster, training, c, objective, keep=top + 1, chunk_points=chunk_points)
    if backend == "auto":
        points = sum(len(t.layouts) * t.space.points_per_layout for t in tasks)
        backend = "process" if (points > PROCESS_THRESHOLD_POINTS
                                 and (os.cpu_count() or 1) >= PROCESS_MIN_CORES) else "serial"
    results = run_tasks(tasks, backend, workers)
    notes = []
    cand = _merge(results)
    fit = sum(r["fit"] for r in results)
    if not len(cand):
        raise ValueError(f"search: none of the {sum(r['valid'] for r in results)} valid plans fits in memory "
                         f"(max_memory_fraction={c.max_memory_fraction}); add GPUs, or allow zero_stage 3 / "
                         "full recompute / larger tp, pp")
    ranked, collapsed = _collapse(training, cand.sort_values(["score", *TIE_ORDER], kind="stable"), top)
    records = [_record(model, cluster, training, row) | {"collapsed": len(ids), "collapsed_plan_ids": ids}
               for row, ids in zip(_rows(ranked), collapsed)]
    if simulate_top:
        records, note = _simulate_rerank(model, cluster, records, simulate_top)
        notes += [note] if note else []
    rank_ties(records, OBJECTIVES[objective])
    plans = pd.DataFrame([_flat(rec) for rec in records])
    plans = plans[["rank", "tie", "collapsed", *[c for c in plans.columns if c not in ("rank", "tie", "collapsed")]]]
    by_nodes = _pareto(model, cluster, training, cand)
    pareto = by_nodes[by_nodes["on_front"]].drop(columns="on_front").reset_index(drop=True)
    return SearchResult(plans=plans, pareto=pareto, by_nodes=by_nodes, why=explain(records), objective=objective,
                        plans_evaluated=sum(r["valid"] for r in results),
                        grid_points=grid_points, plans_fit=fit,
                        elapsed_s=time.perf_counter() - t0, records=records, notes=tuple(notes),
                        plans_collapsed=int(sum(len(ids) for ids in collapsed)),
                        tokens=default_tokens(model, training), tokens_rule=budget_rule,
                        node_counts=tuple(c.num_nodes or (cluster.num_nodes,)))


def _collapse(training: Training, cand: pd.DataFrame, top: int) -> tuple[pd.DataFrame, list[list[str]]]:
    """The ``top`` best distinct plans of ``cand`` (sorted best first) and, for each, the plan ids of the
    others whose figures are identical (IDENTICAL_RTOL); the representative is the first in TIE_ORDER."""
    fig = {k[len("fig:"):]: cand[k].to_numpy() for k in cand.columns if k.startswith("fig:")}
    rows = np.column_stack([identity_matrix(fig), cand["num_nodes"].to_numpy(dtype=float) / IDENTICAL_RTOL])
    labels = group_identical(rows)
    groups = [np.flatnonzero(labels == g) for g in list(dict.fromkeys(labels.tolist()))[:top]]
    row = _rows(cand, GRID_FIELDS).__getitem__
    others = []
    for members in groups:
        if len(members) == 1:
            others.append([])
            continue
        own = _plan(training, row(members[0])).plan_id
        ids = (_plan(training, row(i)).plan_id for i in members[1:])
        # grid points that are one plan under two spellings (e.g. a shard group as large as the whole
        # data-parallel group) share the id: counted once, never as a copy of their own row
        others.append([i for i in dict.fromkeys(ids) if i != own])
    return cand.iloc[[int(m[0]) for m in groups]], others


def _rows(df: pd.DataFrame, columns=None) -> list:
    """The rows of ``df`` as objects with one attribute per column, read from whole columns (pandas'
    itertuples and iloc cost ~1 ms a row on the planner's 37-column tables)."""
    cols = {c: df[c].to_numpy() for c in (columns or df.columns)}
    return [SimpleNamespace(**{c: v[i] for c, v in cols.items()}) for i in range(len(df))]


def rank_ties(records: list[dict], key: str, uncertainty: float = RANKING_UNCERTAINTY) -> None:
    """Set "rank" and "tie" on records sorted best first: plans whose ``key`` is within ``uncertainty``
    (relative) of the best share rank 1 and are ties (when more than one); the others rank by position.

    >>> recs = [{"t": 1.0}, {"t": 1.05}, {"t": 1.2}]
    >>> rank_ties(recs, "t"); [(r["rank"], r["tie"]) for r in recs]
    [(1, True), (1, True), (3, False)]
    """
    if not records:
        return
    best = records[0][key]
    within = [abs(r[key] - best) <= uncertainty * abs(best) for r in records]
    shared = sum(within) > 1
    for i, (rec, w) in enumerate(zip(records, within)):
        rec["rank"] = 1 if w else i + 1
        rec["tie"] = bool(w and shared)


def _merge(results: list[dict]) -> pd.DataFrame:
    """The kept points of every task as one table (built once from whole columns: a frame per task with
    columns added one by one cost ~35 ms of a 405B search)."""
    results = [r for r in results if len(r["score"])]
    if not results:
        return pd.DataFrame()
    cols = {k: np.concatenate([r["points"][k] for r in results]) for k in results[0]["points"]}
    cols |= {k: np.concatenate([r[k] for r in results]) for k in ("score", "pareto_key", "flat_index")}
    cols |= {f"fig:{k}": np.concatenate([r["figures"][k] for r in results]) for k in results[0]["figures"]}
    cols |= {k: np.concatenate([np.full(len(r["score"]), r[k]) for r in results]) for k in ("task_id", "num_nodes")}
    cols["is_fastest"] = np.concatenate([r["is_fastest"] for r in results])
    return pd.DataFrame(cols)


def _plan(training: Training, row) -> Plan:
    fields = {f: getattr(row, f) for f in GRID_FIELDS}
    fields = {f: (bool(v) if isinstance(v, (bool, np.bool_)) else str(v) if isinstance(v, str) else int(v))
              for f, v in fields.items()}   # str: a training field searched by name (finetune, optimizer, offload)
    fields["placement"] = PLACEMENTS[fields["placement"]]
    return Plan(**{**training.plan_kwargs(), **fields})


def plan_fields(plan: Plan, num_nodes: int) -> dict:
    """A plan's fields as plain JSON values (enums by name)."""
    return {"num_nodes": num_nodes, **{f: user_value(getattr(plan, f)) for f in PLAN_COLUMNS if f != "num_nodes"}}


def evaluate_plan(model: Transformer, cluster: Cluster, plan: Plan, tokens: float | None = None,
                  failures: bool = False) -> dict:
    """``estimate --json`` keys, plan fields and run figures (time to train, GPU-hours, cost, energy) of one plan;
    the run figures are NaN when the plan does not fit in memory."""
    est = estimate(model, cluster, plan)
    rec = est.as_dict() | plan_fields(plan, cluster.num_nodes)
    if not tokens and is_finetuning(plan.finetune, plan.optimizer):   # a fine-tuning plan: a dataset's budget
        tokens = default_token_budget(model, None, True)[0]
    tr = Training(global_batch_size=plan.global_batch_size, tokens=tokens, failures=failures, dtype=plan.dtype)
    figs = run_totals(model, cluster, tr, est.step_time_s, est.compute_s / est.step_time_s, plan.tp, plan.pp, plan.dp, plan.cp,
                      int(plan.zero_stage))
    # a plan that does not fit never runs: no time to train, no cost, no energy (its peak memory vs HBM says
    # what it would need)
    rec.update({k: float(v) if est.fits else float("nan") for k, v in figs.items()})
    rec["tokens"] = default_tokens(model, tr)
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
        elif k in ("warnings", "collapsed_plan_ids"):
            out[k] = "; ".join(v)
        else:
            out[k] = v
    return out


def _pareto(model, cluster, training, cand: pd.DataFrame) -> pd.DataFrame:
    """The fastest plan of every node count (exact: see module docstring), fastest first, with ``on_front``:
    True for the time-to-train vs cost Pareto front (no other point is as fast and cheaper)."""
    fastest = cand[cand["is_fastest"]].sort_values(["pareto_key", *TIE_ORDER], kind="stable")
    best_per_nodes = fastest.groupby("num_nodes", sort=True).head(1)
    rows = [_flat(_record(model, cluster, training, r)) for r in _rows(best_per_nodes)]
    df = pd.DataFrame(rows).sort_values(["time_to_train_s", "cost_usd"], kind="stable")
    df["on_front"] = df["cost_usd"] < df["cost_usd"].cummin().shift(fill_value=np.inf)
    cols = ["plan_id", "num_nodes", "num_gpus", "step_time_s", "time_to_train_s", "cost_usd", "energy_kwh", "mfu",
            "on_front"]
    return df[cols].reset_index(drop=True)


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
    elif b.get("tie"):
        text = (f"{a['plan_id']} and {b['plan_id']} tie: step {a['step_time_s']:.4g} s vs {b['step_time_s']:.4g} s "
                f"({gap:.2%} apart, within the model's uncertainty of {RANKING_UNCERTAINTY:.1%}, the dev set's median "
                f"|error|). The model's difference: {BREAKDOWN_TERMS[key]}, {a[key]:.4g} s vs {b[key]:.4g} s.")
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
    """Simulate the best ``k`` plans and re-order them by simulated step time."""
    from simulator.des.simulate import simulate  # loaded only when asked for
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
