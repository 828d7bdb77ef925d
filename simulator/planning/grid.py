"""The planner's grid: every valid plan of a model on a cluster as broadcast numpy arrays,
scored in chunks (tasks) by the analytical model.

A *layout* fixes the degrees that must multiply to the GPU count (``dp * tp * pp * cp``,
checked with :func:`models.plan.check_plan`, the same rules as ``estimate``) and the rank
placement; every layout is crossed with the declared search axes (models/plan.py fields whose
metadata has ``search``), one broadcast axis each, (schedule, vpp) as one axis of pairs. The
grid goes to :func:`models.estimate.estimate_arrays` in one call per task: a term that depends
on the layout only is computed once per layout. Tasks run serially, in a process pool or on Ray.
"""


from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from models.cost import CHINCHILLA_TOKENS_PER_PARAM, default_token_budget, is_finetuning, run_figures
from models.estimate import estimate_arrays, placement_strides, plan_arrays
from models.fields import check_value, option
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
# Grid points per task: large enough to amortise numpy call overhead, small enough to stay in cache-friendly
# memory (estimate_arrays keeps ~40 full-size float64 temporaries: 250k points ~ 80 MB).
# 100k points: the same CPU time as 250k on a 3.6M-point 405B search (1.05 vs 1.06 s user, 2-core
# Xeon, 2026-11-30) and ~20 MiB less peak RSS (136 vs 157 MiB).
CHUNK_POINTS = 100_000
# One estimate_arrays call costs about as much as scoring this many more grid points (405B search, 2-core
# Xeon, 2026-11-30: ~3.4 ms per call, ~0.3 us per point): layouts whose grids (layout_groups) differ by fewer
# points are scored in one grid (pairwise, greedy; above MERGE_MAX_GROUPS groups, all are one grid).
CALL_POINTS = 10_000
MERGE_MAX_GROUPS = 256
# Sweeps above this many grid points use the process pool under backend="auto".
PROCESS_THRESHOLD_POINTS = 2_000_000
# ... and only with this many cores: on 2 cores the pool is no faster than serial (issue 19 measurement).
PROCESS_MIN_CORES = 4
# Two plans are the same plan when every figure below agrees to this relative tolerance (e.g. dp32 mb1 and
# dp16 cp2 mb2 of Llama-3 8B: the same step time, memory and breakdown); the planner shows them as one row.
IDENTICAL_RTOL = 1e-9
# The figures compared: step time and peak memory (relative), every time term as a share of the step and
# every memory term as a share of the peak (so a term of 0 and one of 1e-15 s agree).
IDENTITY_TIME_TERMS = ("compute_s", "bubble_s", "optimizer_s", "exposed_tp_comm_s", "exposed_cp_comm_s",
                       "exposed_ep_comm_s", "exposed_pp_comm_s", "exposed_dp_comm_s")
IDENTITY_MEMORY_TERMS = ("memory/params_bytes", "memory/grads_bytes", "memory/optimizer_bytes",
                         "memory/activations_bytes", "memory/other_bytes")


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


def framework_constraints(c, training):
    """``c`` narrowed to what ``training.framework`` can run (models/frameworks.py limits that hold for
    every layout); ValueError naming the field and the reason when the user's own values leave nothing."""
    from models.frameworks import allowed_values, get_profile
    fw = getattr(training, "framework", None)
    if not fw:
        return c
    over = {}
    for name in SEARCH_AXES:
        allowed = allowed_values(fw, name)
        if allowed is None:
            continue
        codes = _constraint_values(name, allowed)
        cur = getattr(c, name)
        keep = codes if cur is None else tuple(v for v in cur if v in codes)
        if not keep:
            lim = get_profile(fw).limits[name][0]
            raise ValueError(f"constraints.{name}: {fw} cannot run {', '.join(map(str, cur))} ({lim.reason})")
        over[name] = keep
    return dataclasses.replace(c, **over) if over else c


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
    """Divisors of ``n``, ascending.

    >>> _divisors(12)
    [1, 2, 3, 4, 6, 12]
    """
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


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
    if name == "expert_tp":   # MoE: the experts on the tensor-parallel ranks (0) or folded to expert TP 1
        return (0, 1) if model.is_moe else (0,)
    values = option(Plan, name).search
    return _constraint_values(name, values)


