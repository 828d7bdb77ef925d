"""DeepSpeed: a JSON config (``zero_optimization``, batch sizes, ``bf16``/``fp16``,
``activation_checkpointing``)."""

from __future__ import annotations

import json

from models.export.common import Export, _offload_parts, _placement_errors, _refuse
from models.plan import Plan, Recompute

# ---------------------------------------------------------------------------------- DeepSpeed

DS_BUCKET_ELEMENTS = 500_000_000       # DeepSpeed's default reduce_bucket_size / allgather_bucket_size (5e8)
DS_PREFETCH_ELEMENTS = 50_000_000      # stage3_prefetch_bucket_size default (5e7)


def deepspeed_json(plan: Plan, model, cluster, prof) -> Export:
    """A DeepSpeed JSON config.

    Key names: microsoft/DeepSpeed docs/_pages/config-json.md and deepspeed/runtime/zero/config.py@03dc2b9
    (v0.16): train_batch_size (= train_micro_batch_size_per_gpu x gradient_accumulation_steps x data-parallel
    world size, checked by DeepSpeed), train_micro_batch_size_per_gpu, gradient_accumulation_steps,
    bf16.enabled / fp16.enabled, zero_optimization.stage, overlap_comm, contiguous_gradients,
    reduce_bucket_size, allgather_bucket_size, stage3_prefetch_bucket_size, offload_optimizer.device /
    offload_param.device ("cpu" | "nvme"), activation_checkpointing.partition_activations /
    contiguous_memory_optimization, pipeline.stages (deepspeed/runtime/config.py get_pipeline_config).
    Tensor parallelism is Megatron-DeepSpeed's (--tensor-model-parallel-size), not a DeepSpeed config key.
    """
    errs = _placement_errors(plan, prof.name)
    if plan.tp > 1 and prof.name == "deepspeed":
        errs.append("tp: a DeepSpeed config has no tensor parallelism; use --framework megatron-deepspeed "
                    "(Megatron's --tensor-model-parallel-size)")
    if plan.cp > 1:
        errs.append("cp: DeepSpeed has no ring context parallelism (Ulysses is a different sequence split)")
    if plan.ep > 1:
        errs.append("ep: DeepSpeed-MoE sets expert parallelism in the model code (deepspeed.moe.layer.MoE(ep_size)), "
                    "not in the config")
    if plan.dtype == "fp8":
        errs.append("dtype: a DeepSpeed config has no fp8 training (bf16 or fp16)")
    if plan.finetune != "none":
        errs.append(f"finetune: {plan.finetune} adapters are model code (PEFT), not a DeepSpeed config key")
    parts = _offload_parts(plan)
    if parts - {"optimizer", "params"}:
        errs.append(f"offload: DeepSpeed offloads the optimizer (offload_optimizer) and parameters (offload_param); "
                    f"not {', '.join(sorted(parts - {'optimizer', 'params'}))}")
    if "params" in parts and plan.zero_stage < 3:
        errs.append("offload: DeepSpeed's offload_param needs zero_optimization.stage 3")
    if "optimizer" in parts and plan.zero_stage < 1:
        errs.append("offload: DeepSpeed's offload_optimizer needs ZeRO stage 1, 2 or 3")
    _refuse(errs)
    zero = {"stage": int(plan.zero_stage), "overlap_comm": bool(plan.overlap_grad_reduce),
            "contiguous_gradients": bool(plan.constant_buffers), "reduce_bucket_size": DS_BUCKET_ELEMENTS,
            "allgather_bucket_size": DS_BUCKET_ELEMENTS}
    if plan.zero_stage == 3:
        zero["stage3_prefetch_bucket_size"] = DS_PREFETCH_ELEMENTS if plan.overlap_param_gather else 0
    if "optimizer" in parts:
        zero["offload_optimizer"] = {"device": plan.offload_to, "pin_memory": True}
    if "params" in parts:
        zero["offload_param"] = {"device": plan.offload_to, "pin_memory": True}
    cfg = {"train_batch_size": plan.global_batch_size, "train_micro_batch_size_per_gpu": plan.micro_batch_size,
           "gradient_accumulation_steps": plan.num_microbatches,
           "bf16": {"enabled": plan.dtype == "bf16"}, "fp16": {"enabled": plan.dtype == "fp16"},
           "zero_optimization": zero, "gradient_clipping": 1.0}
    if plan.grad_reduce_fp32 and plan.dtype != "fp32":   # the gradient collectives in fp32
        cfg["communication_data_type"] = "fp32"
    keys = {"global_batch_size": "train_batch_size", "micro_batch_size": "train_micro_batch_size_per_gpu",
            "zero_stage": "zero_optimization.stage", "overlap_grad_reduce": "zero_optimization.overlap_comm",
            "constant_buffers": "zero_optimization.contiguous_gradients", "dtype": "bf16.enabled",
            "dp": "train_batch_size / (train_micro_batch_size_per_gpu * gradient_accumulation_steps)"}
    if "communication_data_type" in cfg:
        keys["grad_reduce_fp32"] = "communication_data_type"
    if plan.zero_stage == 3:
        keys["overlap_param_gather"] = "zero_optimization.stage3_prefetch_bucket_size"
    if parts:
        keys["offload"] = "zero_optimization.offload_optimizer" if "optimizer" in parts else \
            "zero_optimization.offload_param"
    if plan.recompute != Recompute.NONE or plan.partition_activations:
        cfg["activation_checkpointing"] = {"partition_activations": bool(plan.partition_activations),
                                           "contiguous_memory_optimization": not plan.fragmentation}
        keys["partition_activations"] = "activation_checkpointing.partition_activations"
    notes = []
    if plan.pp > 1:
        cfg["pipeline"] = {"stages": plan.pp, "activation_checkpoint_interval": int(plan.recompute == Recompute.FULL)}
        keys["pp"] = "pipeline.stages"
    if prof.name == "megatron-deepspeed" and (plan.tp > 1 or plan.pp > 1):
        notes.append(f"Megatron-DeepSpeed arguments: --tensor-model-parallel-size {plan.tp} "
                     f"--pipeline-model-parallel-size {plan.pp} --micro-batch-size {plan.micro_batch_size} "
                     f"--global-batch-size {plan.global_batch_size} --zero-stage {int(plan.zero_stage)} "
                     "--deepspeed --deepspeed_config <this file>"
                     + (" --checkpoint-activations" if plan.recompute == Recompute.FULL else ""))
    if plan.recompute != Recompute.NONE and plan.pp == 1:
        notes.append("recompute: activation checkpointing is applied in the model code "
                     "(deepspeed.checkpointing.checkpoint); the config only tunes it")
    return Export(prof.name, "deepspeed", json.dumps(cfg, indent=2) + "\n", ".json", keys, tuple(notes))
