"""Scenario files: a model, a cluster, training settings and plans to run in batch.

The schema lives here, as dataclasses whose fields carry their documentation (``clustersim
schema`` prints it). YAML is read with ``yaml.safe_load`` only; every error names the file,
the line where the YAML parser knows it, the field and the reason::

    scenarios/x.yaml:14: plans[1].tp: must be a positive integer, got 0

:func:`run_scenario` returns a pandas DataFrame with one row per plan (listed ``plans``,
every point of a ``sweep`` grid, and the ``search`` winners), the figures of ``estimate``,
run figures (time to train, GPU-hours, dollars, energy) and a ``rank`` by the objective.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from models.hardware import Cluster
from models.plan import Plan, check_plan
from models.transformer import Transformer, get_model, load_hf_config, resolve_model
from simulator.planning.inputs import build_cluster

MODES = ("estimate", "simulate", "both")
OBJECTIVE_NAMES = ("time", "time-to-train", "cost", "energy")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names file, line, field and reason."""


def _f(doc: str, kind: str, default=dataclasses.MISSING, **kw):
    """A schema field: ``kind`` is the YAML type checked at load time, ``doc`` is printed by `clustersim schema`."""
    meta = {"doc": doc, "kind": kind, **kw}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------- schema

@dataclass(frozen=True)
class ClusterSpec:
    gpu: str = _f("GPU from the catalog (`clustersim presets`), e.g. h100-sxm-80gb, a100-sxm-80gb", "str")
    nodes: int = _f("number of nodes", "int")
    node: str | None = _f("node preset, e.g. dgx-h100 (default: the GPU's usual server)", "str", None)
    gpus_per_node: int | None = _f("override GPUs per node (and the NVLink domain size)", "int", None)
    nic_gbit_per_s: float | None = _f("override the network line rate per GPU, Gbit/s", "float", None)
    oversubscription: float = _f("fat-tree oversubscription above the leaf (1 = full bisection)", "float", 1.0)
    pue: float = _f("data-centre power usage effectiveness (energy figures)", "float", 1.2)


@dataclass(frozen=True)
class TrainingSpec:
    global_batch_size: int = _f("sequences per iteration", "int")
    seq_len: int | None = _f("training sequence length, tokens (default: the model's)", "int", None)
    dtype: str = _f("matmul dtype: bf16 | fp16 | fp8", "str", "bf16", choices=("bf16", "fp16", "fp8"))
    tokens: float | None = _f("tokens to train, for time to train / cost / energy (default: one iteration)",
                              "float", None)
    price_per_gpu_hour: float | None = _f("USD per GPU-hour (default: the GPU's catalog price)", "float", None)
    attention: str = _f("attention kernel: flash | unfused (materialised scores)", "str", "flash")
    overlap_grad_reduce: bool = _f("DP gradient reduction overlapped with backward", "bool", True)
    overlap_param_gather: bool = _f("ZeRO parameter all-gather overlapped with compute", "bool", True)
    overlap_tp_comm: bool = _f("TP/SP collectives overlapped with GEMMs", "bool", False)
    overlap_ep_comm: bool = _f("MoE all-to-alls overlapped with another micro-batch's compute (DualPipe)", "bool", False)
    failures: bool = _f("time to train, cost and energy with failures, checkpoints and restarts (Llama 3 failure "
                        "rates; adds goodput, expected_failures) instead of failure-free", "bool", False)


@dataclass(frozen=True)
class PlanSpec:
    name: str | None = _f("optional label for this plan (a `name` column)", "str", None)
    dp: int | None = _f("data-parallel degree (default: fill the cluster, GPUs / (tp pp cp))", "int", None)
    tp: int = _f("tensor-parallel degree", "int", 1)
    pp: int = _f("pipeline-parallel degree", "int", 1)
    cp: int = _f("context-parallel degree (sequence split for attention)", "int", 1)
    ep: int = _f("expert-parallel degree (MoE), carved out of dp * cp", "int", 1)
    vpp: int = _f("virtual pipeline stages per rank (needs schedule: interleaved)", "int", 1)
    micro_batch_size: int = _f("sequences per micro-batch", "int", 1)
    sp: bool = _f("Megatron sequence parallelism", "bool", False)
    zero_stage: int = _f("ZeRO stage 0-3", "int", 0, choices=(0, 1, 2, 3))
    recompute: str = _f("activation recomputation: none | selective | full", "str", "none",
                        choices=("none", "selective", "full"))
    schedule: str | None = _f("gpipe | 1f1b | interleaved | zb-h1 (default: interleaved if vpp > 1, else 1f1b)",
                              "str", None, choices=("gpipe", "1f1b", "interleaved", "zb-h1"))
    placement: str = _f("rank order, innermost (on NVLink) first: tp-cp-dp-pp (Megatron) or any order of "
                        "tp, cp, dp, pp", "str", "tp-cp-dp-pp")


