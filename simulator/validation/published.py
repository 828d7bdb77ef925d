"""Predict published, measured training runs (the format of shared/validation/dev_runs.yaml).

A record is mapped from what it states, never from its group name: the framework it names (or
its source repository, paper and software text name), the software and date, the hardware text,
and flags such as FSDP2, Float8 linears, --overlap-param-gather, pipeline_schedule, vp,
fsdp_degree or expert_tp. What the record leaves unstated comes from that framework's profile
(models/frameworks.py, each default with its source); every default used is listed in the
record's ``defaults``. Each topic is one mapping function of :data:`MAPPERS` (hardware, precision,
parallel layout, flags, batch); a new topic (fine-tuning: LoRA, optimizer, offload) is one more
function appended there.

Records without a stated framework keep the generic defaults: the lowest ZeRO stage that fits
(the run did fit), the largest micro-batch that fits where pp = 1, 1 under pipeline parallelism.
Records that measured peak memory but no time are scored on memory. A record is skipped only when
the source lacks what is needed or states something the model cannot express; the reason names
the field.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import yaml

from models.estimate import PlanError, estimate
from models.frameworks import apply_defaults, framework_errors, get_profile
from models.hardware import DEFAULT_NODE, get_node, make_cluster
from models.inputs import GENERIC_DEFAULTS as _GENERIC
from models.plan import Plan
from models.transformer import Transformer
from models.units import GBIT

# ------------------------------------------------------------------------------- what it states


def _text(*parts) -> str:
    return " ".join(str(p) for p in parts if p is not None and p != "")


def _stated(rec: dict) -> str:
    """Everything the record says about its software: framework, software, source, notes (lower case)."""
    par, src = rec.get("parallel") or {}, rec.get("source") or {}
    return _text(par.get("framework"), rec.get("framework"), rec.get("software"), *src.values(),
                 rec.get("notes"), rec.get("precision")).lower()


def _year(rec: dict) -> int | None:
    """The year of the source: the latest 20xx in its source, date and software text."""
    years = [int(y) for y in re.findall(r"\b(20[12]\d)\b", _text(rec.get("date"), *(rec.get("source") or {}).values(),
                                                                  rec.get("software")))]
    return max(years) if years else None


# (pattern in the stated text, profile) in order: the most specific first.
_FRAMEWORK_PATTERNS = (
    (r"torchtitan", "torchtitan"),
    (r"llm-foundry.*benchmarking/readme|benchmarking/readme.*llm-foundry", "llm-foundry-torch1"),
    (r"llm-foundry|composer", "llm-foundry"),
    (r"maxtext", "maxtext"),
    (r"megatron-deepspeed", "megatron-deepspeed"),
    (r"nemo|megatron-bridge|dgxc-benchmarking|megatron-core|mcore", "megatron-core"),
    (r"megatron-lm|megatron", "megatron-lm"),
    (r"pytorch fsdp|fully sharded data parallel", "fsdp"),
    (r"deepspeed|zero-offload|zero-3 offload", "deepspeed"),
)


def record_framework(rec: dict) -> str | None:
    """The framework profile a record's own text names (None: it names none, or names a framework
    without a profile, such as MegaScale). ``parallel.framework`` first, then the source, software
    and notes; Megatron-LM sources dated before 2023 are the pre-Megatron-Core code (megatron-lm-2020)."""
    own = _text((rec.get("parallel") or {}).get("framework"), rec.get("framework")).lower()
    if own and re.search(r"megascale", own):
        return None
    text = own or _stated(rec)
    for pattern, name in _FRAMEWORK_PATTERNS:
        if re.search(pattern, text):
            if name == "megatron-lm" and (_year(rec) or 2023) < 2023:
                return "megatron-lm-2020"
            return name
    return None


def _int(v, default):
    if v is None:
        return default
    m = re.match(r"\s*(\d+)", str(v))
    return int(m.group(1)) if m else default


def _flag(v) -> bool | None:
    """A stated boolean flag (True/False, 'true', 'on'); None when unstated."""
    if v is None:
        return None
    return str(v).strip().lower().split()[0] in ("true", "yes", "on", "1")


# ------------------------------------------------------------------------------- hardware

# (text in the record's GPU name, catalog GPU); longer names first ("GB200" contains "B200").
_GPU_NAMES = (("GB300", "gb300"), ("GB200", "gb200"), ("B300", "b300"), ("B200", "b200"), ("H800", "h800-sxm-80gb"),
              ("H200", "h200-sxm-141gb"), ("H20", "h20"), ("MI325", "mi325x"), ("MI300", "mi300x"),
              ("L40S", "l40s"), ("RTX 4090", "rtx-4090"), ("RTX 3090", "rtx-3090"), ("A800", "a800-sxm-80gb"),
              ("V100", "v100-sxm-32gb"))


def _gpu_key(text: str) -> str:
    """Catalog GPU for a record's hardware text: model, memory size, form factor and power variant."""
    t = text.upper().replace("-", " ")
    compact = t.replace(" ", "")
    if "H100" in t:
        if "PCIE" in compact:
            return "h100-pcie-80gb"
        if "NVL" in compact and "94" in compact:
            return "h100-nvl-94gb"
        if "HBM2E" in compact or "96GB" in compact or "95GB" in compact:
            return "h100-sxm-96gb-500w"
        return "h100-sxm-80gb"
    for key, name in _GPU_NAMES:
        if key in t:
            return name
    if "A100" in t or "AMPERE" in t:
        if "PCIE" in compact:
            return "a100-pcie-80gb" if "80GB" in compact else "a100-pcie-40gb"
        return "a100-sxm-40gb" if "40GB" in compact else "a100-sxm-80gb"
    raise ValueError(f"hardware.gpu: {text!r} names no GPU in the catalog")


