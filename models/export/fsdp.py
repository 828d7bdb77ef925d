"""PyTorch FSDP (FSDP1): a Python snippet (``ShardingStrategy``, ``BackwardPrefetch``, ``MixedPrecision``,
``CPUOffload``, activation checkpointing)."""

from __future__ import annotations

from models.export.common import FSDP_SRC, Export, _header, _offload_parts, _refuse
from models.plan import Plan, Recompute

# ---------------------------------------------------------------------------------- PyTorch FSDP

FSDP_SHARDING = {0: "NO_SHARD", 2: "SHARD_GRAD_OP", 3: "FULL_SHARD"}
TORCH_DTYPES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}


def fsdp_snippet(plan: Plan, model, cluster, prof) -> Export:
    """A PyTorch FSDP (FSDP1) wrapping snippet in Python.

    Key names: pytorch/pytorch torch/distributed/fsdp/fully_sharded_data_parallel.py@v2.1.0 and
    torch/distributed/fsdp/api.py@v2.1.0: FullyShardedDataParallel(sharding_strategy=ShardingStrategy
    .NO_SHARD | SHARD_GRAD_OP | FULL_SHARD, backward_prefetch=BackwardPrefetch.BACKWARD_PRE | None,
    forward_prefetch, limit_all_gathers, mixed_precision=MixedPrecision(param_dtype, reduce_dtype,
    buffer_dtype), cpu_offload=CPUOffload(offload_params), auto_wrap_policy=ModuleWrapPolicy, use_orig_params);
    torch/distributed/algorithms/_checkpoint/checkpoint_wrapper.py@v2.1.0 apply_activation_checkpointing;
    LoRA/DoRA through huggingface/peft LoraConfig(r, lora_alpha, target_modules, use_dora).
    """
    errs = []
    for name, size, why in (("tp", plan.tp, "tensor"), ("pp", plan.pp, "pipeline"), ("cp", plan.cp, "context"),
                            ("ep", plan.ep, "expert")):
        if size > 1:
            errs.append(f"{name}: an FSDP1 snippet shards data-parallel ranks only, no {why} parallelism "
                        "(torchtitan for FSDP2 with TP/PP/CP)")
    if plan.zero_stage == 1:
        errs.append("zero_stage: FSDP has no ZeRO-1 (ShardingStrategy NO_SHARD 0, SHARD_GRAD_OP 2, FULL_SHARD 3)")
    if plan.dtype == "fp8":
        errs.append("dtype: FSDP1 MixedPrecision has no float8 (torchtitan's float8 converter does)")
    if plan.recompute == Recompute.SELECTIVE:
        errs.append("recompute: FSDP's apply_activation_checkpointing wraps whole blocks (full); selective "
                    "recomputation of the attention core is model code")
    parts = _offload_parts(plan)
    if parts and ("params" not in parts or parts - {"optimizer", "params", "gradients"} or plan.offload_to != "cpu"):
        errs.append(f"offload: FSDP's CPUOffload(offload_params=True) moves parameters and gradients (and the "
                    f"optimizer step) to the CPU together; {plan.offload} to {plan.offload_to} cannot be set")
    if plan.finetune == "qlora":
        errs.append("finetune: QLoRA under FSDP1 needs bitsandbytes 4-bit storage settings this snippet does not write")
    _refuse(errs)
    dt = TORCH_DTYPES[plan.dtype]
    ckpt = plan.recompute == Recompute.FULL
    lines = [*_header(plan, model, cluster, prof, FSDP_SRC),
             "import torch",
             "from torch.distributed.fsdp import BackwardPrefetch, CPUOffload, MixedPrecision, ShardingStrategy",
             "from torch.distributed.fsdp import FullyShardedDataParallel as FSDP",
             "from torch.distributed.fsdp.wrap import ModuleWrapPolicy",
             "",
             f"WORLD_SIZE = {plan.dp}  # data-parallel ranks ({cluster.num_nodes} nodes x {cluster.gpus_per_node})",
             f"MICRO_BATCH_SIZE = {plan.micro_batch_size}  # sequences per GPU per forward",
             f"GRADIENT_ACCUMULATION_STEPS = {plan.num_microbatches}",
             f"GLOBAL_BATCH_SIZE = {plan.global_batch_size}",
             f"SEQ_LEN = {model.seq_len}",
             "",
             "FSDP_KWARGS = dict(",
             f"    sharding_strategy=ShardingStrategy.{FSDP_SHARDING[int(plan.zero_stage)]},",
             "    backward_prefetch=" + ("BackwardPrefetch.BACKWARD_PRE," if plan.overlap_param_gather else "None,"),
             f"    forward_prefetch={bool(plan.overlap_param_gather)},",
             "    limit_all_gathers=True,",
             ("    mixed_precision=None,  # fp32: no mixed precision" if plan.dtype == "fp32" else
              f"    mixed_precision=MixedPrecision(param_dtype={dt}, reduce_dtype="
              f"{'torch.float32' if plan.grad_reduce_fp32 else dt}, buffer_dtype={dt}),"),
             f"    cpu_offload=CPUOffload(offload_params={bool(parts)}),",
             "    use_orig_params=True,",
             ")",
             f"ACTIVATION_CHECKPOINTING = {ckpt}",
             ""]
    keys = {"zero_stage": "sharding_strategy", "overlap_param_gather": "backward_prefetch",
            "dtype": "mixed_precision", "grad_reduce_fp32": "mixed_precision.reduce_dtype",
            "micro_batch_size": "MICRO_BATCH_SIZE",
            "global_batch_size": "GLOBAL_BATCH_SIZE", "dp": "WORLD_SIZE", "recompute": "ACTIVATION_CHECKPOINTING"}
    if parts:
        keys["offload"] = "cpu_offload"
    if plan.finetune != "none":
        targets = [t for t in plan.lora_targets.split(",")] if plan.lora_targets != "all-linear" else "all-linear"
        lines += ["from peft import LoraConfig, get_peft_model",
                  f"LORA = LoraConfig(r={plan.lora_rank}, lora_alpha={plan.lora_alpha!r}, target_modules={targets!r}, "
                  f"use_dora={plan.finetune == 'dora'})", ""]
        keys |= {"finetune": "LORA", "lora_rank": "r", "lora_alpha": "lora_alpha"}
    lines += ["",
              "def wrap(model: torch.nn.Module, block_cls: type) -> torch.nn.Module:",
              '    """Shard ``model`` with FSDP, one unit per transformer block (``block_cls``)."""',
              *(["    model = get_peft_model(model, LORA)"] if plan.finetune != "none" else []),
              "    model = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({block_cls}),",
              "                 device_id=torch.cuda.current_device(), **FSDP_KWARGS)",
              "    if ACTIVATION_CHECKPOINTING:",
              "        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (",
              "            CheckpointImpl, apply_activation_checkpointing, checkpoint_wrapper)",
              "        apply_activation_checkpointing(",
              "            model, check_fn=lambda m: isinstance(m, block_cls),",
              "            checkpoint_wrapper_fn=lambda m: checkpoint_wrapper(m, checkpoint_impl=CheckpointImpl.NO_REENTRANT))",
              "    return model",
              ""]
    notes = []
    if not plan.overlap_grad_reduce and plan.dp > 1:
        notes.append("overlap_grad_reduce: FSDP always reduce-scatters each unit during backward; there is no "
                     "switch to defer it")
    return Export(prof.name, "fsdp", "\n".join(lines), ".py", keys, tuple(notes))