@dataclass(frozen=True)
class SearchSpec:
    objective: str | None = _f("time | time-to-train | cost | energy (default: the scenario's objective)", "str",
                               None, choices=OBJECTIVE_NAMES)
    top: int = _f("how many of the best plans become rows", "int", 10)
    backend: str = _f("auto | serial | process | ray", "str", "auto", choices=("auto", "serial", "process", "ray"))
    simulate_top: int = _f("re-rank this many of the best with the simulator (0: off)", "int", 0)
    tp: list | None = _f("allowed tp values (default: powers of two up to the NVLink domain)", "int-list", None)
    pp: list | None = _f("allowed pp values (default: divisors of the GPU count up to num_layers)", "int-list", None)
    cp: list | None = _f("allowed cp values (default: 1, 2, 4, ..., 32)", "int-list", None)
    ep: list | None = _f("allowed ep values (default: divisors of num_experts)", "int-list", None)
    vpp: list | None = _f("allowed vpp values (default: 1, 2, 4, 8)", "int-list", None)
    micro_batch_size: list | None = _f("allowed micro-batch sizes (default: 1, 2, 4, 8, 16)", "int-list", None)
    zero_stage: list | None = _f("allowed ZeRO stages (default: 0-3)", "int-list", None)
    recompute: list | None = _f("allowed recompute modes (default: all)", "str-list", None)
    sp: list | None = _f("allowed sp values (default: [false, true])", "bool-list", None)
    schedule: list | None = _f("allowed schedules (default: all)", "str-list", None)
    num_nodes: list | None = _f("node counts to try (default: the cluster's); more than one gives a time-vs-cost "
                                "Pareto front", "int-list", None)
    max_memory_fraction: float = _f("a plan fits when peak memory <= this fraction of HBM", "float", 1.0)
    placement: list | None = _f("rank orders to try (default: each of tp, cp, dp, pp innermost once)", "str-list",
                                None)


SWEEP_FIELDS = ("dp", "tp", "pp", "cp", "ep", "vpp", "micro_batch_size", "sp", "zero_stage", "recompute", "schedule",
                "placement")


@dataclass(frozen=True)
class Scenario:
    model: object = _f("preset name, path to a Hugging Face config.json (relative to this file), or a mapping: "
                       "{preset: NAME, <Transformer field>: value, ...} or a full inline spec "
                       "(name, num_layers, hidden, num_heads, num_kv_heads, ffn_hidden, vocab, seq_len, ...)",
                       "model")
    cluster: ClusterSpec = _f("the cluster (section below)", "section")
    training: TrainingSpec = _f("training settings (section below)", "section")
    name: str | None = _f("scenario name (default: the file name)", "str", None)
    description: str = _f("free text", "str", "")
    mode: str = _f("estimate | simulate | both (simulate needs simulator.des.simulate)", "str", "estimate",
                   choices=MODES)
    objective: str = _f("ranks the rows: time | time-to-train | cost | energy", "str", "time",
                        choices=OBJECTIVE_NAMES)
    plans: list = _f("a list of plans (section `plans[]` below)", "plan-list", [])
    sweep: dict = _f("a grid: plan field -> list of values; every combination is a row "
                     f"(fields: {', '.join(SWEEP_FIELDS)})", "sweep", {})
    search: SearchSpec | None = _f("run the planner (section below); its best plans become rows", "section", None)
    source: str = field(default="<memory>", metadata={"internal": True})

    def __post_init__(self) -> None:
        if not self.plans and not self.sweep and self.search is None:
            raise ScenarioError(f"{self.source}: plans: give `plans`, a `sweep` grid or `search`")


SECTIONS = {"cluster": ClusterSpec, "training": TrainingSpec, "search": SearchSpec, "plans[]": PlanSpec}


# ------------------------------------------------------------------------------------- loading