def _nic_bytes_per_s_per_gpu(text: str | None, gpus_per_node: int) -> float | None:
    if not text:
        return None
    m = re.search(r"(\d+)\s*x\s*(?:NVIDIA\s+Mellanox\s+)?(\d+)\s*Gb", text, re.I)
    if m:
        return int(m.group(1)) * int(m.group(2)) * GBIT / gpus_per_node
    m = re.search(r"(\d+)\s*Gbps\s+node-node", text, re.I)
    if m:
        return int(m.group(1)) * GBIT / gpus_per_node
    m = re.search(r"(\d+)\s+Omni-?Path\s+links", text, re.I) or re.search(r"Omni-?Path.*?(\d+)\s+Omni-?Path", text, re.I)
    if m:  # Intel Omni-Path: 100 Gb/s per link
        return int(m.group(1)) * 100 * GBIT / gpus_per_node
    m = re.search(r"(\d+)\s*Gb/s\s+per\s+GPU", text, re.I)
    if m:
        return int(m.group(1)) * GBIT
    return None


def map_hardware(rec: dict, ctx: dict) -> None:
    """The cluster: GPU variant, server size (a partial NVLink domain is a topology fact: the GPUs
    used, each domain as large as the server allows), network from the record's inter-node text."""
    hw = rec["hardware"]
    gpu = _gpu_key(str(hw.get("gpu", "")))
    if hw.get("gpus_total") is None:
        raise ValueError("hardware.gpus_total: not stated")
    total = int(hw["gpus_total"])
    server_gpus = int(hw.get("gpus_per_node") or get_node(DEFAULT_NODE.get(gpu, "dgx-h100")).gpus_per_node)
    # the largest NVLink domain the allocation fills evenly: 128 GB200 GPUs are two 64-GPU halves of NVL72 racks
    gpn = max(d for d in range(1, min(server_gpus, total) + 1) if total % d == 0)
    overrides = {}
    if gpn != server_gpus:
        overrides["gpus_per_node"] = gpn
        if gpn != min(server_gpus, total):
            ctx["defaults"].append(f"hardware: {total} GPUs as {total // gpn} NVLink domains of {gpn}")
    nic = _nic_bytes_per_s_per_gpu(hw.get("inter_node"), server_gpus)
    if nic:
        overrides["nic_bytes_per_s_per_gpu"] = nic
    elif total > gpn:
        ctx["defaults"].append("network: GPU's usual server NICs")
    ctx["cluster"] = make_cluster(gpu, total // gpn, **overrides)


# ------------------------------------------------------------------------------- precision


def map_precision(rec: dict, ctx: dict) -> None:
    text = _text(rec.get("precision"), (rec.get("parallel") or {}).get("float8")).lower()
    if "mixed_precision: no" in text or ("fp32" in text and not re.search(r"bf16|fp16|fp8|float8|16-bit", text)):
        raise ValueError("precision: fp32 training is not modelled (dtype bf16/fp16/fp8)")
    dtype = ("fp8" if "fp8" in text or "float8" in text else
             "fp16" if "fp16" in text and "bf16" not in text else "bf16")
    gpu = ctx["cluster"].gpu
    if dtype == "bf16" and gpu.peak_bf16_flops_per_s <= 0:
        dtype = "fp16"
        if "bf16" in text:
            raise ValueError(f"precision: {rec.get('precision')!r} but {gpu.name} has no bf16 tensor cores")
    if "16-bit" in text and "bf16" not in text and "fp16" not in text:
        ctx["defaults"].append(f"dtype={dtype} (16-bit format not stated)")
    ctx["fields"]["dtype"] = dtype


# ------------------------------------------------------------------------------- parallel layout and flags


def _zero_stage(par: dict) -> int | None:
    text = _text(par.get("zero_stage"), par.get("fsdp_sharding_strategy")).upper()
    if not text:
        return None
    m = re.match(r"\s*(\d)", text)
    if m:
        return int(m.group(1))
    if "SHARD_GRAD_OP" in text or "ZERO-2" in text:
        return 2
    if "NO_SHARD" in text:
        return 0
    if any(k in text for k in ("FULL_SHARD", "HYBRID_SHARD", "FSDP", "ZERO-3", "FULLY SHARDED")):
        return 3
    raise ValueError(f"parallel.zero_stage: {par.get('zero_stage')!r} names no ZeRO stage or FSDP strategy")


def _recompute(v) -> str | None:
    if v is None:
        return None
    t = str(v).lower()
    if t.startswith("selective"):
        return "selective"
    if t.startswith("none") or t in ("false",):
        return "none"
    if t.startswith(("full", "true", "activation checkpointing")):
        return "full"
    raise ValueError(f"parallel.recompute: {v!r} is not none, selective or full")


def map_parallel(rec: dict, ctx: dict) -> None:
    """Degrees, ZeRO/FSDP stage, SP, recompute, the pipeline schedule and vp, expert TP."""
    par, f = rec.get("parallel") or {}, ctx["fields"]
    total = ctx["cluster"].num_gpus
    tp, pp, cp = _int(par.get("tp"), 1), _int(par.get("pp"), 1), _int(par.get("cp"), 1)
    sched = str(par.get("pipeline_schedule") or "").lower()
    vp = _int(par.get("vp"), None)
    m = re.search(r"(\d+)\s+interleav", sched)
    if vp is None and m:
        vp = int(m.group(1))
    f.update(tp=tp, pp=pp, cp=cp, dp=_int(par.get("dp"), total // (tp * pp * cp)), ep=_int(par.get("ep"), 1),
             vpp=vp or 1)
    if "interleav" in sched or (vp or 1) > 1:
        f["schedule"] = "interleaved"
    elif "gpipe" in sched:
        f["schedule"] = "gpipe"
    elif "zero bubble" in sched or "zb" in sched:
        f["schedule"] = "zb-h1"
    else:
        f["schedule"] = "1f1b"
    if "interleav" in sched and f["vpp"] == 1:  # the source does not say how many chunks: plain 1F1B
        f["schedule"] = "1f1b"
        ctx["defaults"].append("vp=1 (interleaved, chunks per rank not stated)")
    zero = _zero_stage(par)
    if zero is not None:
        f["zero_stage"] = zero
    fsdp_degree = _int(par.get("fsdp_degree"), None)
    if fsdp_degree and fsdp_degree not in (f["dp"], f["dp"] * cp):
        ctx["defaults"].append(f"fsdp_degree={fsdp_degree} < dp={f['dp']}: HSDP modelled as ZeRO over all dp")
    sp = _flag(par.get("sequence_parallel"))
    if sp is not None:
        f["sp"] = sp
    rc = _recompute(par.get("recompute"))
    if rc is not None:
        f["recompute"] = rc
    etp = _int(par.get("expert_tp"), None)
    if etp not in (None, 1) and "expert_tp" in Plan.__dataclass_fields__:
        f["expert_tp"] = etp


def map_flags(rec: dict, ctx: dict) -> None:
    """Attention kernel, overlaps, async TP, float8 from the record's own words."""
    par, f = rec.get("parallel") or {}, ctx["fields"]
    kernel = _text(rec["model"].get("attention"), par.get("attention_kernel")).lower()
    if "flash_attention2" in kernel or "flashattention-2" in kernel or "flash-attn 2" in kernel:
        f["attention"] = "flash"
    elif "flash" in kernel:  # FlashAttention of the generation its framework and era ran (see record_inputs)
        ctx["flash_stated"] = True
    overlap = _text(par.get("overlap"), par.get("flags")).lower()
    if "overlap-param-gather" in overlap or "all-gather" in overlap:
        f["overlap_param_gather"] = True
    if "overlap-grad-reduce" in overlap or "reduce-scatter" in overlap:
        f["overlap_grad_reduce"] = True
    atp = _flag(par.get("async_tp"))
    if atp is not None:
        f["overlap_tp_comm"] = atp


def map_training_method(rec: dict, ctx: dict) -> None:
    """What the fine-tuning mapping (LoRA, optimizer, offload) does not express yet is a stated field."""
    method = str(rec.get("training_method") or "full").lower()
    if method != "full":
        raise ValueError(f"training_method: {method!r} is not modelled by the record mapping (full training only)")
    opt = str(rec.get("optimizer") or "adam").lower()
    if not opt.startswith("adam"):
        raise ValueError(f"optimizer: {rec.get('optimizer')!r} is not modelled (Adam/AdamW state only)")
    if (rec.get("parallel") or {}).get("offload"):
        raise ValueError(f"parallel.offload: {rec['parallel']['offload']!r} is not modelled by the record mapping")


# Topic mappers, in order; each reads the record and fills ctx (cluster, fields, defaults, notes).
MAPPERS = [map_training_method, map_hardware, map_precision, map_parallel, map_flags]


# ------------------------------------------------------------------------------- model


def record_model(rec: dict, framework: str | None = None) -> Transformer:
    m = rec["model"]
    moe = m.get("moe") or {}
    act = "swiglu" if "swiglu" in str(m.get("ffn_activation", "")).lower() else "gelu"
    prof = get_profile(framework)
    dropout = bool(prof.defaults["dropout"].value) if prof is not None and "dropout" in prof.defaults else False
    for key in ("layers", "hidden", "heads", "seq_len"):
        if m.get(key) is None:
            raise ValueError(f"model.{key}: not stated")
    return Transformer(
        name=m.get("name", rec["id"]), num_layers=int(m["layers"]), hidden=int(m["hidden"]),
        num_heads=int(m["heads"]), num_kv_heads=int(m.get("kv_heads") or m["heads"]),
        ffn_hidden=int(m.get("ffn_hidden") or 4 * m["hidden"]), vocab=int(m.get("vocab") or 32000),
        seq_len=int(m["seq_len"]), activation=act,
        tied_embeddings=act == "gelu", dropout=dropout,
        learned_pos_emb=act == "gelu" and "ALiBi" not in str(m.get("position", "")),
        head_dim=(m.get("head_dim") or (64 if moe and m["hidden"] % m["heads"] else None)),
        num_experts=int(moe.get("num_experts") or 0), top_k=int(moe.get("top_k") or 0),
        expert_ffn_hidden=int(moe.get("expert_ffn_hidden") or 0),
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
    errs = framework_errors(f, framework)
    if errs:
        raise ValueError("; ".join(errs))
    return _choose_batch_and_zero(model, cluster, f, bat, stated, framework, defaults)


def _unstated(name: str, f: dict, stated: set, framework: str | None, order: tuple) -> list:
    """Values to try for a field the record leaves out: the framework's default first, then the others
    it can run that save memory (``order``: least to most saving); the stated value alone when stated."""
    from models.frameworks import allowed_values
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


def measured_iteration_time_s(rec: dict) -> float | None:
    t = (rec.get("measured") or {}).get("iteration_time_s")
    if t is None:
        t = (rec.get("derived") or {}).get("iteration_time_s")
    return float(t) if t is not None else None


def measured_memory_bytes(rec: dict) -> float | None:
    m = (rec.get("measured") or {}).get("memory_gib_per_gpu")
    return float(m) * 2**30 if m is not None else None


# Bounds of a record's numbers (a record outside them is skipped with the field named; issue 17).
_RECORD_NUMBERS = {("model", "layers"): 1 << 16, ("model", "hidden"): 1 << 20, ("model", "heads"): 1 << 14,
                   ("model", "seq_len"): 1 << 34, ("hardware", "gpus_total"): 1 << 20,
                   ("batch", "global_batch_seqs"): 1 << 30}
_OPTIONAL_NUMBERS = {("model", "kv_heads"): 1 << 14, ("model", "ffn_hidden"): 1 << 24, ("model", "vocab"): 1 << 24,
                     ("hardware", "gpus_per_node"): 1024, ("batch", "micro_batch"): 1 << 30}


def check_record(rec) -> None:
    """ValueError naming the field when a record is not the shape predict_record reads: sections that
    are mappings, whole numbers >= 1 within bounds, parallel degrees >= 1, a positive finite measured time."""
    if not isinstance(rec, dict):
        raise ValueError(f"record: must be a mapping, got {type(rec).__name__}")
    for sec in ("model", "hardware", "batch"):
        if not isinstance(rec.get(sec), dict):
            raise ValueError(f"{sec}: must be a mapping, got {rec.get(sec)!r}")
    for sec in ("parallel", "measured", "derived"):
        if rec.get(sec) is not None and not isinstance(rec[sec], dict):
            raise ValueError(f"{sec}: must be a mapping, got {rec[sec]!r}")
    for table, required in ((_RECORD_NUMBERS, True), (_OPTIONAL_NUMBERS, False)):
        for (sec, key), hi in table.items():
            v = rec[sec].get(key)
            if v is None and not required:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) \
                    or not 1 <= v <= hi:
                raise ValueError(f"{sec}.{key}: must be a whole number in [1, {hi:,}], got {v!r}")
    for key in ("tp", "pp", "cp", "dp", "ep", "vp"):
        v = (rec.get("parallel") or {}).get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not 1 <= v <= rec["hardware"]["gpus_total"]:
            raise ValueError(f"parallel.{key}: must be in [1, gpus_total], got {v!r}")
    for sec in ("measured", "derived"):
        t = (rec.get(sec) or {}).get("iteration_time_s")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
                              or t <= 0):
            raise ValueError(f"{sec}.iteration_time_s: must be a finite number > 0 seconds, got {t!r}")


def gpu_generation(gpu_name: str) -> str:
    """The architecture family a GPU belongs to, for error tables by generation (models.kernel_tables)."""
    from models.kernel_tables import gpu_arch
    return {"ampere": "Ampere", "hopper": "Hopper", "blackwell": "Blackwell"}.get(gpu_arch(gpu_name),
                                                                              gpu_arch(gpu_name).capitalize())


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
        return out | {"skipped": "measured.iteration_time_s / memory_gib_per_gpu: no iteration time or peak memory "
                                 "stated or derivable in the record"}
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
    return {"records": records, "summary": summarize(records),
            "summary_high": summarize(records, "high"), "summary_memory": summarize_memory(records),
            "finetune": score_finetune_records(path)}


def summarize_memory(records: list[dict]) -> dict:
    """Peak-memory comparison over the records that measured it: count, mean and max |error|, and
    how many measured runs (which did run) the model predicts out of memory."""
    rows = [r for r in records if "memory_error" in r]
    errs = np.array([abs(r["memory_error"]) for r in rows])
    return {"count": len(rows), "mean_abs_error": float(errs.mean()) if rows else None,
            "max_abs_error": float(errs.max()) if rows else None,
            "predicted_oom_but_ran": sum(1 for r in records if r.get("fits") is False)}


__all__ = ["predict_runs", "predict_record", "record_inputs", "record_framework", "load_runs", "summarize", "MAPPERS"]
