"""Framework profiles as data: what Megatron-LM, Megatron-Core/NeMo, DeepSpeed, PyTorch FSDP,
llm-foundry, torchtitan and MaxText do when a user leaves a setting unstated, and what they
cannot run at all.

A :class:`Profile` holds

- ``defaults``: a :class:`Default` per plan/training field (and ``dropout`` for the model), each
  with the source it was read from (repository, file, version). A default may depend on the
  layout (``tp>1``, ``pp>1``, ``zero_stage=3``): Megatron-Core recipes turn sequence parallelism on
  with TP, torchtitan keeps FSDP2 parameters gathered between forward and backward under PP.
- ``limits``: what the framework can run, per field: the allowed values and the reason
  (Megatron-Core has no ZeRO-2/3; DeepSpeed's pipeline engine runs 1F1B only ...).
- ``microbatches``: ``"stages"`` where the framework splits a local batch into as many
  micro-batches as pipeline stages unless told otherwise (torchtitan).

:func:`apply_defaults` fills the fields a user left at the generic default; :func:`framework_errors`
says why a plan cannot run under a framework (``check_plan`` reports it).

    >>> p = get_profile("megatron-core")
    >>> p.defaults["zero_stage"].value, p.defaults["sp"].resolve({"tp": 4})
    (1, True)
    >>> framework_errors({"zero_stage": 3, "pp": 1, "tp": 1}, "nemo")[0][:60]
    'zero_stage: megatron-core cannot run zero_stage=3 (the distr'
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Conditions a default or a limit may depend on (the only vocabulary: profiles stay data).
CONDITIONS = {"tp>1": lambda f: int(f.get("tp") or 1) > 1, "pp>1": lambda f: int(f.get("pp") or 1) > 1,
              "zero_stage=3": lambda f: int(f.get("zero_stage") or 0) == 3, "always": lambda f: True,
              "bf16": lambda f: str(f.get("dtype") or "bf16") == "bf16",
              "fp8": lambda f: str(f.get("dtype") or "bf16") == "fp8",
              # the profile itself chose recompute (the user left it unset): a default that goes with it
              "recompute_defaulted": lambda f: "recompute" in f.get("_defaulted", ())}


@dataclass(frozen=True, slots=True)
class Default:
    """One default and its source; ``when``: (condition, value) pairs tried first, in order."""
    value: object
    source: str                       # "repo path@version: what it says"
    when: tuple = ()                  # ((condition in CONDITIONS, value), ...)

    def resolve(self, fields: dict):
        for cond, value in self.when:
            if CONDITIONS[cond](fields):
                return value
        return self.value


@dataclass(frozen=True, slots=True)
class Limit:
    """Values a field may take under the framework (``when`` the condition holds), and why."""
    allowed: tuple
    reason: str
    when: str = "always"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str                        # framework and era, as a user would say it
    aliases: tuple = ()
    defaults: dict = field(default_factory=dict)   # field -> Default
    limits: dict = field(default_factory=dict)     # field -> tuple of Limit
    microbatches: str = ""            # "stages": default global batch gives pp micro-batches per pipeline
    microbatches_source: str = ""
    export: str = ""                  # writer in models/export/

    def __hash__(self) -> int:
        return hash(self.name)


# ----------------------------------------------------------------------------- sources (one place)

_MLM_ARGS_2021 = ("NVIDIA/Megatron-LM megatron/arguments.py@v2.5 (2021; same in the Sep 2020 tree 5281919 "
                  "and until 3fb3e95 'Deprecate torchDDP and get rid of args.DDP_impl', 2023-08-31)")
_MLM_ATTN_2021 = ("NVIDIA/Megatron-LM megatron/model/transformer.py@v2.5: ParallelAttention forms the "
                  "[b, np, s, s] attention_scores with baddbmm and FusedScaleMaskSoftmax (scores in HBM)")
_NEMO_70B = "NVIDIA/NeMo nemo/collections/llm/recipes/llama3_70b.py@0189a3b (NeMo 2.0, 2024)"
_NEMO_ADAM = ("NVIDIA/NeMo nemo/collections/llm/recipes/optim/adam.py@0189a3b: distributed_fused_adam_with_"
              "cosine_annealing -> OptimizerConfig(use_distributed_optimizer=True)")
_NEMO_LLAMA = "NVIDIA/NeMo nemo/collections/llm/gpt/model/llama.py@0189a3b: Llama3Config hidden/attention_dropout 0.0"
_MCORE_ARGS = ("NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0 (2024): --use-distributed-optimizer, "
               "--sequence-parallel, --overlap-grad-reduce, --overlap-param-gather, --tp-comm-overlap are store_true "
               "(off unless given); --hidden-dropout/--attention-dropout default 0.1")
_MCORE_NO_ZERO3 = ("the distributed optimizer shards optimizer state over DP (ZeRO-1); Megatron-Core has no "
                   "ZeRO-2/3 parameter sharding (Megatron-LM megatron/core/optimizer/distrib_optimizer.py@core_r0.8.0)")
_DS_ZERO = "microsoft/DeepSpeed deepspeed/runtime/zero/config.py@03dc2b9 (v0.16)"
_DS_PIPE = ("microsoft/DeepSpeed deepspeed/runtime/pipe/engine.py@03dc2b9: PipelineEngine asserts "
            "zero_optimization_stage() < 2 ('ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism') and "
            "runs schedule.TrainSchedule (1F1B, no interleaving)")
_DS_AUTOTP = ("DeepSpeed AutoTP training (deepspeed >= 0.16.4, https://www.deepspeed.ai/tutorials/autotp-training): "
              "'tensor_parallel': {'autotp_size': N} combines TP with ZeRO stage 0, 1 or 2; no ZeRO-3 with AutoTP "
              "(deepspeedai/DeepSpeedExamples #1004: 'AutoTP+ZeRO-3 not supported')")
_DS_BF16 = ("microsoft/DeepSpeed deepspeed/runtime/bf16_optimizer.py@v0.6.0 (2022): BF16_Optimizer shards fp32 state "
            "over DP (ZeRO-1) and all-reduces gradients after backward")
_FSDP = ("pytorch/pytorch torch/distributed/fsdp/fully_sharded_data_parallel.py@v2.1.0: sharding_strategy="
         "FULL_SHARD, backward_prefetch=BACKWARD_PRE, limit_all_gathers=True by default")
_FSDP_NO_PP = "PyTorch FSDP (torch.distributed.fsdp@v2.1.0) shards data-parallel ranks only: no pipeline schedule"
_FOUNDRY = ("mosaicml/llm-foundry scripts/train/benchmarking/README.md@4952183 (2024-04-22): fsdp_config "
            "sharding_strategy FULL_SHARD, activation_checkpointing true, attn_impl flash; the tables carry "
            "'TODO: Update tables with torch 2.0 after next Composer release' (torch 1.13: FlashAttention v1)")
# llm-foundry's loss and training metrics (the torch 1.13 tables ran llm-foundry@5f43bf160, 2023-05, on Composer
# 0.14; the torch 2 profile reads llm-foundry@0085285, 2024-02, on Composer 0.19): ComposerMPTCausalLM's loss_fn
# defaults to 'fused_crossentropy' (flash_attn.losses.cross_entropy.CrossEntropyLoss, the xentropy kernel), and
# its train_metrics are [LanguageCrossEntropy, LanguagePerplexity], which Composer's Trainer._train_microbatch
# updates after every micro-batch's backward (composer/trainer/trainer.py@v0.14.1 and @v0.19.0,
# _eval_train_metrics); each runs torch.nn.CrossEntropyLoss on the cached logits (composer/metrics/nlp.py).
_FOUNDRY_LOSS = ("mosaicml/llm-foundry llmfoundry/models/mpt/modeling_mpt.py@5f43bf160 and @0085285: "
                 "ComposerMPTCausalLM loss_fn default 'fused_crossentropy' (flash-attn xentropy)")
_FOUNDRY_METRICS = ("llm-foundry modeling_mpt.py@5f43bf160 / @0085285 train_metrics [LanguageCrossEntropy, "
                    "LanguagePerplexity]; mosaicml/composer trainer.py@v0.14.1 / @v0.19.0 _train_microbatch runs "
                    "_eval_train_metrics after each backward (metrics/nlp.py: torch.nn.CrossEntropyLoss each)")
_TITAN = "pytorch/torchtitan torchtitan/config_manager.py@0011fb9 (2024)"
_TITAN_FSDP = ("pytorch/torchtitan torchtitan/parallelisms/parallelize_llama.py@0011fb9: fully_shard(..., "
               "reshard_after_forward=not parallel_dims.pp_enabled) (FSDP2 keeps parameters gathered under PP)")
_TITAN_PP = ("pytorch/torchtitan torchtitan/config_manager.py@0011fb9 --experimental.pipeline_parallel_schedule "
             "choices 1f1b, gpipe, interleaved_1f1b, flexible_interleaved_1f1b")
_MAXTEXT = "AI-Hypercomputer/maxtext MaxText/configs/base.yml@315ebb5"
# Elementwise fusion (Plan.fused_elementwise): Megatron's fused kernels are on unless switched off; torchtitan
# runs its llama model eagerly (compile off by default).
_MLM_FUSIONS_2021 = ("NVIDIA/Megatron-LM megatron/arguments.py@v2.5: --no-bias-gelu-fusion and "
                     "--no-masked-softmax-fusion are store_false (the fused kernels run unless switched off)")
_TITAN_EAGER = ("pytorch/torchtitan train_configs/llama3_8b.toml@0011fb9 compile = false (also @157a12c56); "
                "torchtitan/models/llama/model.py@0011fb9: apply_rotary_emb through a float32 complex product, "
                "FeedForward w2(F.silu(w1(x)) * w3(x)), repeat_kv before F.scaled_dot_product_attention and "
                "output.transpose(1, 2).contiguous()")
# RMSNorm kernel (Plan.fused_norm): Megatron-Core's Transformer Engine spec runs the norm inside TE's fused
# LayerNorm+Linear; torchtitan's configs name an eager RMSNorm (some of its April 2024 configs the Triton one).
_MCORE_TE_NORM = ("NVIDIA/Megatron-LM megatron/core/models/gpt/gpt_layer_specs.py@core_r0.8.0: linear_qkv / linear_fc1 = "
                  "TELayerNormColumnParallelLinear (the input norm runs in Transformer Engine's fused kernel), TENorm "
                  "otherwise")
_TITAN_NORM = ("pytorch/torchtitan train_configs/llama3_8b.toml@3faaa1a0d norm_type = \"rmsnorm\" -> torchtitan/models/"
               "norms.py@3faaa1a0d RMSNorm: x.float(), pow(2).mean, rsqrt, type_as, * weight as separate ops "
               "(the Triton fused_rmsnorm, added in 34711655b, was some configs' choice in April 2024 and removed "
               "in 37c4b8181)")
# Parallel folding (expert_tp < tp: the expert layers re-partition the tensor-parallel ranks as expert-parallel
# ones) is Megatron-Core's --expert-tensor-parallel-size (megatron/core/parallel_state.py@core_r0.10.0 expert
# rank generator); the other profiles' versions place experts over data-parallel ranks only, or have no MoE.
_NO_FOLDING = "no parallel folding (Megatron-Core --expert-tensor-parallel-size) in this profile's version"


def _d(value, source, **when) -> Default:
    return Default(value, source, tuple((k.replace("_gt1", ">1").replace("_eq3", "=3"), v) for k, v in when.items()))


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile(
        "megatron-lm-2020", "Megatron-LM v1/v2 (2020-2022, before Megatron-Core)",
        aliases=("megatron-lm-v2", "megatron-2020", "megatron-2021"),
        defaults={
            "attention": _d("unfused", _MLM_ATTN_2021),
            "dropout": _d(True, f"{_MLM_ARGS_2021}: --hidden-dropout 0.1, --attention-dropout 0.1"),
            "overlap_grad_reduce": _d(False, f"{_MLM_ARGS_2021}: --DDP-impl default 'local' (gradients all-reduced "
                                             "after backward)"),
            "overlap_param_gather": _d(False, f"{_MLM_ARGS_2021}: no distributed optimizer, nothing to gather"),
            "grad_reduce_fp32": _d(False, f"{_MLM_ARGS_2021}: 'bfloat16 requires gradient accumulation and all-reduce "
                                          "to be done in fp32' (accumulate_allreduce_grads_in_fp32 forced under "
                                          "--bf16; fp16 keeps 16-bit gradients)", bf16=True),
            "zero_stage": _d(0, f"{_MLM_ARGS_2021}: no --use-distributed-optimizer before v3.0"),
            "sp": _d(False, f"{_MLM_ARGS_2021}: no --sequence-parallel before v3.0"),
            "fused_elementwise": _d(True, _MLM_FUSIONS_2021),
            # the argument is off by default, but every training recipe of the era turns it on
            "recompute": _d("full", "NVIDIA/Megatron-LM README.md@5281919 (Sep 2020): every pretraining example "
                                    "passes --checkpoint-activations (the BERT script's OUTPUT_ARGS, reused by the "
                                    "GPT-2 one), and the README's scaling tables report TFLOP/s by 96 B s l h^2 "
                                    "(1 + s/6h + V/16lh), the count with the recomputed forward"),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: megatron-lm-2020"),),
            "zero_stage": (Limit((0,), "Megatron-LM before v3.0 has no distributed optimizer"),),
            "sp": (Limit((False,), "sequence parallelism arrived in Megatron-LM v3.0 (2022)"),),
            "cp": (Limit((1,), "context parallelism arrived with Megatron-Core (2023)"),),
            "recompute": (Limit(("none", "full"), "selective recomputation arrived in Megatron-LM v3.0 (2022)"),),
            "schedule": (Limit(("1f1b", "interleaved"), "Megatron-LM runs 1F1B or interleaved 1F1B "
                               "(megatron/schedules.py@v2.5)"),),
            "dtype": (Limit(("fp16", "bf16"), "fp8 needs Transformer Engine (Megatron-Core era)"),),
        },
        export="megatron"),
    Profile(
        "megatron-lm", "Megatron-LM with Megatron-Core, argument defaults (2023-)",
        aliases=("megatron", "megatron-lm-core"),
        defaults={
            "attention": _d("flash", f"{_MCORE_ARGS}; --transformer-impl transformer_engine (TE fused/flash attention)"),
            "dropout": _d(True, _MCORE_ARGS),
            "overlap_grad_reduce": _d(False, _MCORE_ARGS),
            "overlap_param_gather": _d(False, _MCORE_ARGS),
            "overlap_tp_comm": _d(False, _MCORE_ARGS),
            "grad_reduce_fp32": _d(False, "NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0: 'bfloat16 "
                                          "requires gradient accumulation and all-reduce to be done in fp32' "
                                          "(accumulate_allreduce_grads_in_fp32 forced under --bf16)", bf16=True),
            "zero_stage": _d(0, _MCORE_ARGS),
            "sp": _d(False, _MCORE_ARGS),
            "fused_elementwise": _d(True, "NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0: "
                                          "--no-rope-fusion and --no-bias-swiglu-fusion are store_false "
                                          "(apply_rope_fusion, bias_swiglu_fusion on unless switched off)"),
            "fused_norm": _d(True, _MCORE_TE_NORM),
        },
        limits={
            "zero_stage": (Limit((0, 1), _MCORE_NO_ZERO3),),
            "schedule": (Limit(("1f1b", "interleaved"), "Megatron-Core pipeline_parallel/schedules.py@core_r0.8.0: "
                               "1F1B with or without interleaving"),),
        },
        export="megatron"),
    Profile(
        "megatron-core", "Megatron-Core recipes: NeMo 2.0 / Megatron-Bridge (2024-)",
        aliases=("nemo", "megatron-bridge", "nemo-megatron", "mcore"),
        defaults={
            "zero_stage": _d(1, _NEMO_ADAM),
            "sp": _d(False, f"{_NEMO_70B}: sequence_parallelism=True with tensor_parallelism>1", tp_gt1=True),
            "overlap_grad_reduce": _d(True, f"{_NEMO_70B}: DistributedDataParallelConfig(overlap_grad_reduce=True)"),
            "overlap_param_gather": _d(True, f"{_NEMO_70B}: DistributedDataParallelConfig(overlap_param_gather=True)"),
            "overlap_tp_comm": _d(False, f"{_NEMO_70B} pretrain_recipe_performance: MegatronCommOverlapCallback("
                                         "tp_comm_overlap=True) with TP", tp_gt1=True),
            "attention": _d("flash", "NVIDIA/NeMo GPTConfig@0189a3b: transformer_layer_spec = TE spec "
                                     "(TEDotProductAttention: cuDNN/flash fused attention)"),
            "dropout": _d(False, _NEMO_LLAMA),
            "fused_elementwise": _d(True, "NVIDIA/NeMo nemo/collections/llm/gpt/model/llama.py@v2.2.0 LlamaConfig: "
                                          "apply_rope_fusion=True, bias_activation_fusion=True"),
            "fused_norm": _d(True, "NVIDIA/NeMo GPTConfig@0189a3b: transformer_layer_spec = TE spec, whose norms run in "
                                   "Transformer Engine (Megatron-LM gpt_layer_specs.py@core_r0.8.0: "
                                   "TELayerNormColumnParallelLinear)"),
            "grad_reduce_fp32": _d(False, "NVIDIA/NeMo nemo/collections/llm/recipes/llama3_70b.py@v2.2.0 "
                                          "pretrain_performance_optimizations: recipe.trainer.plugins."
                                          "grad_reduce_in_fp32 = False (the plain recipe's bf16_mixed sets True)"),
            "fp8_param_gather": _d(False, "NVIDIA/NeMo nemo/collections/llm/recipes/precision/mixed_precision.py@v2.2.0 "
                                          "bf16_with_fp8_mixed: fp8_params=True (scripts/llm/performance/pretrain_*.py "
                                          "use it for fp8)", fp8=True),
        },
        limits={
            "zero_stage": (Limit((0, 1), _MCORE_NO_ZERO3),),
            "schedule": (Limit(("1f1b", "interleaved"), "Megatron-Core pipeline_parallel/schedules.py: 1F1B with or "
                               "without interleaving"),),
        },
        export="nemo"),
    Profile(
        "megatron-deepspeed", "Megatron-DeepSpeed (BigScience/Microsoft fork of Megatron-LM v2, 2021-2022)",
        aliases=("megatron-ds",),
        defaults={
            "attention": _d("unfused", _MLM_ATTN_2021 + " (kept by the fork)"),
            "dropout": _d(True, f"{_MLM_ARGS_2021} (kept by the fork)"),
            "overlap_grad_reduce": _d(False, _DS_BF16),
            "zero_stage": _d(0, f"{_DS_ZERO}: stage 0"),
            "fused_elementwise": _d(True, f"{_MLM_FUSIONS_2021} (kept by the fork)"),
            "sp": _d(False, f"{_MLM_ARGS_2021}: no --sequence-parallel"),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: megatron-deepspeed"),),
            "zero_stage": (Limit((0, 1), _DS_PIPE, when="pp>1"),),
            "schedule": (Limit(("1f1b",), _DS_PIPE, when="pp>1"),),
            "vpp": (Limit((1,), _DS_PIPE),),
            "cp": (Limit((1,), "no context parallelism in Megatron-DeepSpeed (2022)"),),
        },
        export="deepspeed"),
    Profile(
        "deepspeed", "DeepSpeed ZeRO (config defaults)",
        aliases=("ds",),
        defaults={
            "zero_stage": _d(0, f"{_DS_ZERO}: DeepSpeedZeroConfig.stage = 0"),
            "overlap_grad_reduce": _d(False, f"{_DS_ZERO}: overlap_comm = (stage == 3) when unset", zero_stage_eq3=True),
            "overlap_param_gather": _d(True, f"{_DS_ZERO}: stage3_prefetch_bucket_size 5e7 elements (prefetch)"),
            "zero3_max_live_params": _d(1e9, f"{_DS_ZERO}: max_live_parameters (stage3_max_live_parameters) "
                                             "default 1e9"),
            "zero_bucket_params": _d(5e8, f"{_DS_ZERO}: reduce_bucket_size default 5e8 elements"),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: deepspeed"),),
            "zero_stage": (Limit((0, 1), _DS_PIPE, when="pp>1"), Limit((0, 1, 2), _DS_AUTOTP, when="tp>1")),
            "schedule": (Limit(("1f1b",), _DS_PIPE, when="pp>1"),),
            "vpp": (Limit((1,), _DS_PIPE),),
            "cp": (Limit((1,), "DeepSpeed's sequence parallelism is Ulysses (all-to-all over heads), not the ring "
                               "context parallelism modelled here (deepspeed/sequence/layer.py@03dc2b9)"),),
        },
        export="deepspeed"),
    Profile(
        "fsdp", "PyTorch FSDP (FSDP1, torch 2.x)",
        aliases=("pytorch-fsdp", "fsdp1"),
        defaults={
            "zero_stage": _d(3, f"{_FSDP}: FULL_SHARD = parameters, gradients and optimizer state sharded"),
            "overlap_param_gather": _d(True, f"{_FSDP}: BACKWARD_PRE prefetch"),
            "overlap_grad_reduce": _d(True, f"{_FSDP}: reduce-scatter issued per unit during backward"),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: fsdp"),),
            "zero_stage": (Limit((0, 2, 3), "FSDP ShardingStrategy: NO_SHARD (0), SHARD_GRAD_OP (2), FULL_SHARD / "
                                 "HYBRID_SHARD (3)"),),
            "pp": (Limit((1,), _FSDP_NO_PP),),
        },
        export="fsdp"),
    Profile(
        "llm-foundry", "MosaicML llm-foundry / Composer FSDP (torch 2, FlashAttention 2)",
        aliases=("mosaicml", "composer"),
        defaults={
            "zero_stage": _d(3, _FOUNDRY),
            "recompute": _d("full", _FOUNDRY),
            "attention": _d("flash", _FOUNDRY),
            "fused_loss": _d(True, _FOUNDRY_LOSS),
            "train_metric_passes": _d(2, _FOUNDRY_METRICS),
            "overlap_param_gather": _d(True, _FSDP),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: llm-foundry"),),
            "zero_stage": (Limit((0, 2, 3), "Composer FSDP: NO_SHARD, SHARD_GRAD_OP, FULL_SHARD/HYBRID_SHARD"),),
            "pp": (Limit((1,), "llm-foundry has no pipeline parallelism"),),
            "tp": (Limit((1,), "llm-foundry (2023-2024) trains with FSDP only, no tensor parallelism"),),
            "cp": (Limit((1,), "llm-foundry has no context parallelism"),),
        },
        export="fsdp"),
    Profile(
        "llm-foundry-torch1", "llm-foundry benchmark tables of torch 1.13 (FlashAttention v1)",
        aliases=("llm-foundry-2023",),
        defaults={
            "zero_stage": _d(3, _FOUNDRY),
            "recompute": _d("full", _FOUNDRY),
            "attention": _d("flash1", _FOUNDRY),
            "fused_loss": _d(True, _FOUNDRY_LOSS),
            "train_metric_passes": _d(2, _FOUNDRY_METRICS),
            "overlap_param_gather": _d(True, _FSDP),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: llm-foundry-torch1"),),
            "zero_stage": (Limit((0, 2, 3), "Composer FSDP: NO_SHARD, SHARD_GRAD_OP, FULL_SHARD/HYBRID_SHARD"),),
            "pp": (Limit((1,), "llm-foundry has no pipeline parallelism"),),
            "tp": (Limit((1,), "llm-foundry (2023) trains with FSDP only, no tensor parallelism"),),
            "cp": (Limit((1,), "llm-foundry has no context parallelism"),),
        },
        export="fsdp"),
    Profile(
        "torchtitan", "torchtitan (FSDP2, 2024)",
        aliases=("titan",),
        defaults={
            "zero_stage": _d(3, f"{_TITAN_FSDP}; {_TITAN} --training.data_parallel_shard_degree -1 (FSDP2 over the "
                                "remaining ranks)", pp_gt1=2),
            "recompute": _d("full", f"{_TITAN} --activation_checkpoint.mode 'selective', selective_ac_option '2': "
                                    "layer SAC, every 2nd block wrapped in full checkpointing (torchtitan/parallelisms/"
                                    "parallelize_llama.py@0011fb9)"),
            "recompute_fraction": _d(1.0, f"{_TITAN} selective_ac_option '2': every 2nd layer (1/2) when the "
                                          "recompute mode is torchtitan's default", recompute_defaulted=0.5),
            "sp": _d(False, "pytorch/torchtitan torchtitan/parallelisms/parallelize_llama.py@0011fb9: TP plan uses "
                            "SequenceParallel for norms whenever tensor_parallel_degree > 1", tp_gt1=True),
            "overlap_tp_comm": _d(False, f"{_TITAN} --experimental.enable_async_tensor_parallel default False"),
            "grad_reduce_fp32": _d(True, f"{_TITAN} --training.mixed_precision_reduce default 'float32' (its only "
                                         "choice): FSDP2 MixedPrecisionPolicy(reduce_dtype=float32)"),
            "fp8_param_gather": _d(False, f"{_TITAN} --float8.enable_fsdp_float8_all_gather store_true (off)"),
            "fsdp_root_unsharded": _d(True, "pytorch/torchtitan torchtitan/parallelisms/parallelize_llama.py@0011fb9: "
                                            "fully_shard on every block, then on the model (the root: embeddings, "
                                            "norm, output), which FSDP2 never reshards after forward (pytorch/pytorch "
                                            "torch/distributed/_composable/fsdp/_fsdp_state.py@005da46 _lazy_init)"),
            "overlap_param_gather": _d(True, "pytorch/pytorch torch/distributed/_composable/fsdp/"
                                            "fully_shard.py@v2.4.0: FSDP2 prefetches the next unit's all-gather"),
            "attention": _d("flash", "pytorch/torchtitan torchtitan/models/llama/model.py@0011fb9: "
                                     "F.scaled_dot_product_attention "
                                     "(FlashAttention-2 backend)"),
            "dropout": _d(False, "pytorch/torchtitan torchtitan/models/llama/model.py@0011fb9: no dropout layers"),
            "fused_elementwise": _d(False, _TITAN_EAGER),
            "fused_norm": _d(False, _TITAN_NORM),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: torchtitan"),),
            "zero_stage": (Limit((0, 2, 3), "FSDP2 fully_shard (3), reshard_after_forward=False (2) or DDP (0)"),),
            "schedule": (Limit(("1f1b", "gpipe", "interleaved"), _TITAN_PP),),
        },
        microbatches="stages",
        microbatches_source=f"{_TITAN} --experimental.pipeline_parallel_microbatches default None: 'the number of "
                            "pipeline stages'",
        export="torchtitan"),
    Profile(
        "maxtext", "MaxText (JAX/XLA)",
        aliases=("jax",),
        defaults={
            "zero_stage": _d(3, f"{_MAXTEXT}: ici_fsdp_parallelism -1 (FSDP over the remaining ICI devices)"),
            "recompute": _d("full", f"{_MAXTEXT}: remat_policy 'full'"),
            "dropout": _d(False, f"{_MAXTEXT}: dropout_rate 0"),
            "fused_elementwise": _d(True, "AI-Hypercomputer/maxtext MaxText/train.py: p_train_step = jax.jit("
                                          "functional_train, ...); under jit XLA fuses elementwise ops into their "
                                          "neighbours"),
            "attention": _d("flash", f"{_MAXTEXT}: attention 'autoselected' (cudnn flash on GPU)"),
            "overlap_param_gather": _d(True, "AI-Hypercomputer/maxtext gpu_multi_process_run.sh@315ebb5: XLA "
                                             "latency-hiding scheduler overlaps FSDP all-gathers ("
                                             "XLA_FLAGS --xla_gpu_enable_latency_hiding_scheduler=true)"),
        },
        limits={
            "expert_tp": (Limit((0,), f"{_NO_FOLDING}: maxtext"),),
            "zero_stage": (Limit((0, 3), "MaxText shards with FSDP (3) or replicates (data parallelism, 0)"),),
            "schedule": (Limit(("gpipe", "interleaved"), "MaxText pipeline: circular GPipe-style schedule "
                               "(MaxText/layers/pipeline.py)"),),
        },
        export=""),
]}

_ALIASES = {a: p.name for p in PROFILES.values() for a in (p.name, *p.aliases)}
FRAMEWORK_NAMES = tuple(PROFILES)
FRAMEWORK_CHOICES = tuple(_ALIASES)
# Plan fields whose defaults a profile may set (plus "dropout", a model setting).
PROFILE_FIELDS = ("zero_stage", "sp", "recompute", "recompute_fraction", "fused_loss", "fused_elementwise", "fused_norm",
                  "train_metric_passes",
                  "grad_reduce_fp32", "fp8_param_gather", "fsdp_root_unsharded",
                  "zero3_max_live_params", "zero_bucket_params", "schedule", "attention", "dtype", "overlap_grad_reduce",
                  "overlap_param_gather", "overlap_tp_comm", "overlap_ep_comm", "dropout")


def get_profile(name: str | None) -> Profile | None:
    """The profile called ``name`` (or one of its aliases); None for None/'' ; ValueError naming the choices."""
    if not name:
        return None
    key = str(name).lower()
    if key not in _ALIASES:
        raise ValueError(f"framework: {name!r} unknown; choose one of {', '.join(FRAMEWORK_NAMES)}")
    return PROFILES[_ALIASES[key]]


def _norm(value):
    """A field value as profiles spell it (enums by their lower-case name, zero stage as int)."""
    name = getattr(value, "name", None)
    if name is not None and type(value).__name__ == "ZeroStage":
        return int(value)
    if name is not None and type(value).__name__ in ("Recompute",):
        return name.lower()
    if name is not None and type(value).__name__ == "Schedule":
        from models.plan import SCHEDULE_IDS
        return SCHEDULE_IDS[value]
    return value


def apply_defaults(fields: dict, framework: str | None, generic: dict) -> tuple[dict, list[str]]:
    """``fields`` with the profile's default for every field that is missing, None or equal to the
    generic default in ``generic`` (the CLI cannot tell an unset flag from one given at its default);
    also the list of "field=value (source)" applied."""
    prof = get_profile(framework)
    if prof is None:
        return dict(fields), []
    out, used, defaulted = dict(fields), [], set(fields.get("_defaulted", ()))
    for name, d in prof.defaults.items():
        if name not in generic and name not in out:
            continue
        cur = out.get(name)
        if cur is None or _norm(cur) == _norm(generic.get(name)):
            value = d.resolve({**out, "_defaulted": defaulted})   # "_defaulted": what the profile chose
            if _norm(cur) != value:
                used.append(f"{name}={value} ({prof.name})")
                defaulted.add(name)
            out[name] = value
    out.pop("_defaulted", None)
    return out, used


def framework_errors(fields: dict, framework: str | None) -> list[str]:
    """Why a plan (dict of fields, or a Plan) cannot run under ``framework``: 'field: reason' lines."""
    prof = get_profile(framework)
    if prof is None:
        return []
    if not isinstance(fields, dict):
        fields = {k: getattr(fields, k) for k in fields.__dataclass_fields__}
    f = {k: _norm(v) for k, v in fields.items()}
    errs = []
    for name, limits in prof.limits.items():
        if name not in f:
            continue
        for lim in limits:
            if CONDITIONS[lim.when](f) and f[name] not in lim.allowed:
                cond = "" if lim.when == "always" else f" with {lim.when}"
                errs.append(f"{name}: {prof.name} cannot run {name}={f[name]}{cond} ({lim.reason}); "
                            f"allowed: {', '.join(map(str, lim.allowed))}")
    return errs


def allowed_values(framework: str | None, name: str, fields: dict | None = None) -> tuple | None:
    """The values of ``name`` a framework can run (under the conditions ``fields`` meet; unconditional
    limits only when ``fields`` is None); None when the framework does not restrict it."""
    prof = get_profile(framework)
    if prof is None or name not in prof.limits:
        return None
    lims = [lim for lim in prof.limits[name] if (lim.when == "always" if fields is None else CONDITIONS[lim.when](fields))]
    if not lims:
        return None
    out = set(lims[0].allowed)
    for lim in lims[1:]:
        out &= set(lim.allowed)
    return tuple(v for v in lims[0].allowed if v in out)


def sources(framework: str) -> dict[str, str]:
    """field -> source of each default of a profile (what the tests and `clustersim export` cite)."""
    return {k: d.source for k, d in get_profile(framework).defaults.items()}


__all__ = ["Profile", "Default", "Limit", "PROFILES", "FRAMEWORK_NAMES", "FRAMEWORK_CHOICES", "get_profile",
           "apply_defaults", "framework_errors", "allowed_values", "sources"]
