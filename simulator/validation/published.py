"""Predict published, measured training runs (the format of shared/validation/dev_runs.yaml).

Defaults for fields a source leaves null, each recorded in the record's ``defaults``:
  micro_batch   pp > 1: 1 (Megatron's usual setting for large models); pp = 1: the largest
                divisor of the per-replica batch (up to 16) whose estimate fits in memory
  vp            1 (plain 1F1B) unless given
  zero_stage    the lowest stage that fits in memory (0 first); FSDP FULL_SHARD -> 3,
                SHARD_GRAD_OP -> 2 as the record says
  sp            false;   recompute: none;   ep: 1;   cp: 1
  attention     flash where the record names FlashAttention or the run is from 2023 on; flash1
                (FlashAttention v1) for the llm-foundry A100 tables (torch 1.13 era, see _FLASH1_GROUPS);
                unfused (materialised scores) for Megatron 2020/2021 and BLOOM (2022) runs
  overlap       DP gradient reduction not overlapped for Megatron 2020/2021 ('--DDP-impl local'
                all-reduces after backward) and BLOOM's DeepSpeed BF16 optimizer; overlapped otherwise
  dropout       true for Megatron GPT runs (hidden/attention dropout 0.1 by default), false otherwise
  network       parsed from hardware.inter_node ("8x 200 Gb/s", "1600 Gbps node-node",
                "4 Omni-Path links" at 100 Gb/s each); else the GPU's usual server
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import yaml

from models.estimate import PlanError, estimate
from models.hardware import DEFAULT_NODE, get_node, make_cluster
from models.plan import Plan
from models.transformer import Transformer
from models.units import GBIT

_UNFUSED_GROUPS = ("megatron_sc21", "megatron_2020", "bloom")
# llm-foundry's benchmark README carries "TODO: Update tables with torch 2.0 after next Composer
# release": its A100 tables were measured with torch 1.13, i.e. FlashAttention v1 (v2 needs newer stacks).
_FLASH1_GROUPS = ("mosaicml_llmfoundry",)


def _gpu_key(text: str) -> str:
    """Catalog GPU for a record's hardware text; longer names first ("GB200" contains "B200")."""
    t = text.upper()
    for key, name in (("H800", "h800-sxm-80gb"), ("H200", "h200-sxm-141gb"), ("H100", "h100-sxm-80gb"),
                      ("GB200", "gb200"), ("B200", "b200"), ("MI300", "mi300x"), ("V100", "v100-sxm-32gb")):
        if key in t:
            return name
    if "A100" in t:
        return "a100-sxm-40gb" if "40GB" in t.replace(" ", "") else "a100-sxm-80gb"
    raise ValueError(f"hardware.gpu: {text!r} is not in the catalog")


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


def _int(v, default):
    if v is None:
        return default
    m = re.match(r"\s*(\d+)", str(v))
    return int(m.group(1)) if m else default


def record_model(rec: dict) -> Transformer:
    m = rec["model"]
    group = rec.get("group", "")
    moe = m.get("moe") or {}
    act = "swiglu" if "swiglu" in str(m.get("ffn_activation", "")).lower() else "gelu"
    return Transformer(
        name=m.get("name", rec["id"]), num_layers=int(m["layers"]), hidden=int(m["hidden"]),
        num_heads=int(m["heads"]), num_kv_heads=int(m.get("kv_heads") or m["heads"]),
        ffn_hidden=int(m.get("ffn_hidden") or 4 * m["hidden"]), vocab=int(m.get("vocab") or 32000),
        seq_len=int(m["seq_len"]), activation=act,
        tied_embeddings=act == "gelu", dropout=group.startswith(("megatron_sc21", "megatron_2020")),
        learned_pos_emb=act == "gelu" and "ALiBi" not in str(m.get("position", "")),
        head_dim=(m.get("head_dim") or (64 if moe and m["hidden"] % m["heads"] else None)),
        num_experts=int(moe.get("num_experts") or 0), top_k=int(moe.get("top_k") or 0),
        expert_ffn_hidden=int(moe.get("expert_ffn_hidden") or 0),
    )


