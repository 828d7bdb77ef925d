"""Map a published, measured training run (the format of shared/validation/dev_runs.yaml) to clustersim's
model, cluster and plan fields, topic by topic; simulator.validation.published fills the rest and predicts it.

A record is mapped from what it states, never from its group name: the framework it names (or
its source repository, paper and software text name), the software and date, the hardware text,
and flags such as FSDP2, Float8 linears, --overlap-param-gather, pipeline_schedule, vp,
fsdp_degree or expert_tp. What the record leaves unstated comes from that framework's profile
(models/frameworks.py, each default with its source); every default used is listed in the
record's ``defaults``. Each topic is one mapping function of :data:`MAPPERS` (hardware, precision,
parallel layout, flags, batch); a new topic (fine-tuning: LoRA, optimizer, offload) is one more
function appended there.
"""

from __future__ import annotations

import math
import re

from models import recipes
from models.frameworks import get_profile
from models.hardware import DEFAULT_NODE, get_node, make_cluster
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


# A system named as built on a framework ("MegaScale (built on Megatron-LM)") runs that framework's code:
# its profile applies, and what the system changed is what the record states.
_BUILT_ON = re.compile(r"\b(?:built on|based on|fork of|on top of|derived from)\b(.*)")


def record_framework(rec: dict) -> str | None:
    """The framework profile a record's own text names (None: it names none, or names a framework
    without a profile). ``parallel.framework`` first, then the source, software and notes; a system
    "built on" a framework (MegaScale on Megatron-LM) takes that framework's profile; Megatron-LM
    sources dated before 2023 are the pre-Megatron-Core code (megatron-lm-2020)."""
    own = _text((rec.get("parallel") or {}).get("framework"), rec.get("framework")).lower()
    base = _BUILT_ON.search(own)
    text = base.group(1) if base else own or _stated(rec)
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
        # fp32 training: 4-byte weights, gradients and activations, FP32 GEMMs; FlashAttention takes 16-bit only
        ctx["fields"]["dtype"], ctx["fields"]["attention"] = "fp32", "unfused"
        ctx["defaults"].append("attention=unfused (fp32: no FlashAttention)")
        return
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
    # the weight gathers' and the gradient reduction's dtypes where the record says them ("FSDP float8
    # all-gather"; "reduce fp32", "reduce_dtype float32")
    if re.search(r"(fsdp )?(float8|fp8) (all-gather|param)|fp8_param", text):
        ctx["fields"]["fp8_param_gather"] = True
    red = re.search(r"reduce(?:_dtype)?\s*[:=]?\s*(fp32|float32|bf16|bfloat16|fp16)", text)
    if red:
        ctx["fields"]["grad_reduce_fp32"] = red.group(1) in ("fp32", "float32")


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


# torchtitan's selective activation checkpointing (torchtitan/parallelisms/parallelize_llama.py@0011fb9,
# config_manager.py --activation_checkpoint.selective_ac_option, default "2"): "layer" SAC wraps every Nth
# block in full checkpointing; "op" SAC saves the outputs of every other mm (and SDPA, reduce-scatter) and
# recomputes the rest, i.e. about half of each block's forward matmuls plus its elementwise ops, costed
# here as full recomputation of half the layers (the same recomputed matmuls and about the same memory).
_TITAN_SAC_EVERY = 2