class _Ctx:
    """File name and the line of every YAML node, by path, for error messages."""

    def __init__(self, source: str, lines: dict):
        self.source, self.lines = source, lines

    def error(self, path: tuple, reason: str) -> ScenarioError:
        line = None
        for k in range(len(path), -1, -1):
            if path[:k] in self.lines:
                line = self.lines[path[:k]]
                break
        where = f"{self.source}:{line}" if line else self.source
        return ScenarioError(f"{where}: {_dotted(path) or 'scenario'}: {reason}")


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _node_lines(node, path=(), out=None) -> dict:
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = path + (k.value,)
            out[key] = k.start_mark.line + 1
            _node_lines(v, key, out)
            out[key] = k.start_mark.line + 1 if not isinstance(v, yaml.ScalarNode) else v.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _node_lines(v, path + (i,), out)
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; ScenarioError (a ValueError) names file, line, field, reason."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{p}: cannot read ({e})") from None
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # node tree for line numbers; constructs no objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ScenarioError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}:1: scenario: expected a mapping with model, cluster, training and plans/sweep/search")
    ctx = _Ctx(str(p), _node_lines(root) if root is not None else {})
    return parse_scenario(data, ctx, name=p.stem, base_dir=p.parent)


def parse_scenario(data: dict, ctx: _Ctx | None = None, name: str = "scenario",
                   base_dir: Path | None = None) -> Scenario:
    """Validate a scenario given as a dict (what the YAML holds)."""
    ctx = ctx or _Ctx("<scenario>", {})
    kw = _fields(Scenario, data, (), ctx)
    kw["cluster"] = ClusterSpec(**_fields(ClusterSpec, _mapping(kw["cluster"], ("cluster",), ctx), ("cluster",), ctx))
    kw["training"] = TrainingSpec(**_fields(TrainingSpec, _mapping(kw["training"], ("training",), ctx),
                                            ("training",), ctx))
    if kw.get("search") is not None:
        kw["search"] = SearchSpec(**_fields(SearchSpec, _mapping(kw["search"], ("search",), ctx), ("search",), ctx))
    kw["plans"] = [PlanSpec(**_fields(PlanSpec, _mapping(pl, ("plans", i), ctx), ("plans", i), ctx))
                   for i, pl in enumerate(kw.get("plans") or [])]
    kw["model"] = _model_spec(kw["model"], ctx, base_dir)
    kw.setdefault("name", None)
    kw["name"] = kw["name"] or name
    try:
        return Scenario(**kw, source=ctx.source)
    except ScenarioError:
        raise ctx.error((), "give `plans`, a `sweep` grid or `search` (none found)") from None


def _mapping(v, path, ctx) -> dict:
    if not isinstance(v, dict):
        raise ctx.error(path, f"expected a mapping, got {_kind_name(v)}")
    return v


def _kind_name(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(v), f"{type(v).__name__} {v!r}")


def _unknown(what: str, key, known, known_label: str) -> str:
    """The message for a key not in ``known``: the closest known name, else the whole list."""
    hint = difflib.get_close_matches(str(key), known, n=1)
    return what + (f"; did you mean {hint[0]!r}?" if hint else f"; {known_label}: {', '.join(known)}")


def _fields(cls, data: dict, path: tuple, ctx: _Ctx) -> dict:
    """Check a mapping against a schema dataclass: unknown keys, missing keys, kinds, choices."""
    schema = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    out = {}
    for key, value in data.items():
        if key not in schema:
            raise ctx.error(path + (key,), _unknown("unknown field", key, schema, "allowed"))
        out[key] = _check(schema[key], value, path + (key,), ctx)
    for k, f in schema.items():
        if k not in out and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(path, f"missing required field {k!r} ({f.metadata['doc']})")
    return out


