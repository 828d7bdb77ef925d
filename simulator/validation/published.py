"""Predict published, measured training runs (the format of shared/validation/dev_runs.yaml).

What a record states is mapped by simulator.validation.records (:data:`MAPPERS`, one function per
topic); :func:`record_inputs` here applies them, fills in what the record leaves out and predicts it.

Records without a stated framework keep the generic defaults: the lowest ZeRO stage that fits
(the run did fit), the largest micro-batch that fits where pp = 1, 1 under pipeline parallelism.
Records that measured peak memory but no time are scored on memory. A record is skipped only when
the source lacks what is needed or states something the model cannot express; the reason names
the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from models.estimate import PlanError, estimate
from models.frameworks import allowed_values, apply_defaults, framework_errors, get_profile
from models.inputs import GENERIC_DEFAULTS as _GENERIC
from models.plan import Plan
from simulator.validation.records import (
    MAPPERS,
    check_record,
    measured_iteration_time_s,
    measured_memory_bytes,
    record_framework,
    record_model,
    record_vocab,
)

# ------------------------------------------------------------------------------- plan


def _fits(model, cluster, plan) -> bool:
    try:
        return estimate(model, cluster, plan).fits
    except PlanError:
        return False


def record_inputs(rec: dict):
    """(model, cluster, plan, defaults used) for one published record; ValueError naming the field
    when the record cannot be expressed."""
    framework = record_framework(rec)
    ctx = {"fields": {}, "defaults": [], "framework": framework}
    for mapper in MAPPERS:
        mapper(rec, ctx)
    cluster, f, defaults = ctx["cluster"], ctx["fields"], ctx["defaults"]
    if framework:
        defaults.insert(0, f"framework={framework}")
    model = record_model(rec, framework)
    vocab_note = record_vocab(rec)[1]
    if vocab_note:
        defaults.append(vocab_note)
    bat = rec.get("batch") or {}
    if bat.get("global_batch_seqs") is None:
        raise ValueError("batch.global_batch_seqs: not stated")
    f["global_batch_size"] = int(bat["global_batch_seqs"])
    stated = dict(f)
    f, used = apply_defaults({**_GENERIC, **f}, framework, _GENERIC)
    f.update(stated)  # what the record states wins over the profile, even where it equals the generic default
    if ctx.get("flash_stated") and f.get("attention") == "unfused":
        f["attention"] = "flash"
    f = {k: v for k, v in f.items() if k in Plan.__dataclass_fields__ and (k in stated or v != _GENERIC.get(k))}
    f.setdefault("zero_stage", 0)
    defaults += [u for u in used if u.split("=")[0] not in stated]
    _stage_the_framework_has(f, framework, defaults)
    errs = framework_errors(f, framework)
    if errs:
        raise ValueError("; ".join(errs))
    return _choose_batch_and_zero(model, cluster, f, bat, stated, framework, defaults)


def _stage_the_framework_has(f: dict, framework: str | None, defaults: list) -> None:
    """A stated ZeRO-2 in a framework whose only sharded data parallelism is a distributed optimizer
    (Megatron-LM/Core: optimizer state and fp32 main gradients sharded, gradients reduce-scattered once
    per step after the last micro-batch) is that optimizer, stage 1 here: MegaScale (NSDI'24, Sec. 3.2
    and Fig. 1) calls its Megatron-based data parallelism "ZeRO-2" and overlaps exactly those two
    collectives. DeepSpeed's stage 2 instead reduce-scatters at every micro-batch."""
    allowed = allowed_values(framework, "zero_stage", f)
    if f.get("zero_stage") == 2 and allowed and 2 not in allowed and 1 in allowed:
        f["zero_stage"] = 1
        defaults.append(f"zero_stage=1 (the stated ZeRO-2 is {framework}'s distributed optimizer: "
                        "gradients reduce-scattered once per step)")