def _layer_share(v, ctx: dict) -> float | None:
    """The share of layers a stated layer-level or op-level selective checkpointing recomputes fully."""
    t = str(v or "").lower()
    m = re.search(r"selective\s*\((layer|op)", t)
    if not m:
        return None
    every = re.search(r"every\s+(\d+)", t)
    n = int(every.group(1)) if every else _TITAN_SAC_EVERY
    if m.group(1) == "op":
        ctx["defaults"].append("recompute: op-level SAC (every other matmul saved) costed as full recompute of "
                               "half the layers")
        return 0.5
    ctx["defaults"].append(f"recompute: layer-level SAC, every {n}th layer (torchtitan selective_ac_option "
                           f"default '{_TITAN_SAC_EVERY}')" if n == _TITAN_SAC_EVERY else
                           f"recompute: layer-level SAC, every {n}th layer")
    return 1.0 / n


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
    if vp is None and pp > 1 and ctx.get("framework") == "megatron-core":
        # a NeMo run of a model NeMo's performance scripts launch with this tp x pp: their interleaving
        system = ctx["cluster"].gpu.name.split("-")[0]
        found = recipes.nemo_perf_vp((rec.get("model") or {}).get("name", ""), system, tp, pp)
        if found and found[0] > 1:
            vp = found[0]
            ctx["defaults"].append(f"vp={vp}: {found[1]} (tp={tp}, pp={pp})")
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
    # hybrid sharding (HSDP, FSDP HYBRID_SHARD, ZeRO++ hpZ): states sharded over groups of fsdp_degree ranks,
    # replicated across them (Plan.shard_group); HYBRID_SHARD without a degree shards within a node (PyTorch
    # FSDP's default process groups for it: torch/distributed/fsdp/_init_utils.py@v2.1.0 _init_intra_and_inter_node_groups)
    fsdp_degree = _int(par.get("fsdp_degree"), None)
    dpcp = f["dp"] * cp
    if fsdp_degree is None and "HYBRID_SHARD" in str(par.get("fsdp_sharding_strategy") or "").upper():
        fsdp_degree = min(ctx["cluster"].node.gpus_per_node, dpcp)
        ctx["defaults"].append(f"shard_group={fsdp_degree} (HYBRID_SHARD: shards within a node)")
    if fsdp_degree and fsdp_degree < dpcp:
        if dpcp % fsdp_degree:
            raise ValueError(f"parallel.fsdp_degree: {fsdp_degree} does not divide dp*cp = {dpcp}")
        f["shard_group"] = fsdp_degree
    sp = _flag(par.get("sequence_parallel"))
    if sp is not None:
        f["sp"] = sp
    rc = _recompute(par.get("recompute"))
    if rc is not None:
        f["recompute"] = rc
    frac = _layer_share(par.get("recompute"), ctx)
    if frac is not None:
        f["recompute"], f["recompute_fraction"] = "full", frac
    etp = _int(par.get("expert_tp"), None)   # Megatron-Core --expert-tensor-parallel-size (unstated: = tp)
    if etp is not None:
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
    # torch.compile fuses the elementwise ops ("torch.compile = true in train_configs/llama3_405b.toml"; "default
    # compile=false"); a kernel-fusion flag of Megatron (--no-rope-fusion) switches them off
    said = _text(par.get("flags"), par.get("compile"), rec.get("notes"), rec.get("software")).lower()
    compiled = _COMPILE.search(said)
    if compiled:
        f["fused_elementwise"] = compiled.group(1) == "true"
    elif "--no-rope-fusion" in said or "--no-bias-swiglu-fusion" in said:
        f["fused_elementwise"] = False
    _map_norm(rec, ctx)


_COMPILE = re.compile(r"compile\s*[=:]\s*(true|false)\b")
# A fused RMSNorm kernel named among the record's kernels ("flash_attention2 + RMS kernel": Hagemann et al.'s
# FlashAttention-2 fused RMSNorm; torchtitan's norm_type "fused_rmsnorm"; Transformer Engine's RMSNorm)
_FUSED_NORM = re.compile(r"\brms kernel|\bfused[_ -]?rms[_ -]?norm|\bte[_ -]?rmsnorm\b")


def _map_norm(rec: dict, ctx: dict) -> None:
    """fused_norm where the record's kernel list names a fused RMSNorm; otherwise the profile's default (torchtitan's
    configs chose per model: at 157a12c56 llama3_8b / llama2_13b fused_rmsnorm, llama2_70b / llama3_70b rmsnorm,
    so a torchtitan record that does not name its norm kernel keeps the default)."""
    par = rec.get("parallel") or {}
    said = _text(par.get("attention_kernel"), par.get("kernels"), par.get("flags"), rec["model"].get("norm")).lower()
    if _FUSED_NORM.search(said):
        ctx["fields"]["fused_norm"] = True


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


