"""Megatron-LM / Megatron-Core: a bash launch script whose ``MEGATRON_ARGS`` array holds
``pretrain_gpt.py`` command-line arguments."""

from __future__ import annotations

from models.export.common import (
    MEGATRON_2020_SRC,
    MEGATRON_SRC,
    Export,
    _header,
    _layers_per_virtual_stage,
    _recompute_num_layers,
    _refuse,
)
from models.plan import DEFAULT_PLACEMENT, SCHEDULE_IDS, Plan, Recompute, Schedule

# ---------------------------------------------------------------------------------- Megatron-LM

def megatron_args(plan: Plan, model, cluster, prof) -> Export:
    """Megatron-LM / Megatron-Core ``pretrain_gpt.py`` arguments as a bash script.

    Key names: NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0 (baf94af): --tensor-model-
    parallel-size, --pipeline-model-parallel-size, --num-layers-per-virtual-pipeline-stage,
    --context-parallel-size, --expert-model-parallel-size, --sequence-parallel, --use-distributed-optimizer,
    --micro-batch-size, --global-batch-size, --recompute-granularity {full,selective}, --recompute-method
    {uniform,block}, --recompute-num-layers, --overlap-grad-reduce, --overlap-param-gather (asserts the
    distributed optimizer and --overlap-grad-reduce), --tp-comm-overlap (asserts --sequence-parallel),
    --bf16/--fp16, --fp8-format {e4m3,hybrid}, --transformer-impl {local,transformer_engine}. The 2020-2022
    profile (megatron-lm-2020) uses megatron/arguments.py@v2.5: --checkpoint-activations, no CP/SP/distributed
    optimizer/--transformer-impl. Megatron derives dp from the world size: WORLD_SIZE / (tp * pp * cp).
    """
    legacy = prof.name == "megatron-lm-2020"
    src = MEGATRON_2020_SRC if legacy else MEGATRON_SRC
    errs = []
    if plan.schedule in (Schedule.GPIPE, Schedule.ZERO_BUBBLE) and plan.pp > 1:
        errs.append(f"schedule: Megatron-LM runs 1F1B or interleaved 1F1B, not {SCHEDULE_IDS[plan.schedule]}")
    if plan.overlap_tp_comm and plan.tp > 1 and not plan.sp:
        errs.append("overlap_tp_comm: Megatron-LM asserts --tp-comm-overlap only with --sequence-parallel "
                    f"({src}); set sp=true or overlap_tp_comm=false")
    if plan.overlap_param_gather and plan.zero_stage >= 1 and plan.dp * plan.cp > 1 and not plan.overlap_grad_reduce:
        errs.append(f"overlap_param_gather: Megatron-LM asserts --overlap-param-gather only with --overlap-grad-reduce "
                    f"({src})")
    if plan.offload != "none":
        errs.append(f"offload: Megatron-LM core_r0.8.0 has no CPU offload of optimizer state or parameters ({src})")
    if plan.finetune != "none":
        errs.append(f"finetune: Megatron-LM's pretrain_gpt.py has no {plan.finetune} adapters; use NeMo (nemo)")
    if plan.optimizer not in ("adamw", "adam", "sgd"):
        errs.append(f"optimizer: Megatron-LM --optimizer takes adam or sgd, not {plan.optimizer}")
    _refuse(errs)
    args, keys, notes = [], {}, []

    def add(field, flag, value=None):
        args.append(flag if value is None else f"{flag} {value}")
        if field:
            keys[field] = flag

    add("tp", "--tensor-model-parallel-size", plan.tp)
    add("pp", "--pipeline-model-parallel-size", plan.pp)
    if plan.vpp > 1:
        add("vpp", "--num-layers-per-virtual-pipeline-stage", _layers_per_virtual_stage(plan, model, "Megatron-LM"))
        keys["schedule"] = "--num-layers-per-virtual-pipeline-stage"
    if not legacy:
        add("cp", "--context-parallel-size", plan.cp)
    if plan.ep > 1 or model.is_moe:
        add(None, "--num-experts", model.num_experts)
        add("ep", "--expert-model-parallel-size", plan.ep)
        if plan.expert_tp and plan.expert_tp != plan.tp:   # parallel folding: Megatron-Core >= 0.10 (core_r0.10.0)
            add("expert_tp", "--expert-tensor-parallel-size", plan.expert_tp)
            notes.append("expert_tp: --expert-tensor-parallel-size needs Megatron-Core 0.10 or later "
                         "(megatron/training/arguments.py@core_r0.10.0)")
    if plan.sp:
        add("sp", "--sequence-parallel")
    if plan.zero_stage >= 1:
        add("zero_stage", "--use-distributed-optimizer")
    add("micro_batch_size", "--micro-batch-size", plan.micro_batch_size)
    add("global_batch_size", "--global-batch-size", plan.global_batch_size)
    if plan.recompute == Recompute.FULL:
        if legacy:
            add("recompute", "--checkpoint-activations")
        else:
            add("recompute", "--recompute-granularity", "full")
            if plan.recompute_fraction < 1.0:   # the first N layers of each stage (chunk)
                args.append("--recompute-method block")
                add("recompute_fraction", "--recompute-num-layers", _recompute_num_layers(plan, model))
            else:
                args.append("--recompute-method uniform")
                args.append("--recompute-num-layers 1")
    elif plan.recompute == Recompute.SELECTIVE:
        add("recompute", "--recompute-granularity", "selective")
    if not legacy:
        if plan.overlap_grad_reduce and plan.dp * plan.cp > 1:
            add("overlap_grad_reduce", "--overlap-grad-reduce")
        if plan.overlap_param_gather and plan.zero_stage >= 1 and plan.dp * plan.cp > 1:
            add("overlap_param_gather", "--overlap-param-gather")
        elif plan.overlap_param_gather and plan.zero_stage == 0:
            notes.append("overlap_param_gather: no parameter all-gather without the distributed optimizer (zero 0)")
        if plan.overlap_tp_comm and plan.tp > 1:
            add("overlap_tp_comm", "--tp-comm-overlap")
    if plan.dtype == "fp32":   # Megatron's default: neither --fp16 nor --bf16
        keys["dtype"] = "(no --fp16 / --bf16: fp32)"
    else:
        add("dtype", "--fp16" if plan.dtype == "fp16" else "--bf16")
        if plan.dtype == "fp16":
            if plan.grad_reduce_fp32:
                add("grad_reduce_fp32", "--accumulate-allreduce-grads-in-fp32")
        elif plan.grad_reduce_fp32:
            keys["grad_reduce_fp32"] = "--bf16"   # arguments.py: bf16 forces fp32 accumulation and all-reduce
        elif legacy:
            notes.append("grad_reduce_fp32: Megatron-LM before Megatron-Core always reduces bf16 gradients in fp32")
        else:
            add("grad_reduce_fp32", "--grad-reduce-in-bf16")
            notes.append("grad_reduce_fp32: --grad-reduce-in-bf16 arrived in Megatron-LM core_r0.12.0 (before it, "
                         "--bf16 always accumulates and reduces gradients in fp32)")
    if plan.fp8_param_gather and plan.dtype == "fp8" and not legacy:
        add("fp8_param_gather", "--fp8-param-gather")
        notes.append("fp8_param_gather: --fp8-param-gather arrived in Megatron-LM core_r0.9.0")
    if plan.dtype == "fp8":
        args.append("--fp8-format hybrid")
        keys["dtype"] = "--fp8-format"
    if not legacy:
        add("attention", "--transformer-impl", "local" if plan.attention == "unfused" else "transformer_engine")
    # elementwise fusions are on by default (arguments.py: store_false switches); eager means switching them off
    if not plan.fused_elementwise:
        add("fused_elementwise", "--no-bias-gelu-fusion" if legacy else "--no-rope-fusion")
        if not legacy:
            args.append("--no-bias-swiglu-fusion")
    if plan.placement != DEFAULT_PLACEMENT:
        notes.append(f"placement {plan.placement}: the same rank order as Megatron's for the groups of size > 1")
    # the model itself
    args += [f"--num-layers {model.num_layers}", f"--hidden-size {model.hidden}",
             f"--ffn-hidden-size {model.ffn_hidden}", f"--num-attention-heads {model.num_heads}",
             f"--seq-length {model.seq_len}", f"--max-position-embeddings {max(model.seq_len, model.max_seq_len)}"]
    if model.num_kv_heads != model.num_heads and not legacy:
        args += ["--group-query-attention", f"--num-query-groups {model.num_kv_heads}"]
    if model.activation == "swiglu" and not legacy:
        args.append("--swiglu")
    drop = 0.1 if model.dropout else 0.0
    args += [f"--hidden-dropout {drop}", f"--attention-dropout {drop}"]
    lines = ["#!/usr/bin/env bash", *_header(plan, model, cluster, prof, src),
             f"# dp {plan.dp} = WORLD_SIZE {plan.world_size} / (tp {plan.tp} x pp {plan.pp} x cp {plan.cp}) "
             f"(Megatron derives it); {plan.num_microbatches} micro-batches per iteration",
             *(f"# note: {n}" for n in notes), "MEGATRON_ARGS=(", *(f"    {a}" for a in args), ")",
             f"torchrun --nnodes {cluster.num_nodes} --nproc-per-node {cluster.gpus_per_node} pretrain_gpt.py "
             '"${MEGATRON_ARGS[@]}" "$@"', ""]
    keys["dp"] = "WORLD_SIZE / (tp * pp * cp)"
    return Export(prof.name, "megatron", "\n".join(lines), ".sh", keys, tuple(notes))
