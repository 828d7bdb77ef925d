"""What every launch-config writer of models.export shares: the sources of the key names (one place),
the file suffixes, the header marker, the Export record and the checks shared by writers."""

from __future__ import annotations

from dataclasses import dataclass

from models.plan import DEFAULT_PLACEMENT, Plan

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


def _recompute_num_layers(plan: Plan, model) -> int:
    """Layers per pipeline stage (model chunk) recomputed under full recompute of ``recompute_fraction`` of
    them (Megatron --recompute-method block --recompute-num-layers N: the first N of each chunk)."""
    per_chunk = max(1, model.num_layers // (plan.pp * plan.vpp))
    return max(1, round(plan.recompute_fraction * per_chunk))


def _header(plan: Plan, model, cluster, prof, source: str, comment: str = "#") -> list[str]:
    return [f"{comment} {MARKER}: {plan.plan_id} for {prof.title} ({prof.name})",
            f"{comment} model {model.name}, {cluster.num_gpus} x {cluster.gpu.name} ({cluster.num_nodes} nodes of "
            f"{cluster.gpus_per_node}); key names from {source}"]