def _check(f, v, path, ctx):
    kind, choices = f.metadata["kind"], f.metadata.get("choices")
    if v is None:
        if f.default is None or kind in ("section",) and f.name == "search":
            return None
        raise ctx.error(path, "needs a value")
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (v == 0 and f.name != "zero_stage"
                                                                      and f.name != "simulate_top"):
            raise ctx.error(path, f"must be a positive integer, got {v!r}")
    elif kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ctx.error(path, f"must be a number, got {v!r}")
        try:
            v = float(v)  # YAML 1.1 reads 3e11 as a string; accept it
        except ValueError:
            raise ctx.error(path, f"must be a number, got {v!r}") from None
        if not np.isfinite(v) or v < 0:
            raise ctx.error(path, f"must be a finite number >= 0, got {v!r}")
    elif kind == "bool" and not isinstance(v, bool):
        raise ctx.error(path, f"must be true or false, got {v!r}")
    elif kind == "str" and not isinstance(v, str):
        raise ctx.error(path, f"must be a string, got {v!r}")
    elif kind.endswith("-list"):
        v = _check_list(f, v, path, ctx)
    elif kind == "plan-list" and not isinstance(v, list):
        raise ctx.error(path, f"must be a list of plan mappings, got {_kind_name(v)}")
    elif kind == "sweep":
        v = _check_sweep(v, path, ctx)
    elif kind == "model" and not isinstance(v, (str, dict)):
        raise ctx.error(path, f"must be a preset name, a config.json path or a mapping, got {_kind_name(v)}")
    if choices and kind in ("str", "int") and (v.lower() if isinstance(v, str) else v) not in choices:
        raise ctx.error(path, f"{v!r} unknown; choose one of {', '.join(map(str, choices))}")
    return v.lower() if isinstance(v, str) and choices else v


def _check_list(f, v, path, ctx) -> list:
    if not isinstance(v, list) or not v:
        v = [v] if isinstance(v, (int, str, bool)) else v
    if not isinstance(v, list) or not v:
        raise ctx.error(path, f"must be a non-empty list, got {_kind_name(v)}")
    item = f.metadata["kind"].split("-")[0]
    for i, x in enumerate(v):
        bad = ((item == "int" and (isinstance(x, bool) or not isinstance(x, int) or x < 0))
               or (item == "bool" and not isinstance(x, bool)) or (item == "str" and not isinstance(x, str)))
        if bad:
            raise ctx.error(path + (i,), f"must be {'a non-negative integer' if item == 'int' else 'a ' + item}, "
                                         f"got {x!r}")
    return v


def _check_sweep(v, path, ctx) -> dict:
    if not isinstance(v, dict):
        raise ctx.error(path, f"must be a mapping of plan field -> list of values, got {_kind_name(v)}")
    schema = {f.name: f for f in dataclasses.fields(PlanSpec)}
    out = {}
    for key, values in v.items():
        if key not in SWEEP_FIELDS:
            raise ctx.error(path + (key,), _unknown("unknown plan field", key, SWEEP_FIELDS, "sweepable"))
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ctx.error(path + (key,), "give at least one value")
        out[key] = [_check(schema[key], x, path + (key, i), ctx) for i, x in enumerate(values)]
    return out


def _model_spec(v, ctx: _Ctx, base_dir: Path | None):
    """Keep the model as given, resolving a relative config.json path against the scenario's folder."""
    if isinstance(v, str) and (v.endswith(".json") or "/" in v) and base_dir is not None:
        candidate = base_dir / v
        return str(candidate) if candidate.exists() else v
    if isinstance(v, dict) and isinstance(v.get("config"), str) and base_dir is not None:
        candidate = base_dir / v["config"]
        return v | {"config": str(candidate)} if candidate.exists() else v
    return v


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
    except (ValueError, TypeError) as e:
        raise _ScenarioAt(("model",), str(e).removeprefix("model: ")) from None


def build_cluster_spec(scn: Scenario) -> Cluster:
    c = scn.cluster
    try:
        cl = build_cluster(c.gpu, c.nodes, c.node, c.gpus_per_node, scn.training.price_per_gpu_hour,
                           c.oversubscription, c.nic_gbit_per_s)
        return dataclasses.replace(cl, pue=c.pue)
    except ValueError as e:
        head, _, rest = str(e).partition(": ")
        if head in ClusterSpec.__dataclass_fields__ and rest:
            raise _ScenarioAt(("cluster", head), rest) from None
        raise _ScenarioAt(("cluster",), str(e)) from None