def search_space(model: Transformer, c: Constraints) -> Space:
    scheds = c.schedule or tuple(int(s) for s in Schedule)
    vpps = c.vpp or option(Plan, "vpp").search
    sv = tuple((s, v) for s in scheds for v in vpps if (s == Schedule.INTERLEAVED) == (v > 1))
    if not sv:
        raise ValueError("constraints.vpp: no (schedule, vpp) pair is possible: vpp > 1 needs the interleaved "
                         "schedule and interleaved needs vpp > 1")
    return Space(axes=tuple((a, getattr(c, a) or _axis_default(model, a)) for a in CHOICE_AXES), sched_vpp=sv)


def layouts(model: Transformer, cluster: Cluster, training: Training, c: Constraints) -> np.ndarray:
    """Valid (tp, pp, cp, dp, placement code) layouts for the cluster's GPU count, an int array of shape (n, 5),
    read-only: cached, as the bounds check and the search (or a scenario's check and its run) both ask."""
    return _layouts(model, cluster, training, c)


@functools.lru_cache(maxsize=16)
def _layouts(model: Transformer, cluster: Cluster, training: Training, c: Constraints) -> np.ndarray:
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
    lay = np.array(out, dtype=np.int64).reshape(-1, 5)
    lay.flags.writeable = False
    return lay


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


