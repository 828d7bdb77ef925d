"""The parallel plan, its enums, and cross-object validation (check_plan)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from itertools import permutations

from models.fields import check_value, opt, options
from models.finetune import METHODS as FINETUNE_METHODS
from models.finetune import check as check_finetune
from models.finetune import parse_targets
from models.optimizers import MASTER_WEIGHTS, OPTIMIZERS, default_master
from models.parallel.offload import OFFLOAD_TARGETS
from models.parallel.offload import check as check_offload
from models.parallel.offload import parse as parse_offload


class ZeroStage(IntEnum):
    NONE = 0
    OPTIMIZER = 1
    GRADIENTS = 2
    PARAMETERS = 3


class Recompute(IntEnum):
    NONE = 0
    SELECTIVE = 1
    FULL = 2


class Schedule(IntEnum):
    GPIPE = 0
    ONE_F_ONE_B = 1
    INTERLEAVED = 2
    ZERO_BUBBLE = 3


RECOMPUTE_NAMES = {"none": Recompute.NONE, "selective": Recompute.SELECTIVE, "full": Recompute.FULL}
SCHEDULE_NAMES = {"gpipe": Schedule.GPIPE, "1f1b": Schedule.ONE_F_ONE_B,
                  "interleaved": Schedule.INTERLEAVED, "zb-h1": Schedule.ZERO_BUBBLE}
SCHEDULE_IDS = {v: k for k, v in SCHEDULE_NAMES.items()}  # plan ids use the names users type (1f1b, zb-h1)
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}
# Bytes of a working weight (and its gradient) per dtype: 16-bit under bf16/fp16 and fp8 (Transformer Engine
# keeps 16-bit weights and casts them per GEMM); fp32 training (no mixed precision: accelerate's
# mixed_precision "no", PyTorch's default) keeps 4-byte weights and gradients and no separate master copy.
WEIGHT_BYTES = {"bf16": 2, "fp16": 2, "fp8": 2, "fp32": 4}
# Attention kernels (models.kernel_tables): "flash" is the best FlashAttention the GPU's usual stack runs
# (flash2 on Ampere, Transformer Engine's cuDNN fused attention on Hopper and later).
ATTENTION_KERNELS = ("flash", "flash1", "flash2", "flash3", "cudnn", "unfused")
# Rank placement: the order of the parallel dimensions from innermost (consecutive ranks, on
# NVLink) to outermost. Megatron's default puts TP innermost, then CP, DP, PP (EP inside DP).
PLACEMENT_DIMS = ("tp", "cp", "dp", "pp")
DEFAULT_PLACEMENT = "tp-cp-dp-pp"
PLACEMENTS = (DEFAULT_PLACEMENT,) + tuple(sorted("-".join(p) for p in permutations(PLACEMENT_DIMS)
                                                 if "-".join(p) != DEFAULT_PLACEMENT))
# The planner's default choices: each dimension innermost once, the others in Megatron order.
INNERMOST_PLACEMENTS = tuple("-".join((d,) + tuple(x for x in PLACEMENT_DIMS if x != d)) for d in PLACEMENT_DIMS)


def user_value(value):
    """A plan value as users type it (CLI, YAML, tables): enum members by their name, ZeRO as its stage.

    >>> user_value(Schedule.ONE_F_ONE_B), user_value(Recompute.FULL), user_value(ZeroStage.GRADIENTS), user_value(8)
    ('1f1b', 'full', 2, 8)
    """
    if isinstance(value, Recompute):
        return value.name.lower()
    if isinstance(value, Schedule):
        return SCHEDULE_IDS[value]
    return int(value) if isinstance(value, ZeroStage) else value


def normalise_placement(text: str) -> str:
    """'tp,cp,dp,pp' or 'tp-cp-dp-pp' -> 'tp-cp-dp-pp'; ValueError unless a permutation of tp, cp, dp, pp."""
    order = "-".join(x.strip().lower() for x in str(text).replace(",", "-").split("-") if x.strip())
    if order not in PLACEMENTS:
        raise ValueError(f"plan.placement: {text!r} must list tp, cp, dp, pp once each, innermost first "
                         f"(e.g. {DEFAULT_PLACEMENT})")
    return order


def _enum(value, names: dict, field: str):
    if isinstance(value, str):
        key = value.lower()
        if key not in names:
            raise ValueError(f"{field}: {value!r} unknown; choose one of {', '.join(names)}")
        return names[key]
    return list(names.values())[0].__class__(int(value))


# Largest parallel degree, batch or micro-batch accepted (a million GPUs; bounds the work an input asks for).
MAX_DEGREE = 1 << 20
MAX_BATCH = 1 << 30
_DEG = {"minimum": 1, "maximum": MAX_DEGREE}


@dataclass(frozen=True, slots=True)
class Plan:
    """One parallel plan and the training settings the cost model needs. Each field's metadata
    (models.fields.Opt) is the single declaration from which the CLI, the scenario schema, the
    dashboard and the planner are derived: see docs/CONTRIBUTING.md to add one."""
    dp: int = opt(1, "data-parallel degree", "plan", optional="fill the cluster: GPUs / (tp pp cp)", **_DEG)
    tp: int = opt(1, "tensor-parallel degree", "plan", search=(), **_DEG)
    pp: int = opt(1, "pipeline-parallel degree", "plan", search=(), **_DEG)
    cp: int = opt(1, "context-parallel degree (sequence split for attention)", "plan", search=(1, 2, 4, 8, 16, 32),
                  **_DEG)
    ep: int = opt(1, "expert-parallel degree (MoE), carved out of dp*cp (or, with expert_tp < tp, of tp*cp*dp)",
                  "plan", search=(), **_DEG)
    expert_tp: int = opt(0, "expert tensor-parallel degree of the MoE expert layers (Megatron-Core "
                         "--expert-tensor-parallel-size): the expert layers re-partition the tp x cp x dp ranks as "
                         "expert_tp x ep x expert-dp (parallel folding), so ep may take tp ranks; 0 = tp", "plan",
                         minimum=0, maximum=MAX_DEGREE, search=())
    vpp: int = opt(1, "virtual pipeline stages (model chunks) per rank; needs the interleaved schedule", "plan",
                   search=(1, 2, 4, 8), **_DEG)
    micro_batch_size: int = opt(1, "sequences per micro-batch", "plan", flag="--micro-batch", unit="sequences",
                                search=(1, 2, 4, 8, 16), minimum=1, maximum=MAX_BATCH)
    sp: bool = opt(False, "Megatron sequence parallelism (needs tp > 1 to matter)", "plan", search=(False, True))
    zero_stage: ZeroStage = opt(ZeroStage.NONE, "ZeRO stage: 1 shards optimizer state, 2 also gradients, "
                                "3 also parameters", "plan", flag="--zero", choices=(0, 1, 2, 3),
                                search=(0, 1, 2, 3))
    shard_group: int = opt(0, "ranks the ZeRO/FSDP model states are sharded over (hybrid sharding, HSDP / ZeRO++ "
                           "hpZ: shard inside the group, replicate across groups); 0 = all dp*cp ranks", "plan",
                           unit="ranks", minimum=0, maximum=MAX_DEGREE, search=(0, 8))
    recompute: Recompute = opt(Recompute.NONE, "activation recomputation", "plan", choices=tuple(RECOMPUTE_NAMES),
                               search=tuple(RECOMPUTE_NAMES))
    schedule: Schedule = opt(Schedule.ONE_F_ONE_B, "pipeline schedule", "plan", choices=tuple(SCHEDULE_NAMES),
                             search=tuple(SCHEDULE_NAMES), optional="interleaved when vpp > 1, else 1f1b")
    placement: str = opt(DEFAULT_PLACEMENT, "rank order, innermost (on NVLink) first: any order of tp, cp, dp, pp",
                         "plan", search=INNERMOST_PLACEMENTS)
    global_batch_size: int = opt(1, "sequences per iteration", "training", flag="--global-batch", unit="sequences",
                                 minimum=1, maximum=MAX_BATCH, optional="dp x micro-batch")
    dtype: str = opt("bf16", "matmul dtype: bf16/fp16 (mixed precision), fp8 (Transformer Engine GEMMs), fp32 "
                     "(no mixed precision: 4-byte weights, gradients and activations, FP32 GEMMs on the CUDA "
                     "cores as PyTorch runs them by default, no master copy; attention unfused)", "training",
                     choices=tuple(DTYPE_BYTES))
    attention: str = opt("flash", "attention kernel: flash (the best FlashAttention the GPU's usual stack runs: "
                         "flash2 on Ampere, cudnn on Hopper+); flash1 (FlashAttention v1 through its unpadded "
                         "interface: q/k/v packed and the output unpacked every layer); flash2; flash3 (Hopper); "
                         "cudnn (cuDNN / Transformer Engine fused attention); unfused (s x s scores in HBM)",
                         "training", choices=ATTENTION_KERNELS)
    overlap_grad_reduce: bool = opt(True, "DP gradient reduction overlapped with backward", "training")
    overlap_param_gather: bool = opt(True, "ZeRO parameter all-gather overlapped with compute", "training")
    overlap_tp_comm: bool = opt(False, "TP/SP collectives overlapped with GEMMs", "training")
    overlap_ep_comm: bool = opt(False, "MoE all-to-alls overlapped with another micro-batch's compute (DualPipe)",
                                "training")
    # fine-tuning, optimizer, offload and ZeRO-R (models/finetune.py, models/optimizers.py,
    # models/parallel/offload.py)
    finetune: str = opt("none", "training method: none (full training), lora, qlora (NF4 base), dora", "training",
                        choices=FINETUNE_METHODS, search=("none",))
    lora_rank: int = opt(8, "LoRA rank r", "training", minimum=1, maximum=1 << 16)
    lora_alpha: float = opt(16.0, "LoRA alpha (scales the update; no cost)", "training", minimum=0, maximum=1e6)
    lora_targets: str = opt("q_proj,v_proj", "adapted modules, PEFT names: comma list of q_proj,k_proj,v_proj,o_proj,"
                            "gate_proj,up_proj,down_proj, or all-linear", "training")
    optimizer: str = opt("adamw", "optimizer (state bytes and update traffic)", "training", choices=OPTIMIZERS,
                         search=("adamw",))
    master_weights: str | None = opt(None, "fp32 master copy of the trainable weights", "training",
                                     choices=MASTER_WEIGHTS, optional="fp32; none for lomo and adalomo")
    offload: str = opt("none", "what lives off the GPU: none or a comma list of optimizer,params,gradients,"
                       "activations", "training", search=("none",))
    offload_to: str = opt("cpu", "where offloaded state lives", "training", choices=OFFLOAD_TARGETS)
    partition_activations: bool = opt(False, "ZeRO-R Pa: activation checkpoints partitioned across TP ranks",
                                      "training")
    constant_buffers: bool = opt(True, "ZeRO-R CB: constant-size fused gradient buffers (off: one fp32 buffer "
                                 "of all gradients)", "training")
    fused_loss: bool = opt(False, "cross-entropy as one fused kernel on the 16-bit logits (flash-attn xentropy; "
                           "llm-foundry's default): no fp32 copy of the logits; off = PyTorch / Megatron "
                           "cross-entropy on fp32-upcast logits", "training")
    fused_elementwise: bool = opt(False, "the layer's elementwise ops as fused kernels (Megatron-Core's rope and "
                                  "bias-SwiGLU fusions, XLA, torch.compile): one pass each; off = PyTorch eager as "
                                  "torchtitan and Hugging Face models run them (rotary embedding through an fp32 copy, "
                                  "SiLU and the gate product apart, GQA keys/values expanded and the attention output "
                                  "made contiguous for SDPA)", "training")
    fused_norm: bool = opt(False, "RMSNorm as one fused kernel even where the other elementwise ops run eagerly "
                           "(Transformer Engine's LayerNorm+Linear, apex, torchtitan's 2024 fused_rmsnorm Triton "
                           "kernel); off = eager RMSNorm (fp32 upcast, square, mean, rsqrt, two products: torchtitan "
                           "norms.py RMSNorm, Hugging Face LlamaRMSNorm) unless fused_elementwise fuses it. LayerNorm "
                           "is one native kernel either way", "training")
    grad_reduce_fp32: bool = opt(False, "data-parallel gradients accumulated and reduced in fp32 (Megatron-LM's bf16 "
                                 "rule, FSDP2 reduce_dtype float32 as torchtitan sets it): twice the bytes in the "
                                 "gradient collectives and, below ZeRO-3, in the gradient buffer; off = in the "
                                 "16-bit dtype", "training")
    fp8_param_gather: bool = opt(False, "weight all-gathers in fp8 (dtype fp8 only): the ZeRO-3/FSDP per-layer gathers "
                                 "and the distributed optimizer's after the step move 1 byte a weight (torchao "
                                 "enable_fsdp_float8_all_gather; Transformer Engine fp8_params, as NeMo's "
                                 "bf16_with_fp8_mixed sets)", "training")
    fsdp_root_unsharded: bool = opt(False, "ZeRO-3 / FSDP2: the root unit (embeddings, final norm, output layer) "
                                    "stays gathered from its forward to its backward, as PyTorch FSDP2 keeps its root "
                                    "(torchtitan): those weights count in full", "training")
    train_metric_passes: int = opt(0, "unfused cross-entropy passes over the logits after each micro-batch's "
                                   "backward, for the training metrics (Composer: LanguageCrossEntropy and "
                                   "LanguagePerplexity, 2); 0 = none", "training", unit="passes", minimum=0,
                                   maximum=16)
    zero3_max_live_params: float = opt(0.0, "ZeRO-3: gathered parameters kept live beyond the module that runs "
                                       "(DeepSpeed stage3_max_live_parameters); 0 = whole layers, the current and "
                                       "the prefetched one (FSDP)", "training", unit="parameters", minimum=0.0,
                                       maximum=1e13)
    zero_bucket_params: float = opt(0.0, "ZeRO-3: contiguous 16-bit gradient reduce bucket the optimizer allocates "
                                    "(DeepSpeed reduce_bucket_size); 0 = none (FSDP reduces from its own buffers)",
                                    "training", unit="parameters", minimum=0.0, maximum=1e12)
    recompute_fraction: float = opt(1.0, "share of each stage's layers that recompute applies to; the others keep "
                                    "all their activations (Megatron --recompute-method block --recompute-num-layers "
                                    "N: N / layers per stage; torchtitan selective_ac_option N: every Nth layer, 1/N)",
                                    "training", minimum=0.01, maximum=1.0)
    fragmentation: bool = opt(True, "count allocator fragmentation (5% of tensor bytes); off = ZeRO-R MD, "
                              "defragmented contiguous buffers", "training")

    def __post_init__(self) -> None:
        for name in options(Plan):
            v = getattr(self, name)
            if isinstance(v, (ZeroStage, Recompute, Schedule)):
                continue
            if name in ("recompute", "schedule") and isinstance(v, int) and not isinstance(v, bool):
                continue  # enum codes (the planner's arrays)
            if name == "placement":
                continue
            object.__setattr__(self, name, check_value(Plan, name, v, where="plan"))
        object.__setattr__(self, "zero_stage", ZeroStage(int(self.zero_stage)))
        object.__setattr__(self, "recompute", _enum(self.recompute, RECOMPUTE_NAMES, "plan.recompute"))
        object.__setattr__(self, "schedule", _enum(self.schedule, SCHEDULE_NAMES, "plan.schedule"))
        object.__setattr__(self, "placement", normalise_placement(self.placement))
        object.__setattr__(self, "lora_targets", parse_targets(self.lora_targets))
        object.__setattr__(self, "offload", parse_offload(self.offload))
        if self.master_weights is None:
            object.__setattr__(self, "master_weights", "none" if self.dtype == "fp32" else default_master(self.optimizer))
        per_step = self.micro_batch_size * self.dp
        if self.global_batch_size % per_step:
            raise ValueError(f"plan.global_batch_size: {self.global_batch_size} is not a multiple of "
                             f"micro_batch_size*dp = {self.micro_batch_size}*{self.dp} = {per_step}")
        if self.vpp > 1 and self.schedule != Schedule.INTERLEAVED:
            raise ValueError(f"plan.vpp: vpp={self.vpp} needs schedule=interleaved (got {self.schedule.name.lower()})")
        if self.schedule == Schedule.INTERLEAVED and self.pp == 1:
            raise ValueError("plan.schedule: interleaved needs pp > 1")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per pipeline per iteration (gradient-accumulation steps)."""
        return self.global_batch_size // (self.micro_batch_size * self.dp)

    @property
    def plan_id(self) -> str:
        pid = (f"dp{self.dp}-tp{self.tp}-pp{self.pp}-cp{self.cp}-ep{self.ep}-vpp{self.vpp}-sp{int(self.sp)}"
               f"-z{int(self.zero_stage)}-mb{self.micro_batch_size}-rc{self.recompute.name.lower()}"
               f"-{SCHEDULE_IDS[self.schedule]}")
        pid = pid if self.placement == DEFAULT_PLACEMENT else f"{pid}-{self.placement.split('-')[0]}inner"
        pid = f"{pid}-etp{self.expert_tp}" if self.expert_tp and self.expert_tp != self.tp else pid
        pid = f"{pid}-hsdp{self.shard_group}" if 0 < self.shard_group < self.dp * self.cp else pid
        # fine-tuning method, optimizer and offload only when not the defaults (full training, adamw, none)
        if self.recompute != Recompute.NONE and self.recompute_fraction < 1.0:
            pid = f"{pid}-rcf{self.recompute_fraction:g}"
        tail = [x for x, default in ((self.finetune, "none"), (self.optimizer, "adamw"),
                                     (f"off-{self.offload.replace(',', '+')}", "off-none")) if x != default]
        return "-".join([pid, *tail])