class _ScenarioAt(ValueError):
    def __init__(self, path: tuple, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


def plan_from_spec(spec: dict, model: Transformer, cluster: Cluster, training: TrainingSpec) -> Plan:
    """A Plan from plan fields (dp fills the cluster by default); ValueError says what is wrong."""
    tp, pp, cp = spec.get("tp", 1), spec.get("pp", 1), spec.get("cp", 1)
    dp = spec.get("dp")
    if dp is None:
        if cluster.num_gpus % (tp * pp * cp):
            raise ValueError(f"dp: the cluster's {cluster.num_gpus} GPUs are not divisible by "
                             f"tp*pp*cp = {tp * pp * cp}")
        dp = cluster.num_gpus // (tp * pp * cp)
    vpp = spec.get("vpp", 1)
    return Plan(dp=dp, tp=tp, pp=pp, cp=cp, ep=spec.get("ep", 1), vpp=vpp,
                micro_batch_size=spec.get("micro_batch_size", 1), global_batch_size=training.global_batch_size,
                sp=spec.get("sp", False), zero_stage=spec.get("zero_stage", 0), recompute=spec.get("recompute", "none"),
                schedule=spec.get("schedule") or ("interleaved" if vpp > 1 else "1f1b"), dtype=training.dtype,
                attention=training.attention, overlap_grad_reduce=training.overlap_grad_reduce,
                overlap_param_gather=training.overlap_param_gather, overlap_tp_comm=training.overlap_tp_comm,
                overlap_ep_comm=training.overlap_ep_comm, placement=spec.get("placement", "tp-cp-dp-pp"))


def _plan_rows(scn: Scenario) -> list[tuple[str, int, dict]]:
    """(source, index, plan fields) of every listed plan and every sweep point, in file order."""
    rows = []
    for i, p in enumerate(scn.plans):
        rows.append(("plans", i, {k: v for k, v in dataclasses.asdict(p).items() if v is not None}))
    if scn.sweep:
        keys = list(scn.sweep)
        for i, combo in enumerate(itertools.product(*(scn.sweep[k] for k in keys))):
            rows.append(("sweep", i, dict(zip(keys, combo))))
    return rows


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
    sim = _simulator() if mode != "estimate" else None
    if mode != "estimate" and sim is None:
        raise ScenarioError(f"{scn.source}: mode: {mode} needs the discrete-event simulator (simulator.des.simulate), "
                            "which is not installed in this checkout; use mode: estimate")
    ctx = _ctx_for(scn)
    try:
        model, cluster = build_model(scn), build_cluster_spec(scn)
    except _ScenarioAt as e:
        raise ctx.error(e.path, e.reason) from None
    from simulator.planning.planner import evaluate_plan
    specs = _plan_rows(scn)
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
        plan = plan_from_spec(fields, model, cluster, scn.training)
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
    from simulator.planning.planner import Constraints, Training, search
    s = scn.search
    try:
        cons = Constraints(**{k: getattr(s, k) for k in ("tp", "pp", "cp", "ep", "vpp", "micro_batch_size",
                                                          "zero_stage", "recompute", "sp", "schedule", "num_nodes",
                                                          "max_memory_fraction", "placement")})
    except ValueError as e:
        raise ctx.error(("search",), str(e).removeprefix("constraints.")) from None
    t = scn.training
    training = Training(global_batch_size=t.global_batch_size, dtype=t.dtype, tokens=t.tokens, attention=t.attention,
                        overlap_grad_reduce=t.overlap_grad_reduce, overlap_param_gather=t.overlap_param_gather,
                        overlap_tp_comm=t.overlap_tp_comm, overlap_ep_comm=t.overlap_ep_comm, failures=t.failures)
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
            plan = plan_from_spec({k: rec[k] for k in ("dp", "tp", "pp", "cp", "ep", "vpp", "micro_batch_size",
                                                       "sp", "zero_stage", "recompute", "schedule")},
                                  model, cl, scn.training)
            row |= _sim_columns(sim, model, cl, plan, mode)
        rows.append(row)
    return rows


def _flatten(rec: dict) -> dict:
    from simulator.planning.planner import _flat
    return _flat(rec)


def _simulator():
    try:
        from simulator.des.simulate import simulate
    except ImportError:
        return None
    return simulate


def _sim_columns(sim, model, cluster, plan, mode) -> dict:
    res = sim(model, cluster, plan)
    out = {}
    for name in ("step_time_s", "compute_s", "bubble_s", "idle_s", "iteration_time_s", "makespan_s"):
        v = getattr(res, name, None)
        if isinstance(v, (int, float)):
            out[f"sim_{name}"] = float(v)
    return out


FRONT_COLUMNS = ("scenario", "source", "index", "name", "rank", "plan_id", "num_nodes", "num_gpus", "dp", "tp", "pp",
                 "cp", "ep", "vpp", "micro_batch_size", "global_batch_size", "sp", "zero_stage", "recompute",
                 "schedule", "dtype", "attention", "step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "hfu",
                 "peak_memory_bytes", "hbm_bytes", "fits", "time_to_train_s", "gpu_hours", "cost_usd", "energy_kwh")
OBJECTIVE_COLUMNS = {"time": "step_time_s", "time-to-train": "time_to_train_s", "cost": "cost_usd",
                     "energy": "energy_kwh"}


def _frame(scn: Scenario, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in FRONT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan if c not in ("plan_id", "error") else ""
    key = OBJECTIVE_COLUMNS[scn.objective]
    ok = (df["error"] == "") & (df["fits"] == True)  # noqa: E712
    order = df[ok].sort_values([key, "source", "index"], kind="stable").index
    rank = pd.Series(pd.NA, index=df.index, dtype="Int64")
    rank.loc[order] = range(1, len(order) + 1)
    df["rank"] = rank
    rest = [c for c in df.columns if c not in FRONT_COLUMNS]
    return df[list(FRONT_COLUMNS) + rest].reset_index(drop=True)


# ------------------------------------------------------------------------------------- output

def input_paths(scn: Scenario) -> list[Path]:
    """Files a scenario reads: the scenario itself and a model config.json, if any."""
    paths = [Path(scn.source)]
    model = scn.model.get("config") if isinstance(scn.model, dict) else scn.model
    if isinstance(model, str) and Path(model).exists():
        p = Path(model)
        paths.append(p / "config.json" if p.is_dir() else p)
    return paths


def check_output(out: str | Path, inputs=()) -> Path:
    """The output path, if its suffix is known and it is none of ``inputs``; ValueError otherwise."""
    o = Path(out)
    if o.suffix.lower() not in (".csv", ".parquet", ".json"):
        raise ValueError(f"output: {o.name!r}: choose a .csv, .parquet or .json file name")
    for p in inputs:
        if o.resolve() == Path(p).resolve():
            raise ValueError(f"output: {o} is an input of this run ({p}); choose another name")
    return o


def write_results(df: pd.DataFrame, out: str | Path, inputs=()) -> Path:
    """Write by suffix (.csv, .parquet, .json); refuses to write onto any of ``inputs`` (the scenario, a config)."""
    o = check_output(out, [inputs] if isinstance(inputs, (str, Path)) else inputs)
    suffix = o.suffix.lower()
    o.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(o, index=False, lineterminator="\n")
    elif suffix == ".json":
        o.write_text(df.to_json(orient="records", indent=1, double_precision=15) + "\n")
    else:
        try:
            df.to_parquet(o, index=False)
        except ImportError:
            raise ValueError("output: .parquet needs pyarrow; pip install 'clustersim[parquet]'") from None
    return o


def schema_text() -> str:
    """Every scenario field with its type, default and meaning (what `clustersim schema` prints)."""
    lines = []
    for title, cls in (("scenario (top level)", Scenario), ("cluster", ClusterSpec), ("training", TrainingSpec),
                       ("plans[] (and sweep fields)", PlanSpec), ("search", SearchSpec)):
        lines.append(f"{title}:")
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            default = ("required" if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                       else f"default {_yaml_value(f)}")
            lines.append(f"  {f.name:<21} {f.metadata['kind']:<10} {default:<18} {f.metadata['doc']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def schema_dict() -> dict:
    """The schema as data: section -> field -> {kind, default, doc, choices}."""
    out = {}
    for title, cls in (("scenario", Scenario), *SECTIONS.items()):
        out[title] = {f.name: {"kind": f.metadata["kind"], "doc": f.metadata["doc"],
                               "required": _required(f),
                               "default": None if f.default is dataclasses.MISSING else f.default,
                               **({"choices": list(f.metadata["choices"])} if "choices" in f.metadata else {})}
                      for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    return out


def _required(f) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _yaml_value(f) -> str:
    v = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)


__all__ = ["input_paths", "check_output",
           "Scenario", "ClusterSpec", "TrainingSpec", "PlanSpec", "SearchSpec", "ScenarioError", "load_scenario",
           "parse_scenario", "run_scenario", "write_results", "schema_text", "schema_dict", "build_model"]