def layout_groups(model: Transformer, space: Space, lay: np.ndarray, training: Training,
                  chunk_points: int = CHUNK_POINTS) -> list[tuple[Space, np.ndarray]]:
    """The layouts ``lay`` in groups, each with ``space`` narrowed to the values some valid point of its
    layouts uses (:func:`_valid`'s own rules): a micro-batch size that does not divide the batch, sp at
    tp = 1, ZeRO on one replica, interleaving at pp = 1 are left out of that grid, which then scores mostly
    valid plans (405B default search: 0.31 M points instead of 0.80 M for 0.27 M valid). Every point left
    out is invalid, so the counts and the results are those of the whole grid. Layouts whose grids differ
    by fewer than CALL_POINTS points share one group; layouts with no valid point are in none."""
    if not len(lay):
        return []
    sizes = [len(space.sched_vpp), *(len(v) for _, v in space.axes)]
    per = max(1, chunk_points // space.points_per_layout)
    mask = np.concatenate([_used_values(model, space, lay[i:i + per], training, sizes)
                           for i in range(0, len(lay), per)])
    live = np.flatnonzero(mask.any(axis=1))
    if not len(live):
        return []
    keys, inverse = np.unique(mask[live], axis=0, return_inverse=True)
    members = [live[inverse.ravel() == g] for g in range(len(keys))]
    keys, members = _merge_groups(keys, members, np.cumsum([0, *sizes]))
    out = []
    for key, idx in sorted(zip(keys, members), key=lambda km: int(km[1][0])):
        b = np.cumsum([0, *sizes])
        sv = tuple(x for x, k in zip(space.sched_vpp, key[:b[1]]) if k)
        axes = tuple((name, tuple(x for x, k in zip(values, key[b[i + 1]:b[i + 2]]) if k))
                     for i, (name, values) in enumerate(space.axes))
        out.append((Space(axes=axes, sched_vpp=sv), lay[np.sort(idx)]))
    return out


def _used_values(model: Transformer, space: Space, lay: np.ndarray, training: Training, sizes: list) -> np.ndarray:
    """(layouts, all axis values) bool: per layout, the values of each grid axis that a valid point uses."""
    ok = np.asarray(_valid(model, _grid_arrays(lay, space, training), getattr(training, "framework", None)))
    ok = np.ascontiguousarray(np.broadcast_to(ok, (len(lay), *ok.shape[1:])))
    any_ok = ok.reshape(len(lay), -1).any(axis=1)
    cols = []
    for j, n in enumerate(sizes, start=1):
        if ok.shape[j] == 1:        # the rules do not look at this axis: every value, where any point is valid
            cols.append(np.repeat(any_ok[:, None], n, axis=1))
        else:
            pre, post = math.prod(ok.shape[1:j]), math.prod(ok.shape[j + 1:])
            cols.append(ok.reshape(len(lay), pre, n, post).any(axis=3).any(axis=1))
    return np.concatenate(cols, axis=1)


def _merge_groups(keys: np.ndarray, members: list, bounds: np.ndarray) -> tuple[list, list]:
    """Greedily merge the two groups whose union adds the fewest grid points while that is under
    CALL_POINTS (a grid per group costs a call; the union scores a few more invalid points)."""
    def points(m):             # grid points per layout of value masks m (..., values)
        return np.prod([m[..., a:b].sum(axis=-1) for a, b in zip(bounds[:-1], bounds[1:])], axis=0)
    if len(keys) > MERGE_MAX_GROUPS:   # too many to compare pairwise: one grid of the values any layout uses
        return [np.logical_or.reduce(keys)], [np.concatenate(members)]
    keys, members = list(keys), list(members)
    while len(keys) > 1:
        k, n = np.array(keys), np.array([len(m) for m in members])
        own = n * points(k)
        added = (n[:, None] + n[None, :]) * points(k[:, None, :] | k[None, :, :]) - own[:, None] - own[None, :]
        np.fill_diagonal(added, np.iinfo(np.int64).max)
        i, j = np.unravel_index(int(np.argmin(added)), added.shape)
        if added[i, j] >= CALL_POINTS:
            break
        keys[i], members[i] = keys[i] | keys[j], np.concatenate([members[i], members[j]])
        del keys[j], members[j]
    return keys, members


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


def _framework_mask(a: dict, framework: str | None):
    """True where the framework can run the point under its layout-dependent limits (models/frameworks.py
    ``Limit.when``: DeepSpeed's pipeline engine runs ZeRO <= 1 and 1F1B only with pp > 1); the unconditional
    limits narrowed the axes already (framework_constraints)."""
    from models.frameworks import get_profile
    prof = get_profile(framework)
    if prof is None:
        return True
    cond = {"tp>1": a["tp"] > 1, "pp>1": a["pp"] > 1, "zero_stage=3": a["zero_stage"] == 3}
    ok = True
    for name, limits in prof.limits.items():
        for lim in limits:
            if lim.when != "always" and name in a:
                ok = ok & (~cond[lim.when] | np.isin(a[name], _constraint_values(name, lim.allowed)))
    return ok


def _valid(model: Transformer, a: dict, framework: str | None = None) -> np.ndarray:
    """Plan-level rules beyond the layout (Plan.__post_init__ and check_plan), the framework's limits that
    depend on the layout, and no exact repeats."""
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
    ok = ok & ~(a["flash"] & (a["recompute"] == Recompute.SELECTIVE))  # flash already drops what selective would
    ok = ok & ((model.num_experts % ep == 0) if model.is_moe else (ep == 1))
    # expert layers (check_plan): without folding, ep divides dp*cp; folded (expert_tp < tp), ep*expert_tp
    # divides tp*cp*dp and expert_tp the expert FFN width; expert_tp = tp is the unfolded plan again (a repeat)
    etp_set = a.get("expert_tp", 0)
    etp = np.where(etp_set == 0, tp, etp_set)
    folded = etp != tp
    ok = ok & np.where(folded, (tp * cp * dp) % (ep * etp) == 0, (dp * cp) % ep == 0)
    ok = ok & ((etp_set == 0) | folded)
    if model.is_moe:
        ok = ok & (model.expert_ffn_hidden % etp == 0)
    return ok & _framework_mask(a, framework)


# ----------------------------------------------------------------------------------- one task

@dataclass(frozen=True, slots=True)
class Task:
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
    tokens (when None, a Chinchilla budget of 20 tokens per parameter, as ``estimate``): failure-free,
    or with failures and checkpoints when
    ``training.failures`` (models.cost.run_figures_with_failures; adds goodput, expected_failures).
    ``utilisation`` drives GPU power: the compute share of the step (compute_s / step_time_s), as
    ``clustersim estimate`` and ``train-time`` use."""
    tokens = default_tokens(model, training)
    args = (step_time_s, cluster.num_gpus, tokens, training.global_batch_size, model.seq_len, utilisation)
    base = run_figures(cluster, *args)
    if not training.failures:
        return base
    from models import cost
    with_failures, ckpt_costs = (getattr(cost, n, None) for n in ("run_figures_with_failures", "checkpoint_costs"))
    if with_failures is None or ckpt_costs is None:
        raise ValueError("training.failures: models.cost has no failure model in this build")
    # what one checkpoint saves: the adapters and their state for LoRA/QLoRA/DoRA, 2 B/param for LOMO
    # (models.cost.checkpoint_state), for the run's own method (a searched method axis keeps the run's)
    from models.plan import Plan
    kw = {k: v for k, v in training.plan_kwargs().items()
          if k in ("finetune", "lora_rank", "lora_alpha", "lora_targets", "optimizer", "master_weights") and v is not None}
    n_saved, bytes_per_param, restart_extra = cost.checkpoint_state(model, Plan(**kw))
    r = with_failures(cluster, *args, ckpt_costs(cluster, n_saved, tp, pp, dp, cp, zero_stage,
                                                 bytes_per_param=bytes_per_param, restart_extra_bytes=restart_extra))
    return {k: r[k] for k in ("time_to_train_s", "gpu_hours", "cost_usd", "energy_kwh")} | {
        "failure_free_time_to_train_s": base["time_to_train_s"], "goodput": r["goodput"],
        "expected_failures": r["expected_failures"], "checkpoint_interval_s": r["checkpoint_interval_s"]}


def default_tokens(model: Transformer, training: Training, finetuning: bool | None = None) -> float:
    """Tokens to train: ``training.tokens``, else Chinchilla's 20 per parameter (Hoffmann et al. 2022), or for a
    fine-tuning run (``finetuning``; None: the training's method and optimizer say) one epoch of a stated dataset
    (models.cost.default_token_budget).

    >>> from models.transformer import get_model
    >>> default_tokens(get_model("llama3-8b"), Training(global_batch_size=8)) / 1e9  # 20 x 8.03 B
    160.60522496
    """
    if training.tokens:
        return float(training.tokens)
    return default_token_budget(model, None, _finetuning(training, finetuning))[0]


def tokens_rule(training: Training, model: Transformer | None = None, finetuning: bool | None = None) -> str:
    """How the token budget was chosen, for the outputs that state it."""
    if training.tokens:
        return "given (--tokens / training.tokens)"
    if model is not None and _finetuning(training, finetuning):
        return default_token_budget(model, None, True)[1] + "; --tokens for your dataset's size"
    return (f"Chinchilla, {CHINCHILLA_TOKENS_PER_PARAM} tokens per parameter (Hoffmann et al. 2022); "
            "--tokens for another budget")


def _finetuning(training: Training, finetuning: bool | None) -> bool:
    return is_finetuning(training.finetune, training.optimizer) if finetuning is None else bool(finetuning)


def identity_matrix(fig: dict) -> np.ndarray:
    """Rows that agree to IDENTICAL_RTOL (max abs difference) exactly when two plans' figures do:
    log step time, log peak memory, time terms / step, memory terms / peak. ``fig``: 1-d arrays by key."""
    step = np.asarray(fig["step_time_s"], dtype=float)
    peak = np.asarray(fig["peak_memory_bytes"], dtype=float)
    cols = [np.log(step), np.log(peak)]
    cols += [np.asarray(fig[k], dtype=float) / step for k in IDENTITY_TIME_TERMS if k in fig]
    cols += [np.asarray(fig[k], dtype=float) / peak for k in IDENTITY_MEMORY_TERMS if k in fig]
    return np.stack(cols, axis=1)


def group_identical(rows: np.ndarray, tol: float = IDENTICAL_RTOL) -> np.ndarray:
    """Group labels (0, 1, ... in order of first appearance) of rows equal within ``tol`` to an earlier
    group's first row.

    >>> group_identical(np.array([[1.0, 0.0], [1.0, 1e-12], [2.0, 0.0], [1.0, 0.0]])).tolist()
    [0, 0, 1, 0]
    """
    labels = np.empty(len(rows), dtype=np.int64)
    reps = np.empty((0, rows.shape[1] if rows.ndim == 2 else 0))
    for i, row in enumerate(rows):
        if len(reps):
            d = np.abs(reps - row).max(axis=1)
            j = int(np.argmin(d))
            if d[j] <= tol:
                labels[i] = j
                continue
        labels[i] = len(reps)
        reps = np.vstack([reps, row])
    return labels


def _at(v, shape, idx: np.ndarray) -> np.ndarray:
    """``v`` (broadcastable to ``shape``) at the flat indices ``idx`` of that shape, without building the
    full-size array (``broadcast_to(v, shape).ravel()`` copies every grid point: ~20 ms of a 405B search)."""
    v = np.asarray(v)
    if v.size == 1:
        return np.full(len(idx), v.reshape(()))
    where = np.unravel_index(idx, shape)
    return v[tuple(w if n > 1 else 0 for w, n in zip(where[len(shape) - v.ndim:], v.shape))]


def _figures(r: dict, shape, idx: np.ndarray) -> dict:
    keys = ("step_time_s", "peak_memory_bytes", *IDENTITY_TIME_TERMS, *IDENTITY_MEMORY_TERMS)
    return {k: _at(r[k], shape, idx) for k in keys if k in r}


def _keep_distinct(score: np.ndarray, r: dict, shape, keep: int) -> np.ndarray:
    """Indices of the fitting points whose score is within the ``keep`` best *distinct* plans (plans whose
    figures are identical count once; every member of a kept group is kept, to be counted and collapsed)."""
    finite = np.flatnonzero(np.isfinite(score))
    n = min(len(finite), 4 * keep)
    while n:
        part = finite[np.argpartition(score[finite], n - 1)[:n]] if n < len(finite) else finite
        part = part[np.argsort(score[part], kind="stable")]
        labels = group_identical(identity_matrix(_figures(r, shape, part)))
        firsts = np.flatnonzero(np.r_[True, labels[1:] > np.maximum.accumulate(labels)[:-1]])
        if len(firsts) >= keep:
            thr = score[part[firsts[keep - 1]]]
            return finite[score[finite] <= thr * (1 + IDENTICAL_RTOL)]
        if n == len(finite):
            break
        n = min(len(finite), 4 * n)
    return finite


def _objective(t: Task, r: dict, a: dict, shape) -> tuple[np.ndarray, np.ndarray]:
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


def _eval_task(t: Task) -> dict:
    """Evaluate one chunk of layouts; return the best ``keep`` plans, the per-chunk fastest, and counts."""
    a = _grid_arrays(t.layouts, t.space, t.training)
    with np.errstate(divide="ignore", invalid="ignore"):  # invalid points (0 micro-batches) are masked below
        r = estimate_arrays(t.model, t.cluster, t.training.dtype, **a)
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
    valid = np.broadcast_to(_valid(t.model, a, getattr(t.training, "framework", None)), shape)
    # GPU memory within the allowed fraction of HBM, and the node's host memory holds what is offloaded to it
    fits = valid & np.broadcast_to((r["peak_memory_bytes"] <= t.max_memory_fraction * t.cluster.gpu.hbm_bytes)
                                   & r["host_fits"], shape)
    obj, key = _objective(t, r, a, shape)
    score = np.where(fits, obj, np.inf).ravel()
    # the best ``keep`` distinct plans and every plan tied with them (and the ties for the fastest): how the grid
    # is cut into chunks must not decide between equal plans; the merge collapses identical plans and orders
    # ties by the plan's fields
    idx = _keep_distinct(score, r, shape, t.keep)
    fastest = score if key is obj else np.where(fits, key, np.inf).ravel()   # the objective is the key: time
    best_step = int(np.argmin(fastest))
    fastest_ties = np.flatnonzero(fastest == fastest[best_step]) if np.isfinite(fastest[best_step]) else idx[:0]
    idx = np.union1d(idx, fastest_ties)
    return {"task_id": t.task_id, "num_nodes": t.cluster.num_nodes, "grid_points": int(np.prod(shape)),
            "valid": int(valid.sum()), "fit": int(fits.sum()), "points": _decode(t, a, shape, idx),
            "score": score[idx], "pareto_key": _at(key, shape, idx), "flat_index": idx, "figures": _figures(r, shape, idx),
            "is_fastest": np.isin(idx, fastest_ties)}


def _decode(t: Task, a: dict, shape, idx: np.ndarray) -> dict:
    return {k: _at(a[k], shape, idx) for k in GRID_FIELDS}


# ----------------------------------------------------------------------------------- backends

def run_tasks(tasks: list, backend: str, workers: int | None) -> list[dict]:
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
