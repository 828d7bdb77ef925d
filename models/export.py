"""A plan as the framework's own launch settings: pure writers, plan + model + cluster + framework -> text.

One writer per :attr:`models.frameworks.Profile.export`:

- ``megatron``: a bash launch script whose ``MEGATRON_ARGS`` array holds Megatron-LM / Megatron-Core
  command-line arguments (``pretrain_gpt.py``);
- ``nemo``: a YAML override of a NeMo 2.0 / Megatron-Bridge recipe (``recipe.trainer.strategy.*``,
  ``recipe.data.*``, ``recipe.optim.config.*``, ``recipe.model.config.*``), the same keys as dotted
  ``nemo llm pretrain`` overrides in its header;
- ``torchtitan``: a torchtitan job TOML (``[parallelism]``, ``[training]``, ``[activation_checkpoint]``,
  ``[model] converters``, ``[float8]``);
- ``deepspeed``: a DeepSpeed JSON config (``zero_optimization``, batch sizes, ``bf16``/``fp16``,
  ``activation_checkpointing``);
- ``fsdp``: a PyTorch FSDP (FSDP1) Python snippet (``ShardingStrategy``, ``BackwardPrefetch``,
  ``MixedPrecision``, ``CPUOffload``, activation checkpointing).

Each writer's docstring names the file and version its key names were read from. A plan the framework
cannot run (its profile's limits, :func:`models.frameworks.framework_errors`) or that the framework's
settings cannot express is refused with a ``ValueError`` naming the field and the reason; nothing is
silently dropped: settings that do not apply are stated in :attr:`Export.notes` (and as comments where
the format has them).

    >>> from models.hardware import make_cluster
    >>> from models.plan import Plan
    >>> from models.transformer import get_model
    >>> e = export_plan(Plan(dp=4, tp=2, global_batch_size=8), get_model("gpt-tiny"), make_cluster("a100", 1),
    ...                 "torchtitan")
    >>> e.suffix, e.keys["tp"]
    ('.toml', 'parallelism.tensor_parallel_degree')
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from models.frameworks import framework_errors, get_profile
from models.plan import DEFAULT_PLACEMENT, SCHEDULE_IDS, Plan, Recompute, Schedule

# ---------------------------------------------------------------------------------- sources (one place)

MEGATRON_SRC = "NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0 (baf94af)"
MEGATRON_2020_SRC = "NVIDIA/Megatron-LM megatron/arguments.py@v2.5"
NEMO_SRC = ("NVIDIA/NeMo nemo/collections/llm/recipes/llama3_70b.py@0189a3b (NeMo 2.0: trainer.strategy = "
            "MegatronStrategy(tensor_model_parallel_size, pipeline_model_parallel_size, virtual_pipeline_model_"
            "parallel_size, context_parallel_size, expert_model_parallel_size, sequence_parallel, ddp="
            "DistributedDataParallelConfig(overlap_grad_reduce, overlap_param_gather)); data micro_batch_size, "
            "global_batch_size, seq_length; optim.config = OptimizerConfig(use_distributed_optimizer); "
            "MegatronCommOverlapCallback(tp_comm_overlap))")
TITAN_SRC = ("pytorch/torchtitan torchtitan/config/job_config.py@000204a (Parallelism, Training, "
             "ActivationCheckpoint, Float8, Model.converters) and torchtitan/models/llama3/train_configs/"
             "llama3_70b.toml@f3534d7")
DEEPSPEED_SRC = ("microsoft/DeepSpeed docs/_pages/config-json.md and deepspeed/runtime/zero/config.py@03dc2b9 "
                 "(v0.16)")
FSDP_SRC = "pytorch/pytorch torch/distributed/fsdp/fully_sharded_data_parallel.py@v2.1.0 (FSDP1 API)"

SUFFIXES = {"megatron": (".sh",), "nemo": (".yaml", ".yml"), "torchtitan": (".toml",), "deepspeed": (".json",),
            "fsdp": (".py",)}
# Header line of every text export (how `clustersim export` recognises an earlier export of its own).
MARKER = "clustersim export"


@dataclass(frozen=True, slots=True)
class Export:
    """One written launch config."""
    framework: str                    # profile name
    writer: str                       # models.frameworks.Profile.export
    text: str                         # the file's contents
    suffix: str                       # its natural file suffix
    keys: dict                        # plan field -> the framework's key it landed under
    notes: tuple = ()                 # settings that do not apply or that the user must add elsewhere


# ---------------------------------------------------------------------------------- checks shared by writers

def _placement_errors(plan: Plan, framework: str) -> list[str]:
    """Megatron (tp-cp-ep-dp-pp order, parallel_state.py) and torchtitan (mesh pp, dp, cp, tp) place TP
    innermost, then CP, DP, PP: the default placement; another order of the groups that exist cannot be set."""
    sizes = {"tp": plan.tp, "cp": plan.cp, "dp": plan.dp, "pp": plan.pp}
    used = [d for d in plan.placement.split("-") if sizes[d] > 1]
    want = [d for d in DEFAULT_PLACEMENT.split("-") if sizes[d] > 1]
    if used != want:
        return [f"placement: {framework} orders ranks {DEFAULT_PLACEMENT} (innermost first); it has no setting for "
                f"{plan.placement}"]
    return []


def _refuse(errors: list[str]) -> None:
    if errors:
        raise ValueError("; ".join(errors))


def _offload_parts(plan: Plan) -> set[str]:
    return set() if plan.offload == "none" else set(plan.offload.split(","))


def _layers_per_virtual_stage(plan: Plan, model, where: str) -> int:
    chunks = plan.pp * plan.vpp
    if model.num_layers % chunks:
        raise ValueError(f"vpp: {where} needs num_layers={model.num_layers} divisible by pp*vpp={chunks}")
    return model.num_layers // chunks


def _header(plan: Plan, model, cluster, prof, source: str, comment: str = "#") -> list[str]:
    return [f"{comment} {MARKER}: {plan.plan_id} for {prof.title} ({prof.name})",
            f"{comment} model {model.name}, {cluster.num_gpus} x {cluster.gpu.name} ({cluster.num_nodes} nodes of "
            f"{cluster.gpus_per_node}); key names from {source}"]


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
    add("dtype", "--fp16" if plan.dtype == "fp16" else "--bf16")
    if plan.dtype == "fp8":
        args.append("--fp8-format hybrid")
        keys["dtype"] = "--fp8-format"
    if not legacy:
        add("attention", "--transformer-impl", "local" if plan.attention == "unfused" else "transformer_engine")
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
    precision = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp8": "bf16-mixed"}[plan.dtype]
    cfg = {"hidden_dropout": 0.1 if model.dropout else 0.0, "attention_dropout": 0.1 if model.dropout else 0.0}
    if plan.recompute == Recompute.FULL:
        cfg |= {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    elif plan.recompute == Recompute.SELECTIVE:
        cfg |= {"recompute_granularity": "selective"}
    if plan.dtype == "fp8":
        cfg |= {"fp8": "hybrid"}
    doc = {"trainer": {"num_nodes": cluster.num_nodes, "devices": cluster.gpus_per_node, "strategy": strategy,
                       "plugins": {"precision": precision},
                       "callbacks": [{"MegatronCommOverlapCallback": {"tp_comm_overlap": bool(plan.overlap_tp_comm
                                                                                               and plan.tp > 1)}}]},
           "data": {"micro_batch_size": plan.micro_batch_size, "global_batch_size": plan.global_batch_size,
                    "seq_length": model.seq_len},
           "optim": {"config": {"use_distributed_optimizer": plan.zero_stage >= 1, "bf16": plan.dtype != "fp16",
                                "fp16": plan.dtype == "fp16"}},
           "model": {"config": cfg}}
    keys = {"tp": "trainer.strategy.tensor_model_parallel_size", "pp": "trainer.strategy.pipeline_model_parallel_size",
            "cp": "trainer.strategy.context_parallel_size", "ep": "trainer.strategy.expert_model_parallel_size",
            "sp": "trainer.strategy.sequence_parallel", "zero_stage": "optim.config.use_distributed_optimizer",
            "micro_batch_size": "data.micro_batch_size", "global_batch_size": "data.global_batch_size",
            "overlap_grad_reduce": "trainer.strategy.ddp.overlap_grad_reduce",
            "overlap_param_gather": "trainer.strategy.ddp.overlap_param_gather",
            "overlap_tp_comm": "trainer.callbacks.MegatronCommOverlapCallback.tp_comm_overlap",
            "dtype": "trainer.plugins.precision", "dp": "trainer.num_nodes * trainer.devices / (tp * pp * cp)"}
    if plan.vpp > 1:
        keys["vpp"] = "trainer.strategy.virtual_pipeline_model_parallel_size"
    if plan.recompute != Recompute.NONE:
        keys["recompute"] = "model.config.recompute_granularity"
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
                "mixed_precision_param": "bfloat16", "enable_cpu_offload": bool(parts),
                "compile": bool(plan.overlap_tp_comm and plan.tp > 1)}
    if parts:
        keys["offload"] = "training.enable_cpu_offload"
    ac = {"mode": {Recompute.NONE: "none", Recompute.SELECTIVE: "selective", Recompute.FULL: "full"}[plan.recompute]}
    if plan.recompute == Recompute.SELECTIVE:
        ac["selective_ac_option"] = "op"
    sections = {"parallelism": par, "training": training, "activation_checkpoint": ac}
    notes = []
    if plan.dtype == "fp8":
        sections = {"model": {"converters": ["float8"]}, **sections,
                    "float8": {"enable_fsdp_float8_all_gather": plan.zero_stage >= 2}}
        keys["dtype"] = "model.converters"
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
    keys = {"global_batch_size": "train_batch_size", "micro_batch_size": "train_micro_batch_size_per_gpu",
            "zero_stage": "zero_optimization.stage", "overlap_grad_reduce": "zero_optimization.overlap_comm",
            "constant_buffers": "zero_optimization.contiguous_gradients", "dtype": "bf16.enabled",
            "dp": "train_batch_size / (train_micro_batch_size_per_gpu * gradient_accumulation_steps)"}
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


# ---------------------------------------------------------------------------------- PyTorch FSDP

FSDP_SHARDING = {0: "NO_SHARD", 2: "SHARD_GRAD_OP", 3: "FULL_SHARD"}
TORCH_DTYPES = {"bf16": "torch.bfloat16", "fp16": "torch.float16"}


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
             f"    mixed_precision=MixedPrecision(param_dtype={dt}, reduce_dtype=torch.float32, buffer_dtype={dt}),",
             f"    cpu_offload=CPUOffload(offload_params={bool(parts)}),",
             "    use_orig_params=True,",
             ")",
             f"ACTIVATION_CHECKPOINTING = {ckpt}",
             ""]
    keys = {"zero_stage": "sharding_strategy", "overlap_param_gather": "backward_prefetch",
            "dtype": "mixed_precision", "micro_batch_size": "MICRO_BATCH_SIZE",
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


WRITERS = {"megatron": megatron_args, "nemo": nemo_recipe, "torchtitan": torchtitan_toml,
           "deepspeed": deepspeed_json, "fsdp": fsdp_snippet}


def export_plan(plan: Plan, model, cluster, framework: str) -> Export:
    """``plan`` as ``framework``'s launch settings (writer chosen by the profile's ``export``); ValueError
    naming the field and the reason when the framework cannot run the plan or its settings cannot say it."""
    prof = get_profile(framework)
    if prof is None:
        raise ValueError(f"framework: give one to export for ({', '.join(p for p in WRITER_FRAMEWORKS)})")
    if prof.export not in WRITERS:
        raise ValueError(f"framework: no launch-config writer for {prof.name}; export writes "
                         f"{', '.join(WRITER_FRAMEWORKS)}")
    _refuse(framework_errors(plan, prof.name))
    if prof.export in ("megatron", "nemo"):
        _refuse(_placement_errors(plan, prof.name))
    return WRITERS[prof.export](plan, model, cluster, prof)


def _writer_frameworks() -> tuple:
    from models.frameworks import PROFILES
    return tuple(p.name for p in PROFILES.values() if p.export in WRITERS)


WRITER_FRAMEWORKS = _writer_frameworks()


def suffix_for(framework: str) -> tuple:
    """The file suffixes a framework's export may be written to (the first is its natural one)."""
    prof = get_profile(framework)
    return SUFFIXES.get(prof.export if prof else "", ())


def shell_args(text: str) -> list[str]:
    """The arguments of a Megatron export's ``MEGATRON_ARGS=( ... )`` array (for tests and tools)."""
    body = text.split("MEGATRON_ARGS=(", 1)[1].split("\n)", 1)[0]
    return shlex.split(body, comments=True)


__all__ = ["Export", "export_plan", "megatron_args", "nemo_recipe", "torchtitan_toml", "deepspeed_json",
           "fsdp_snippet", "WRITERS", "WRITER_FRAMEWORKS", "SUFFIXES", "suffix_for", "shell_args", "MARKER"]