# The vocabulary a record's own inferred_fields give where model.vocab is null ("reproduces the stated
# MFU*step_time ... if vocab=128000", "implies ~128k"): the record's author derived it, often jointly with other
# inferred fields (Hagemann et al. records: the global batch follows from the same check), so it is what the
# record states, not a default.
_INFERRED_VOCAB = (re.compile(r"vocab\s*[=:]\s*~?(\d[\d,]*)\s*(k?)\b", re.I),
                   re.compile(r"implies\s*~?(\d[\d,]*)\s*(k)\b", re.I))
DEFAULT_VOCAB = 32000  # the LLaMA-1/2 SentencePiece vocabulary (Touvron et al. 2023): used only where nothing is stated


def record_vocab(rec: dict) -> tuple[int, str | None]:
    """(vocabulary, how it was read): model.vocab; else the first figure the record's inferred_fields give
    for it (the model.vocab entry first); else :data:`DEFAULT_VOCAB`, said as a default.

    >>> record_vocab({"model": {"vocab": None}, "inferred_fields": {"model.vocab": "null; implies ~128k"}})
    (128000, "vocab=128000 (model.vocab null; the record's inferred_fields give it)")
    """
    m = rec.get("model") or {}
    if m.get("vocab") is not None:
        return int(m["vocab"]), None
    inferred = rec.get("inferred_fields") or {}
    texts = [str(inferred.get("model.vocab") or "")] + [str(v) for k, v in inferred.items() if k != "model.vocab"]
    for text in texts:
        for pattern in _INFERRED_VOCAB:
            hit = pattern.search(text)
            if hit:
                vocab = int(hit.group(1).replace(",", "")) * (1000 if hit.group(2) else 1)
                return vocab, f"vocab={vocab} (model.vocab null; the record's inferred_fields give it)"
    return DEFAULT_VOCAB, f"vocab={DEFAULT_VOCAB} (model.vocab not stated)"


def record_model(rec: dict, framework: str | None = None) -> Transformer:
    m = rec["model"]
    moe = m.get("moe") or {}
    act = "swiglu" if "swiglu" in str(m.get("ffn_activation", "")).lower() else "gelu"
    prof = get_profile(framework)
    dropout = bool(prof.defaults["dropout"].value) if prof is not None and "dropout" in prof.defaults else False
    for key in ("layers", "hidden", "heads", "seq_len"):
        if m.get(key) is None:
            raise ValueError(f"model.{key}: not stated")
    # local attention and attention sinks where the record's model text states them ("alternating full /
    # 128-token sliding-window attention; attention sinks": gpt-oss)
    words = " ".join(str(x) for x in (m.get("attention"), m.get("note"), moe.get("note") if moe else None) if x).lower()
    win = re.search(r"(\d+)[- ]token sliding[- ]window", words)
    window = int(win.group(1)) if win else 0
    sliding = (int(m["layers"]) // 2 if "alternating" in words else int(m["layers"])) if window else 0
    return Transformer(
        name=m.get("name", rec["id"]), num_layers=int(m["layers"]), hidden=int(m["hidden"]),
        num_heads=int(m["heads"]), num_kv_heads=int(m.get("kv_heads") or m["heads"]),
        ffn_hidden=int(m.get("ffn_hidden") or 4 * m["hidden"]), vocab=record_vocab(rec)[0],
        seq_len=int(m["seq_len"]), activation=act, norm="rmsnorm" if "rms" in str(m.get("norm") or "").lower()
        else "layernorm",
        tied_embeddings=act == "gelu", dropout=dropout,
        learned_pos_emb=act == "gelu" and "alibi" not in str(m.get("position", "")).lower(),
        rotary="alibi" not in str(m.get("position", "")).lower(),
        head_dim=(m.get("head_dim") or (64 if moe and m["hidden"] % m["heads"] else None)),
        num_experts=int(moe.get("num_experts") or 0), top_k=int(moe.get("top_k") or 0),
        expert_ffn_hidden=int(moe.get("expert_ffn_hidden") or 0),
        sliding_window=window, num_sliding_layers=sliding, attn_sinks="sink" in words,
    )


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