def _unstated(name: str, f: dict, stated: set, framework: str | None, order: tuple) -> list:
    """Values to try for a field the record leaves out: the framework's default first, then the others
    it can run that save memory (``order``: least to most saving); the stated value alone when stated."""
    cur = f[name]
    if name in stated:
        return [cur]
    allowed = allowed_values(framework, name, f) or order
    start = order.index(cur) if cur in order else 0
    return [cur] + [v for v in order[start + 1:] if v in allowed]


def _choose_batch_and_zero(model, cluster, f, bat, stated, framework, defaults):
    """Micro-batch, ZeRO stage and recomputation where the record leaves them out. Micro-batch: the
    framework's (torchtitan: the local batch, split into pp micro-batches under PP), else 1 under PP
    and the largest that fits. ZeRO stage and recompute: the framework's default; where that would not
    fit (the run did fit), the next setting the framework can run that saves memory; without a
    framework the lowest ZeRO stage that fits."""
    per_replica = f["global_batch_size"] // f["dp"]
    prof = get_profile(framework)
    if bat.get("micro_batch") is not None:
        mbs = [int(bat["micro_batch"])]
    elif prof is not None and prof.microbatches == "stages" and f["pp"] > 1 and per_replica % f["pp"] == 0:
        mbs = [per_replica // f["pp"]]
        defaults.append(f"micro_batch={mbs[0]} (local batch / pp micro-batches, {prof.name})")
    elif prof is not None and prof.name == "torchtitan":
        mbs = [per_replica]
        defaults.append(f"micro_batch={per_replica} (torchtitan: local batch, no accumulation)")
    elif f["pp"] > 1:
        mbs = [1]
        defaults.append("micro_batch=1")
    else:
        mbs = sorted((d for d in range(1, min(per_replica, 16) + 1) if per_replica % d == 0), reverse=True)
    f = {**f, "zero_stage": int(f.get("zero_stage", 0)), "recompute": _norm_rc(f.get("recompute", "none"))}
    zeros = _unstated("zero_stage", f, stated, framework, (0, 1, 2, 3))
    rcs = _unstated("recompute", f, stated, framework, ("none", "selective", "full"))
    sps = [f.get("sp", False)] + ([True] if "sp" not in stated and f["tp"] > 1 and not f.get("sp")
                                  and not framework_errors({**f, "sp": True}, framework) else [])
    for rc in rcs:
        for sp in sps:
            for z in zeros:
                for cand in mbs:
                    plan = Plan(**{**f, "micro_batch_size": cand, "zero_stage": z, "recompute": rc, "sp": sp})
                    if _fits(model, cluster, plan):
                        if len(mbs) > 1:
                            defaults.append(f"micro_batch={cand} (largest that fits)")
                        for name, v, first in (("zero_stage", z, zeros[0]), ("recompute", rc, rcs[0]),
                                               ("sp", sp, sps[0])):
                            if v != first:
                                defaults.append(f"{name}={v} (the {framework or 'generic'} default "
                                                f"{name}={first} would not fit; the run did)")
                        return model, cluster, plan, defaults
    if len(mbs) > 1:
        defaults.append("micro_batch=1")
    return model, cluster, Plan(**{**f, "micro_batch_size": mbs[-1], "zero_stage": zeros[0]}), defaults


def _norm_rc(v) -> str:
    return v.name.lower() if hasattr(v, "name") else str(v)



def gpu_generation(gpu_name: str) -> str:
    """The architecture family a GPU belongs to, for error tables by generation (models.kernel_tables)."""
    from models.kernel_tables import gpu_arch
    return {"ampere": "Ampere", "hopper": "Hopper", "blackwell": "Blackwell"}.get(gpu_arch(gpu_name),
                                                                              gpu_arch(gpu_name).capitalize())


def _no_time_reason(rec: dict) -> str:
    """Why a record gives no time to compare: nothing measured, or a rate (TFLOP/s, MFU) whose FLOP count
    the source does not pin down (its tflops_definition), so no iteration time follows from it."""
    m = rec.get("measured") or {}
    rates = [k for k in ("tflops_per_gpu", "mfu", "tokens_per_sec_per_gpu") if m.get(k) is not None]
    if rates:
        return (f"measured.iteration_time_s: not stated; measured.{'/'.join(rates)} is, but no iteration time "
                f"follows from it (tflops_definition: {str(m.get('tflops_definition') or 'not stated')[:80]!r})")
    return ("measured.iteration_time_s / memory_gib_per_gpu: no iteration time or peak memory stated or derivable "
            "in the record")


def predict_record(rec: dict, profile=None) -> dict:
    """Measured vs predicted for one record (iteration time, and peak memory where measured);
    ``profile``: a measured profile dict (or list of them) applied to the records whose GPU it was
    measured on."""
    out = {"id": str(rec.get("id", "?")), "reliability": rec.get("reliability"), "group": rec.get("group")}
    try:
        measured, mem = measured_iteration_time_s(rec), measured_memory_bytes(rec)
    except (ValueError, TypeError, AttributeError):
        measured = mem = None
        try:
            check_record(rec)
        except ValueError as e:
            return out | {"skipped": str(e)}
    if measured is None and mem is None:
        return out | {"skipped": _no_time_reason(rec)}
    try:
        check_record(rec)
    except ValueError as e:
        return out | {"skipped": str(e)}
    try:
        model, cluster, plan, defaults = record_inputs(rec)
        if profile is not None:
            from simulator.validation.calibrate.profile import cluster_with_profile
            profiled = cluster_with_profile(cluster, profile)
            if profiled is not cluster:
                cluster = profiled
                defaults = [*defaults, "measured profile"]
        est = estimate(model, cluster, plan)
    except (ValueError, KeyError, TypeError) as e:
        return out | {"skipped": f"{type(e).__name__ if isinstance(e, KeyError) else ''}{e}".strip(),
                      "measured_iteration_time_s": measured}
    res = out | {"predicted_iteration_time_s": est.step_time_s, "predicted_peak_memory_bytes": est.peak_memory_bytes,
                 "fits": est.fits, "predicted_mfu": est.mfu, "plan_id": plan.plan_id, "defaults": defaults,
                 "compute_s": est.compute_s, "exposed_comm_s": est.exposed_comm_s, "bubble_s": est.bubble_s,
                 "gpu": cluster.gpu.name, "gpu_generation": gpu_generation(cluster.gpu.name),
                 "framework": record_framework(rec) or "unstated"}
    if measured is not None:
        res |= {"measured_iteration_time_s": measured, "error": (est.step_time_s - measured) / measured}
    if mem is not None:
        res |= {"measured_peak_memory_bytes": mem, "memory_error": (est.peak_memory_bytes - mem) / mem}
    return res


def load_runs(path: str | Path) -> list[dict]:
    """The records of a runs YAML (a regular UTF-8 file of at most MAX_RUNS_BYTES, aliases bounded)."""
    from simulator.planning.schema import read_text_file
    p = Path(path)
    try:
        text = read_text_file(p, "runs", MAX_RUNS_BYTES)
    except ValueError as e:
        raise ValueError(str(e).removeprefix("runs: ")) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            try:
                _check_nodes(root)
            except ValueError as e:
                raise ValueError(f"{p}: {e}") from None
        data = yaml.safe_load(text)
    except RecursionError:
        raise ValueError(f"{p}: YAML nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueError(f"{p}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{p}: expected a YAML list of run records")
    return data


MAX_RUNS_BYTES = 16 << 20        # dev_runs.yaml is ~150 KB
MAX_RUNS_NODES = 1_000_000       # YAML nodes after alias expansion


def _check_nodes(root) -> None:
    """ValueError when a YAML node tree has a recursive alias or expands past MAX_RUNS_NODES nodes."""
    seen, stack, on_path = 0, [(root, False)], set()
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            raise ValueError("YAML: a recursive alias (a node that contains itself); refused")
        seen += 1
        if seen > MAX_RUNS_NODES:
            raise ValueError(f"YAML aliases expand to more than {MAX_RUNS_NODES:,} nodes; refused")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            on_path.add(id(node))
            stack.append((node, True))
            kids = [v for kv in node.value for v in kv] if isinstance(node, yaml.MappingNode) else node.value
            stack.extend((k, False) for k in kids)


def summarize(records: list[dict], reliability: str | None = None) -> dict:
    """Count, skipped, MAPE, median and max absolute error of the compared records (the error figures
    are None when no record was compared)."""
    rows = [r for r in records if "error" in r and (reliability is None or r.get("reliability") == reliability)]
    errs = np.array([abs(r["error"]) for r in rows])
    stat = (lambda f: float(f(errs))) if rows else (lambda f: None)
    return {"count": len(rows), "skipped": sum("skipped" in r for r in records
                                               if reliability is None or r.get("reliability") == reliability),
            "mape": stat(np.mean), "median_abs_error": stat(np.median),
            "max_abs_error": stat(np.max), "reliability": reliability or "all"}


def predict_runs(path: str | Path, profile: str | Path | None = None) -> dict:
    """Predict every record of a runs file; ``profile``: a `clustersim calibrate` profile used for
    the records on the GPU it was measured on."""
    prof = None
    if profile is not None:
        from simulator.validation.calibrate.profile import read_profile
        prof = read_profile(profile)
    records = [predict_record(r, prof) for r in load_runs(path)]
    from simulator.validation.finetune_records import score_finetune_records  # fine-tuning memory and fits/OOM
    finetune = score_finetune_records(path)
    _route_finetune(records, finetune)
    return {"records": records, "summary": summarize(records),
            "summary_high": summarize(records, "high"), "summary_memory": summarize_memory(records),
            "finetune": finetune, "summary_finetune": summarize_finetune(finetune)}


def _route_finetune(records: list[dict], finetune: list[dict]) -> None:
    """A fine-tuning or offload record (LoRA, LOMO, QLoRA, ZeRO-Offload) states memory, capacity or a
    fits/OOM outcome rather than an iteration time: its row says where it is scored (the fine-tuning
    table) or why it cannot be, in the fine-tuning scorer's own words, instead of the time path's."""
    by_id = {r["id"]: r for r in finetune}
    for rec in records:
        ft = by_id.get(rec["id"])
        if ft is None or "skipped" not in rec:
            continue
        if "skipped" in ft:
            rec["skipped"] = ft["skipped"]
        else:
            rec.pop("skipped")
            rec["scored_on"] = f"{ft['kind']} (fine-tuning table)"


def summarize_finetune(rows: list[dict]) -> dict:
    """The fine-tuning/offload records: how many were scored, GPU-memory error where measured (mean and
    max |error|), stated fits/OOM outcomes reproduced, and how many the sources leave unscorable."""
    scored = [r for r in rows if "kind" in r]
    errs = np.array([abs(r["gpu_error"]) for r in scored if "gpu_error" in r])
    return {"count": len(scored), "skipped": sum("skipped" in r for r in rows), "memory_count": len(errs),
            "mean_abs_gpu_error": float(errs.mean()) if len(errs) else None,
            "max_abs_gpu_error": float(errs.max()) if len(errs) else None,
            "within_10pct": int((errs <= 0.10).sum()),
            "outcomes_reproduced": sum(1 for r in scored if r["fits_stated"] is not None
                                       and r["fits_stated"] == r["fits_predicted"]),
            "outcomes_stated": sum(1 for r in scored if r["fits_stated"] is not None)}


def summarize_memory(records: list[dict]) -> dict:
    """Peak-memory comparison over the records that measured it: count, mean and max |error|, and
    how many measured runs (which did run) the model predicts out of memory."""
    rows = [r for r in records if "memory_error" in r]
    errs = np.array([abs(r["memory_error"]) for r in rows])
    return {"count": len(rows), "mean_abs_error": float(errs.mean()) if rows else None,
            "max_abs_error": float(errs.max()) if rows else None,
            "predicted_oom_but_ran": sum(1 for r in records if r.get("fits") is False)}


__all__ = ["predict_runs", "predict_record", "summarize_finetune", "record_inputs", "record_framework", "load_runs",
           "summarize", "MAPPERS"]
