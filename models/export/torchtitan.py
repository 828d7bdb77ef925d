"""torchtitan: a job TOML (``[parallelism]``, ``[training]``, ``[activation_checkpoint]``,
``[model] converters``, ``[float8]``)."""

from __future__ import annotations

import json

from models.export.common import Export, _header, _layers_per_virtual_stage, _offload_parts, _placement_errors, _refuse
from models.plan import SCHEDULE_IDS, Plan, Recompute, Schedule

# ---------------------------------------------------------------------------------- torchtitan

TITAN_SCHEDULES = {Schedule.ONE_F_ONE_B: "1F1B", Schedule.GPIPE: "GPipe", Schedule.INTERLEAVED: "Interleaved1F1B"}


def torchtitan_toml(plan: Plan, model, cluster, prof) -> Export:
    """A torchtitan job config TOML.

    Key names: pytorch/torchtitan torchtitan/config/job_config.py@000204a: [parallelism]
    data_parallel_replicate_degree (DDP), data_parallel_shard_degree (FSDP2), fsdp_reshard_after_forward
    ("default" | "always" | "never"), tensor_parallel_degree, enable_async_tensor_parallel (with [training]
    compile), pipeline_parallel_degree, pipeline_parallel_schedule (torch.distributed.pipelining names: 1F1B,
    GPipe, Interleaved1F1B), pipeline_parallel_layers_per_stage, pipeline_parallel_microbatch_size,
    context_parallel_degree, expert_parallel_degree; [training] local_batch_size, global_batch_size, seq_len,
    mixed_precision_param ("bfloat16" | "float32"), enable_cpu_offload; [activation_checkpoint] mode
    ("selective" | "full" | "none"), selective_ac_option ("op" | n); [model] converters = ["float8"]; [float8]
    enable_fsdp_float8_all_gather; layout as in train_configs/llama3_70b.toml@f3534d7.
    """
    errs = _placement_errors(plan, prof.name)
    if plan.schedule not in TITAN_SCHEDULES and plan.pp > 1:
        errs.append(f"schedule: {SCHEDULE_IDS[plan.schedule]} is not one of torchtitan's schedules here "
                    f"({', '.join(SCHEDULE_IDS[s] for s in TITAN_SCHEDULES)})")
    if plan.dtype == "fp16":
        errs.append("dtype: torchtitan's training.mixed_precision_param is bfloat16 or float32 (no fp16)")
    if plan.zero_stage == 1:
        errs.append("zero_stage: torchtitan has no ZeRO-1: DDP (0) or FSDP2 (2: never reshard, 3: reshard)")
    parts = _offload_parts(plan)
    if parts and (parts != {"optimizer", "params", "gradients"} and parts != {"optimizer", "params"}
                  or plan.offload_to != "cpu"):
        errs.append("offload: torchtitan's training.enable_cpu_offload moves parameters, gradients and optimizer "
                    f"state to the CPU together (FSDP2 CPUOffloadPolicy); {plan.offload} to {plan.offload_to} "
                    "cannot be set")
    if plan.finetune != "none":
        errs.append(f"finetune: torchtitan trains full models; no {plan.finetune} adapters in job_config.py")
    if plan.fused_norm and not plan.fused_elementwise and model.norm == "rmsnorm":
        errs.append("fused_norm: torchtitan here fuses its RMSNorm only under torch.compile (the fused_rmsnorm "
                    "Triton kernel was removed in 37c4b8181); set fused_elementwise (training.compile) instead")
    _refuse(errs)
    par = {}
    if plan.zero_stage == 0:
        par |= {"data_parallel_replicate_degree": plan.dp, "data_parallel_shard_degree": 1}
    else:
        par |= {"data_parallel_replicate_degree": 1, "data_parallel_shard_degree": plan.dp,
                "fsdp_reshard_after_forward": "never" if plan.zero_stage == 2 else "always" if plan.pp > 1
                else "default"}
    par |= {"tensor_parallel_degree": plan.tp, "enable_async_tensor_parallel": bool(plan.overlap_tp_comm and plan.tp > 1),
            "pipeline_parallel_degree": plan.pp}
    keys = {"dp": "parallelism.data_parallel_shard_degree" if plan.zero_stage else
            "parallelism.data_parallel_replicate_degree",
            "zero_stage": "parallelism.fsdp_reshard_after_forward" if plan.zero_stage else
            "parallelism.data_parallel_replicate_degree", "tp": "parallelism.tensor_parallel_degree",
            "pp": "parallelism.pipeline_parallel_degree", "cp": "parallelism.context_parallel_degree",
            "ep": "parallelism.expert_parallel_degree", "overlap_tp_comm": "parallelism.enable_async_tensor_parallel",
            "micro_batch_size": "training.local_batch_size", "global_batch_size": "training.global_batch_size",
            "recompute": "activation_checkpoint.mode", "dtype": "training.mixed_precision_param"}
    local = plan.global_batch_size // plan.dp
    if plan.pp > 1:
        par |= {"pipeline_parallel_schedule": TITAN_SCHEDULES[plan.schedule],
                "pipeline_parallel_microbatch_size": plan.micro_batch_size}
        if plan.vpp > 1:
            par["pipeline_parallel_layers_per_stage"] = _layers_per_virtual_stage(plan, model, "torchtitan")
            keys["vpp"] = "parallelism.pipeline_parallel_layers_per_stage"
        keys |= {"schedule": "parallelism.pipeline_parallel_schedule",
                 "micro_batch_size": "parallelism.pipeline_parallel_microbatch_size"}
    else:
        local = plan.micro_batch_size  # gradient accumulation: global / (local x dp) steps
    par |= {"context_parallel_degree": plan.cp, "expert_parallel_degree": plan.ep}
    training = {"local_batch_size": local, "global_batch_size": plan.global_batch_size, "seq_len": model.seq_len,
                "mixed_precision_param": "float32" if plan.dtype == "fp32" else "bfloat16",
                "mixed_precision_reduce": "float32",
                "enable_cpu_offload": bool(parts),
                # torch.compile fuses the elementwise ops (fused_elementwise); async TP needs it too
                "compile": bool(plan.fused_elementwise or (plan.overlap_tp_comm and plan.tp > 1))}
    keys["fused_elementwise"] = "training.compile"
    if parts:
        keys["offload"] = "training.enable_cpu_offload"
    ac = {"mode": {Recompute.NONE: "none", Recompute.SELECTIVE: "selective", Recompute.FULL: "full"}[plan.recompute]}
    if plan.recompute == Recompute.SELECTIVE:
        ac["selective_ac_option"] = "op"
    elif plan.recompute == Recompute.FULL and plan.recompute_fraction < 1.0:   # layer SAC: every Nth block
        every = round(1 / plan.recompute_fraction)
        if abs(every * plan.recompute_fraction - 1) > 1e-6:
            raise ValueError(f"recompute_fraction: torchtitan checkpoints every Nth layer (selective_ac_option N); "
                             f"{plan.recompute_fraction:g} is not 1/N")
        ac = {"mode": "selective", "selective_ac_option": str(every)}
        keys["recompute_fraction"] = "activation_checkpoint.selective_ac_option"
    sections = {"parallelism": par, "training": training, "activation_checkpoint": ac}
    notes = []
    if plan.grad_reduce_fp32:
        keys["grad_reduce_fp32"] = "training.mixed_precision_reduce"
    if plan.dtype == "fp8":
        sections = {"model": {"converters": ["float8"]}, **sections,
                    "float8": {"enable_fsdp_float8_all_gather": bool(plan.fp8_param_gather and plan.zero_stage >= 2)}}
        keys["dtype"] = "model.converters"
        if plan.fp8_param_gather:
            keys["fp8_param_gather"] = "float8.enable_fsdp_float8_all_gather"
    if not plan.grad_reduce_fp32 and plan.dp * plan.cp > 1:
        notes.append("grad_reduce_fp32: torchtitan reduces gradients in float32 (mixed_precision_reduce has no "
                     "other choice); the plan's 16-bit reduction has no torchtitan switch")
    if plan.tp > 1 and not plan.sp:
        notes.append("sp: torchtitan's TP plan always shards norms along the sequence (SequenceParallel); "
                     "the plan's sp=false has no torchtitan switch")
    head = _header(plan, model, cluster, prof, "pytorch/torchtitan torchtitan/config/job_config.py@000204a")
    head += [f"# dp {plan.dp}; {plan.num_microbatches} micro-batches of {plan.micro_batch_size} per iteration",
             *(f"# note: {n}" for n in notes)]
    body = "\n\n".join(f"[{name}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in sec.items())
                       for name, sec in sections.items())
    return Export(prof.name, "torchtitan", "\n".join(head) + "\n\n" + body + "\n", ".toml", keys, tuple(notes))


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))
