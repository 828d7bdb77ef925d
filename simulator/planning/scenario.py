"""Scenario runs: every plan of a scenario file estimated (or simulated), ranked and written.

The file format and its validation are in :mod:`simulator.planning.schema`. :func:`run_scenario`
returns a pandas DataFrame with one row per plan (listed ``plans``, every point of a ``sweep``
grid, and the ``search`` winners), the figures of ``estimate``, run figures (time to train,
GPU-hours, dollars, energy) and a ``rank`` by the objective.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from models.hardware import Cluster
from models.hf_config import load_hf_config
from models.inputs import PLAN_FIELDS, ClusterInputs, Training, resolve_plan
from models.plan import Plan, check_plan
from models.transformer import Transformer, get_model, resolve_model
from simulator.planning.schema import (
    MODES,
    Scenario,
    ScenarioError,
    _Ctx,
    _node_lines,
    load_scenario,
    parse_scenario,
    plan_rows,
)

# ------------------------------------------------------------------------------------- building

def build_model(scn: Scenario) -> Transformer:
    """The scenario's Transformer (preset, config.json, preset with overrides, or inline)."""
    v, seq = scn.model, scn.training.seq_len
    try:
        if isinstance(v, str):
            return resolve_model(v, seq)
        spec = dict(v)
        if "preset" in spec or "config" in spec:
            base = get_model(spec.pop("preset")) if "preset" in spec else load_hf_config(spec.pop("config"))
            unknown = set(spec) - set(Transformer.__dataclass_fields__)
            if unknown:
                raise ValueError(f"model: unknown field(s) {', '.join(sorted(unknown))}")
            m = dataclasses.replace(base, **spec)
        else:
            unknown = set(spec) - set(Transformer.__dataclass_fields__)
            if unknown:
                raise ValueError(f"model: unknown field(s) {', '.join(sorted(unknown))}")
            m = Transformer(**spec)
        return m.with_seq_len(seq) if seq else m
    except (ValueError, TypeError, KeyError) as e:
        raise _ScenarioAt(("model",), str(e).strip("'\"").removeprefix("model: ")) from None


def build_cluster_spec(scn: Scenario) -> Cluster:
    try:
        return ClusterInputs(**scn.cluster.model_dump(exclude_none=True)).build(scn.training.price_per_gpu_hour)
    except ValueError as e:
        head, _, rest = str(e).partition(": ")
        field = head.removeprefix("cluster.")
        if field in ClusterInputs.__dataclass_fields__ and rest:
            raise _ScenarioAt(("cluster", field), rest) from None
        raise _ScenarioAt(("cluster",), str(e)) from None


def training_of(scn: Scenario) -> Training:
    """The scenario's training settings as the one Training declaration."""
    return Training(**scn.training.model_dump())


