"""NeMo 2.0 / Megatron-Bridge: a YAML override of a recipe (``recipe.trainer.strategy.*``, ``recipe.data.*``,
``recipe.optim.config.*``, ``recipe.model.config.*``)."""

from __future__ import annotations

from models.export.common import Export, _header, _recompute_num_layers, _refuse
from models.plan import SCHEDULE_IDS, Plan, Recompute, Schedule

# ---------------------------------------------------------------------------------- NeMo / Megatron-Bridge

def nemo_recipe(plan: Plan, model, cluster, prof) -> Export:
    """A NeMo 2.0 / Megatron-Bridge recipe override as YAML, keyed like the recipe's attributes.

    Key names: NVIDIA/NeMo nemo/collections/llm/recipes/llama3_70b.py@0189a3b (trainer.strategy =
    MegatronStrategy(tensor_model_parallel_size, pipeline_model_parallel_size,
    virtual_pipeline_model_parallel_size, context_parallel_size, expert_model_parallel_size, sequence_parallel,
    ddp=DistributedDataParallelConfig(overlap_grad_reduce, overlap_param_gather)), data.micro_batch_size,
    data.global_batch_size, data.seq_length, optim.config.use_distributed_optimizer (recipes/optim/adam.py),
    model.config.recompute_granularity/recompute_method/recompute_num_layers, fp8, hidden_dropout,
    attention_dropout (Megatron-Core TransformerConfig), MegatronCommOverlapCallback(tp_comm_overlap)).
    """
    import yaml
    errs = []
    if plan.schedule in (Schedule.GPIPE, Schedule.ZERO_BUBBLE) and plan.pp > 1:
        errs.append(f"schedule: Megatron-Core runs 1F1B or interleaved 1F1B, not {SCHEDULE_IDS[plan.schedule]}")
    if plan.overlap_tp_comm and plan.tp > 1 and not plan.sp:
        errs.append("overlap_tp_comm: MegatronCommOverlapCallback's tp_comm_overlap needs sequence_parallel "
                    "(Megatron-Core asserts it); set sp=true or overlap_tp_comm=false")
    if plan.overlap_param_gather and plan.zero_stage >= 1 and plan.dp * plan.cp > 1 and not plan.overlap_grad_reduce:
        errs.append("overlap_param_gather: Megatron-Core's DDP overlaps the parameter all-gather only with "
                    "overlap_grad_reduce (arguments.py@core_r0.8.0 asserts it)")
    if plan.offload != "none":
        errs.append("offload: NeMo 2.0 recipes (0189a3b) have no CPU offload of optimizer state or parameters")
    if plan.finetune == "qlora":
        errs.append("finetune: NeMo 2.0 PEFT has LoRA and DoRA, no 4-bit (QLoRA) base weights")
    _refuse(errs)
    ddp = {"overlap_grad_reduce": bool(plan.overlap_grad_reduce),
           "overlap_param_gather": bool(plan.overlap_param_gather and plan.zero_stage >= 1)}
    strategy = {"tensor_model_parallel_size": plan.tp, "pipeline_model_parallel_size": plan.pp,
                "virtual_pipeline_model_parallel_size": plan.vpp if plan.vpp > 1 else None,
                "context_parallel_size": plan.cp, "expert_model_parallel_size": plan.ep,
                "sequence_parallel": bool(plan.sp), "ddp": ddp}
    if plan.expert_tp and plan.expert_tp != plan.tp:   # parallel folding (MegatronStrategy, NeMo 2.1 / Megatron-Core 0.10)
        strategy["expert_tensor_parallel_size"] = plan.expert_tp
    precision = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp8": "bf16-mixed", "fp32": "32"}[plan.dtype]
    cfg = {"hidden_dropout": 0.1 if model.dropout else 0.0, "attention_dropout": 0.1 if model.dropout else 0.0}
    if plan.recompute == Recompute.FULL:
        cfg |= {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
        if plan.recompute_fraction < 1.0:   # the first N layers of each stage (chunk): Megatron's block method
            cfg |= {"recompute_method": "block", "recompute_num_layers": _recompute_num_layers(plan, model)}
    elif plan.recompute == Recompute.SELECTIVE:
        cfg |= {"recompute_granularity": "selective"}
    if plan.dtype == "fp8":
        cfg |= {"fp8": "hybrid"}
    doc = {"trainer": {"num_nodes": cluster.num_nodes, "devices": cluster.gpus_per_node, "strategy": strategy,
                       "plugins": {"precision": precision, "grad_reduce_in_fp32": bool(plan.grad_reduce_fp32),
                                   **({"fp8_params": bool(plan.fp8_param_gather)} if plan.dtype == "fp8" else {})},
                       "callbacks": [{"MegatronCommOverlapCallback": {"tp_comm_overlap": bool(plan.overlap_tp_comm
                                                                                               and plan.tp > 1)}}]},
           "data": {"micro_batch_size": plan.micro_batch_size, "global_batch_size": plan.global_batch_size,
                    "seq_length": model.seq_len},
           "optim": {"config": {"use_distributed_optimizer": plan.zero_stage >= 1, "bf16": plan.dtype in ("bf16", "fp8"),
                                "fp16": plan.dtype == "fp16"}},
           "model": {"config": cfg}}
    keys = {"tp": "trainer.strategy.tensor_model_parallel_size", "pp": "trainer.strategy.pipeline_model_parallel_size",
            "cp": "trainer.strategy.context_parallel_size", "ep": "trainer.strategy.expert_model_parallel_size",
            "sp": "trainer.strategy.sequence_parallel", "zero_stage": "optim.config.use_distributed_optimizer",
            "micro_batch_size": "data.micro_batch_size", "global_batch_size": "data.global_batch_size",
            "overlap_grad_reduce": "trainer.strategy.ddp.overlap_grad_reduce",
            "overlap_param_gather": "trainer.strategy.ddp.overlap_param_gather",
            "overlap_tp_comm": "trainer.callbacks.MegatronCommOverlapCallback.tp_comm_overlap",
            "dtype": "trainer.plugins.precision", "dp": "trainer.num_nodes * trainer.devices / (tp * pp * cp)",
            "grad_reduce_fp32": "trainer.plugins.grad_reduce_in_fp32"}
    if plan.dtype == "fp8":
        keys["fp8_param_gather"] = "trainer.plugins.fp8_params"
    if plan.vpp > 1:
        keys["vpp"] = "trainer.strategy.virtual_pipeline_model_parallel_size"
    if plan.expert_tp and plan.expert_tp != plan.tp:
        keys["expert_tp"] = "trainer.strategy.expert_tensor_parallel_size"
    if plan.recompute != Recompute.NONE:
        keys["recompute"] = "model.config.recompute_granularity"
        if plan.recompute == Recompute.FULL and plan.recompute_fraction < 1.0:
            keys["recompute_fraction"] = "model.config.recompute_num_layers"
    if plan.finetune != "none":
        doc["peft"] = {"scheme": plan.finetune, "dim": plan.lora_rank, "alpha": plan.lora_alpha,
                       "target_modules": list(plan.lora_targets.split(","))}
        keys |= {"finetune": "peft.scheme", "lora_rank": "peft.dim", "lora_alpha": "peft.alpha"}
    if plan.vpp == 1:
        del strategy["virtual_pipeline_model_parallel_size"]
    dotted = [f"{k}={v}" for k, v in _flatten(doc).items() if not isinstance(v, list)]
    head = _header(plan, model, cluster, prof, "NVIDIA/NeMo recipes/llama3_70b.py@0189a3b")
    head += [f"# dp {plan.dp}; {plan.num_microbatches} micro-batches per iteration",
             "# as nemo_run overrides: nemo llm pretrain --factory <recipe> " + " ".join(dotted)]
    text = "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    return Export(prof.name, "nemo", text, ".yaml", keys, ())


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