def check_plan(plan: Plan, model, cluster=None) -> list[str]:
    """Why ``plan`` cannot run ``model`` on ``cluster``: a list of messages naming the field
    and the fix; empty when the plan is valid."""
    errs = []
    if model.num_heads % plan.tp:
        errs.append(f"tp: tp={plan.tp} does not divide num_heads={model.num_heads}; use a divisor of it")
    if model.num_kv_heads % plan.tp and plan.tp % model.num_kv_heads:
        errs.append(f"tp: tp={plan.tp} and num_kv_heads={model.num_kv_heads} must divide one another")
    if model.ffn_hidden % plan.tp:
        errs.append(f"tp: tp={plan.tp} does not divide ffn_hidden={model.ffn_hidden}")
    if plan.pp * plan.vpp > model.num_layers:
        errs.append(f"pp: pp*vpp={plan.pp * plan.vpp} exceeds num_layers={model.num_layers}")
    if plan.cp > 1 and model.seq_len % (2 * plan.cp):
        errs.append(f"cp: seq_len={model.seq_len} must be divisible by 2*cp={2 * plan.cp} (load-balanced ring attention)")
    if plan.sp and model.seq_len % (plan.tp * plan.cp):
        errs.append(f"sp: seq_len={model.seq_len} must be divisible by tp*cp={plan.tp * plan.cp} for sequence parallelism")
    if plan.ep > 1:
        if not model.is_moe:
            errs.append(f"ep: ep={plan.ep} needs an MoE model; {model.name} is dense (use ep=1)")
        elif model.num_experts % plan.ep:
            errs.append(f"ep: ep={plan.ep} does not divide num_experts={model.num_experts}")
    etp = plan.expert_tp or plan.tp
    if plan.expert_tp and not model.is_moe and plan.expert_tp != plan.tp:
        errs.append(f"expert_tp: expert_tp={plan.expert_tp} needs an MoE model; {model.name} is dense (use 0)")
    if model.is_moe and (plan.ep > 1 or plan.expert_tp):
        if etp == plan.tp and (plan.dp * plan.cp) % plan.ep:
            errs.append(f"ep: ep={plan.ep} must divide dp*cp={plan.dp * plan.cp} (experts are sharded over data-parallel "
                        "ranks); or fold it into tensor-parallel ranks with expert_tp < tp")
        elif (plan.tp * plan.cp * plan.dp) % (plan.ep * etp):
            errs.append(f"expert_tp: ep*expert_tp={plan.ep}*{etp} must divide tp*cp*dp={plan.tp * plan.cp * plan.dp} "
                        "(the expert layers re-partition those ranks)")
        if model.expert_ffn_hidden % etp:
            errs.append(f"expert_tp: expert_tp={etp} does not divide the expert FFN width {model.expert_ffn_hidden}")
    if plan.shard_group and (plan.dp * plan.cp) % plan.shard_group:
        errs.append(f"shard_group: {plan.shard_group} does not divide dp*cp = {plan.dp * plan.cp}; use a divisor "
                    "of it (or 0: shard over all of them)")
    if plan.schedule == Schedule.INTERLEAVED and plan.num_microbatches % plan.pp:
        errs.append(f"global_batch_size: interleaved schedule needs num_microbatches={plan.num_microbatches} "
                    f"divisible by pp={plan.pp}")
    if plan.dtype == "fp32" and plan.attention != "unfused":
        errs.append(f"attention: {plan.attention} kernels take 16-bit inputs (FlashAttention, cuDNN fused "
                    "attention); with dtype fp32 set attention unfused")
    if plan.fp8_param_gather and plan.dtype != "fp8":
        errs.append(f"fp8_param_gather: weights are gathered in fp8 only when the GEMMs run in fp8 (dtype is "
                    f"{plan.dtype}); set dtype fp8 or turn it off")
    if plan.dtype == "fp32" and plan.master_weights == "fp32":
        errs.append("master_weights: the weights are fp32 already (dtype fp32); use none")
    if plan.dtype == "fp8" and cluster is not None and cluster.gpu.peak_fp8_flops_per_s <= 0:
        errs.append(f"dtype: {cluster.gpu.name} has no fp8 tensor cores; use bf16")
    if plan.dtype == "bf16" and cluster is not None and cluster.gpu.peak_bf16_flops_per_s <= 0:
        errs.append(f"dtype: {cluster.gpu.name} has no bf16 tensor cores; use fp16")
    if cluster is not None:
        if plan.world_size != cluster.num_gpus:
            errs.append(f"dp: world size dp*tp*pp*cp = {plan.dp}*{plan.tp}*{plan.pp}*{plan.cp} = {plan.world_size} "
                        f"but the cluster has {cluster.num_gpus} GPUs; set dp={cluster.num_gpus // (plan.tp * plan.pp * plan.cp)}"
                        if cluster.num_gpus % (plan.tp * plan.pp * plan.cp) == 0 else
                        f"dp: world size dp*tp*pp*cp = {plan.world_size} but the cluster has {cluster.num_gpus} GPUs")
    errs += check_finetune(model, plan.finetune, plan.lora_rank, plan.lora_targets)
    if cluster is not None:
        errs += check_offload(plan.offload, plan.offload_to, cluster.node)
    return errs