class _ScenarioAt(ValueError):
    def __init__(self, path: tuple, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


def plan_from_spec(spec: dict, model: Transformer, cluster: Cluster, training) -> Plan:
    """A Plan from plan fields (dp fills the cluster by default); ValueError says what is wrong."""
    tr = training if isinstance(training, Training) else Training(**training.model_dump())
    return resolve_plan(cluster.num_gpus, tr, **spec)


# ------------------------------------------------------------------------------------- running

def run_scenario(scenario: str | Path | Scenario, mode: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run every plan of a scenario: one row per plan, ranked by the scenario's objective.

    ``mode`` overrides the file's (estimate | simulate | both). ``progress(done, total)`` is called
    after each plan. Rows whose plan cannot run keep an ``error`` message and no figures.

    >>> df = run_scenario(parse_scenario({"model": "gpt-tiny", "cluster": {"gpu": "a100", "nodes": 1},
    ...     "training": {"global_batch_size": 8}, "plans": [{"tp": 1}, {"tp": 2}]}))
    >>> [p[:8] for p in df["plan_id"]], [int(r) for r in df["rank"]]
    (['dp8-tp1-', 'dp4-tp2-'], [1, 2])
    """
    scn = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    mode = (mode or scn.mode).lower()
    if mode not in MODES:
        raise ScenarioError(f"{scn.source}: mode: {mode!r} unknown; choose one of {', '.join(MODES)}")
    from simulator.planning.bounds import check_scenario_size
    check_scenario_size(scn, mode)   # bounded work: every simulated plan and the search grid, before any of it
    sim = _simulator() if mode != "estimate" else None
    ctx = _ctx_for(scn)
    try:
        model, cluster = build_model(scn), build_cluster_spec(scn)
    except _ScenarioAt as e:
        raise ctx.error(e.path, e.reason) from None
    from simulator.planning.planner import evaluate_plan
    specs = plan_rows(scn)
    total = len(specs) + (1 if scn.search else 0)
    rows = []
    for n, (src, i, spec) in enumerate(specs):
        rows.append(_row(scn, src, i, spec, model, cluster, evaluate_plan, sim if mode != "estimate" else None, mode))
        if progress:
            progress(n + 1, total)
    if scn.search is not None:
        rows += _search_rows(scn, model, cluster, ctx, sim if mode != "estimate" else None, mode)
        if progress:
            progress(total, total)
    return _frame(scn, rows)


def _ctx_for(scn: Scenario) -> _Ctx:
    try:
        text = Path(scn.source).read_text()
        return _Ctx(scn.source, _node_lines(yaml.compose(text, Loader=yaml.SafeLoader)))
    except (OSError, yaml.YAMLError, AttributeError):
        return _Ctx(scn.source, {})


def _row(scn, src, i, spec, model, cluster, evaluate_plan, sim, mode) -> dict:
    base = {"scenario": scn.name, "source": src, "index": i, "name": spec.get("name", "")}
    fields = {k: v for k, v in spec.items() if k != "name"}
    try:
        plan = plan_from_spec(fields, model, cluster, training_of(scn))
        errors = check_plan(plan, model, cluster)
        if errors:
            raise ValueError("; ".join(errors))
        rec = evaluate_plan(model, cluster, plan, scn.training.tokens, scn.training.failures)
    except ValueError as e:
        return base | {k: v for k, v in fields.items()} | {"error": str(e)}
    out = base | _flatten(rec) | {"error": ""}
    if sim is not None:
        out |= _sim_columns(sim, model, cluster, plan, mode)
    return out


def _search_rows(scn, model, cluster, ctx, sim, mode) -> list[dict]:
    from simulator.planning.planner import Constraints, search
    s = scn.search
    try:
        cons = Constraints(**{k: v for k, v in s.model_dump().items() if k in Constraints.__dataclass_fields__})
    except ValueError as e:
        raise ctx.error(("search",), str(e).removeprefix("constraints.")) from None
    training = training_of(scn)
    try:
        res = search(model, cluster, training, cons, objective=s.objective or scn.objective, top=s.top,
                     backend=s.backend, simulate_top=s.simulate_top)
    except ValueError as e:
        raise ctx.error(("search",), str(e)) from None
    rows = []
    for i, rec in enumerate(res.records):
        row = {"scenario": scn.name, "source": "search", "index": i, "name": ""} | _flatten(rec) | {"error": ""}
        if sim is not None:
            cl = dataclasses.replace(cluster, num_nodes=rec["num_nodes"])
            plan = plan_from_spec({k: rec[k] for k in PLAN_FIELDS}, model, cl, training)
            row |= _sim_columns(sim, model, cl, plan, mode)
        rows.append(row)
    return rows


def _flatten(rec: dict) -> dict:
    from simulator.planning.planner import _flat
    return _flat(rec)


def _simulator():
    from simulator.des.simulate import simulate  # pandas, simpy, networkx: only for simulate/both modes
    return simulate


def _sim_columns(sim, model, cluster, plan, mode) -> dict:
    res = sim(model, cluster, plan)
    out = {}
    for name in ("step_time_s", "compute_s", "bubble_s", "idle_s", "iteration_time_s", "makespan_s"):
        v = getattr(res, name, None)
        if isinstance(v, (int, float)):
            out[f"sim_{name}"] = float(v)
    return out


FRONT_COLUMNS = ("scenario", "source", "index", "name", "rank", "tie", "plan_id", "num_nodes", "num_gpus", "dp", "tp", "pp",
                 "cp", "ep", "vpp", "micro_batch_size", "global_batch_size", "sp", "zero_stage", "recompute",
                 "schedule", "dtype", "attention", "step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "hfu",
                 "peak_memory_bytes", "hbm_bytes", "fits", "time_to_train_s", "gpu_hours", "cost_usd", "energy_kwh")
OBJECTIVE_COLUMNS = {"time": "step_time_s", "time-to-train": "time_to_train_s", "cost": "cost_usd",
                     "energy": "energy_kwh"}


def _one_row_per_plan(df: pd.DataFrame) -> pd.DataFrame:
    """A plan listed twice (a named plan and the same sweep point, or a search winner) is one row: the first
    (named plans come first), with ``same_plan_rows`` counting the others and ``same_plan_sources`` naming
    them (issue 18). Rows that could not run are kept as they are."""
    from models.fields import options
    fields = [c for c in ("num_nodes", *options(Plan)) if c in df.columns]
    key = pd.Series([repr(tuple(r)) for r in df[fields].itertuples(index=False)], index=df.index)  # every field
    ran = df["error"] == ""
    first = ~(ran & key.duplicated(keep="first"))
    out = df[first].copy()
    out["same_plan_rows"], out["same_plan_sources"] = 0, ""
    for k, g in df[~first].groupby(key[~first]):
        row = out.index[(key[first] == k).to_numpy()][0]
        out.loc[row, "same_plan_rows"] = len(g)
        out.loc[row, "same_plan_sources"] = ", ".join(f"{s}[{i}]" for s, i in zip(g["source"], g["index"]))
    return out


def _frame(scn: Scenario, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in FRONT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan if c not in ("plan_id", "error") else ""
    df = _one_row_per_plan(df)
    key = OBJECTIVE_COLUMNS[scn.objective]
    ok = (df["error"] == "") & (df["fits"] == True)  # noqa: E712
    order = df[ok].sort_values([key, "source", "index"], kind="stable").index
    # only plans that run are ranked; those within the model's uncertainty of the best share rank 1 (a tie)
    from simulator.planning.planner import rank_ties
    recs = [{key: float(v)} for v in df.loc[order, key]]
    rank_ties(recs, key)
    rank = pd.Series(pd.NA, index=df.index, dtype="Int64")
    rank.loc[order] = [r["rank"] for r in recs]
    df["rank"] = rank
    tie = pd.Series(pd.NA, index=df.index, dtype="boolean")
    tie.loc[order] = [r["tie"] for r in recs]
    df["tie"] = tie
    rest = [c for c in df.columns if c not in FRONT_COLUMNS]
    return df[list(FRONT_COLUMNS) + rest].reset_index(drop=True)


# ------------------------------------------------------------------------------------- output

def input_paths(scn: Scenario) -> list[Path]:
    """Files a scenario reads: the scenario itself and a model config.json, if any."""
    from simulator.files import input_files
    model = scn.model.get("config") if isinstance(scn.model, dict) else scn.model
    return [Path(scn.source), *input_files(model if isinstance(model, str) else None)]


def check_output(out: str | Path, inputs=()) -> Path:
    """The output path, if its suffix is known and it is none of ``inputs`` (compared as files: by device
    and inode, so a hard link or a symlink to an input is caught); ValueError otherwise."""
    from simulator.files import check_output_path
    o = Path(out)
    if o.suffix.lower() not in (".csv", ".parquet", ".json"):
        raise ValueError(f"output: {o.name!r}: choose a .csv, .parquet or .json file name")
    check_output_path(o, "results", inputs, force=True)
    return o


def write_results(df: pd.DataFrame, out: str | Path, inputs=(), force: bool = False) -> Path:
    """Write by suffix (.csv, .parquet, .json) through a temporary file renamed into place; refuses to
    write onto any of ``inputs`` (the scenario, a config), and onto an existing file that is not an
    earlier results file unless ``force`` (simulator.files.write_output)."""
    from simulator.files import write_output
    o = check_output(out, [inputs] if isinstance(inputs, (str, Path)) else inputs)
    suffix = o.suffix.lower()
    if suffix == ".csv":
        writer = lambda t: df.to_csv(t, index=False, lineterminator="\n")  # noqa: E731
    elif suffix == ".json":
        writer = lambda t: Path(t).write_text(df.to_json(orient="records", indent=1, double_precision=15) + "\n")  # noqa: E731
    else:
        def writer(t):
            try:
                df.to_parquet(t, index=False)
            except ImportError:
                raise ValueError("output: .parquet needs pyarrow; pip install 'clustersim[parquet]'") from None
    return write_output(o, writer, "results", [inputs] if isinstance(inputs, (str, Path)) else inputs, force)


__all__ = ["input_paths", "check_output", "Scenario", "ScenarioError", "load_scenario", "parse_scenario",
           "run_scenario", "write_results", "build_model", "build_cluster_spec", "training_of", "plan_from_spec",
           "MODES"]