def record_inputs(rec: dict):
    """(model, cluster, plan, defaults used) for one published record; ValueError if it can't be expressed."""
    defaults = []
    model = record_model(rec)
    hw, par, bat = rec["hardware"], rec["parallel"], rec["batch"]
    group = rec.get("group", "")
    gpu = _gpu_key(hw["gpu"])
    total = int(hw["gpus_total"])
    # unstated server size: the GPU's usual server (8, or one 72-GPU NVLink domain for GB200 NVL72)
    server_gpus = int(hw.get("gpus_per_node") or get_node(DEFAULT_NODE.get(gpu, "dgx-h100")).gpus_per_node)
    gpn = min(server_gpus, total)
    if total % gpn:
        raise ValueError(f"hardware: {total} GPUs are not whole nodes of {gpn}")
    overrides = {}
    if gpn != server_gpus:
        overrides["gpus_per_node"] = gpn
    nic = _nic_bytes_per_s_per_gpu(hw.get("inter_node"), server_gpus)
    if nic:
        overrides["nic_bytes_per_s_per_gpu"] = nic
    elif total > gpn:
        defaults.append("network: GPU's usual server NICs")
    cluster = make_cluster(gpu, total // gpn, **overrides)
    precision = str(rec.get("precision", "")).lower()
    dtype = "fp8" if "fp8" in precision else ("fp16" if "fp16" in precision and "bf16" not in precision else "bf16")
    if gpu.startswith("v100"):
        dtype = "fp16"
    zero = _int(par.get("zero_stage"), None)
    zero_stated = zero is not None
    if zero is None:
        fsdp = str(par.get("fsdp_sharding_strategy") or "")
        zero = 3 if fsdp == "FULL_SHARD" else 2 if fsdp == "SHARD_GRAD_OP" else 0
        zero_stated = bool(fsdp)
    rc_text = str(par.get("recompute") or "none").split()[0].lower()
    recompute = rc_text if rc_text in ("none", "selective", "full") else "full" if "true" in rc_text else "none"
    if par.get("recompute") is None:
        defaults.append("recompute=none")
    kernel = " ".join(str(x) for x in (rec["model"].get("attention"), par.get("attention_kernel")) if x).lower()
    attention = "flash" if "flash" in kernel else ("unfused" if group.startswith(_UNFUSED_GROUPS) else "flash")
    if attention == "flash" and group.startswith(_FLASH1_GROUPS) and "flash_attention2" not in kernel:
        attention = "flash1"
        defaults.append("attention=flash1 (torch 1.13 era tables)")
    if "flash" not in kernel:
        defaults.append(f"attention={attention}")
    legacy = group.startswith(_UNFUSED_GROUPS)
    vp = _int(par.get("vp"), 1)
    pp = _int(par.get("pp"), 1)
    sp = bool(par.get("sequence_parallel")) and str(par.get("sequence_parallel")).lower() not in ("false", "none")
    tp, cp = _int(par.get("tp"), 1), _int(par.get("cp"), 1)
    dp = _int(par.get("dp"), total // (tp * pp * cp))
    base = dict(dp=dp, tp=tp, pp=pp, cp=cp, ep=_int(par.get("ep"), 1), vpp=vp, sp=sp, zero_stage=zero,
                recompute=recompute, schedule="interleaved" if vp > 1 else "1f1b", dtype=dtype,
                attention=attention, overlap_grad_reduce=not legacy, global_batch_size=int(bat["global_batch_seqs"]))
    mb = bat.get("micro_batch")
    per_replica = base["global_batch_size"] // dp
    if mb is not None:
        mbs = [int(mb)]
    elif pp > 1:
        mbs = [1]
        defaults.append("micro_batch=1")
    else:
        mbs = sorted((d for d in range(1, min(per_replica, 16) + 1) if per_replica % d == 0), reverse=True)
    # ZeRO stage not stated: the lowest stage that fits (a run that was measured did fit).
    zeros = [zero] if zero_stated else [zero, 1, 2, 3]
    for z in zeros:
        for cand in mbs:
            plan = Plan(micro_batch_size=cand, **{**base, "zero_stage": z})
            try:
                fits = estimate(model, cluster, plan).fits
            except PlanError:
                fits = False
            if fits:
                if len(mbs) > 1:
                    defaults.append(f"micro_batch={cand} (largest that fits)")
                if not zero_stated:
                    defaults.append(f"zero_stage={z} (lowest that fits)")
                return model, cluster, plan, defaults
    if not zero_stated:
        defaults.append(f"zero_stage={zero}")
    if len(mbs) > 1:
        defaults.append("micro_batch=1")
    return model, cluster, Plan(micro_batch_size=mbs[-1], **base), defaults


def measured_iteration_time_s(rec: dict) -> float | None:
    t = (rec.get("measured") or {}).get("iteration_time_s")
    if t is None:
        t = (rec.get("derived") or {}).get("iteration_time_s")
    return float(t) if t is not None else None


def predict_record(rec: dict, profile=None) -> dict:
    """Measured vs predicted for one record; ``profile``: a measured profile dict (or list of them)
    applied to the records whose GPU it was measured on."""
    out = {"id": rec.get("id", "?"), "reliability": rec.get("reliability"), "group": rec.get("group")}
    measured = measured_iteration_time_s(rec)
    if measured is None:
        return out | {"skipped": "no iteration time stated or derivable in the record"}
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
    return out | {
        "measured_iteration_time_s": measured, "predicted_iteration_time_s": est.step_time_s,
        "error": (est.step_time_s - measured) / measured, "predicted_peak_memory_bytes": est.peak_memory_bytes,
        "fits": est.fits, "predicted_mfu": est.mfu, "plan_id": plan.plan_id, "defaults": defaults,
        "compute_s": est.compute_s, "exposed_comm_s": est.exposed_comm_s, "bubble_s": est.bubble_s,
    }


def load_runs(path: str | Path) -> list[dict]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueError(f"{p}:{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{p}: expected a YAML list of run records")
    return data


def summarize(records: list[dict], reliability: str | None = None) -> dict:
    rows = [r for r in records if "error" in r and (reliability is None or r.get("reliability") == reliability)]
    errs = np.array([abs(r["error"]) for r in rows]) if rows else np.array([math.nan])
    return {"count": len(rows), "skipped": sum("skipped" in r for r in records
                                               if reliability is None or r.get("reliability") == reliability),
            "mape": float(np.mean(errs)), "median_abs_error": float(np.median(errs)),
            "max_abs_error": float(np.max(errs)), "reliability": reliability or "all"}


def predict_runs(path: str | Path, profile: str | Path | None = None) -> dict:
    """Predict every record of a runs file; ``profile``: a `clustersim calibrate` profile used for
    the records on the GPU it was measured on."""
    prof = None
    if profile is not None:
        from simulator.validation.calibrate.profile import read_profile
        prof = read_profile(profile)
    records = [predict_record(r, prof) for r in load_runs(path)]
    return {"records": records, "summary": summarize(records),
            "summary_high": summarize(records, "high")}


__all__ = ["predict_runs", "predict_record", "record_inputs", "load_runs", "summarize"]
