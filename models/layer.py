"""Per-layer compute costs of one micro-batch: forward, backward and recompute time of a
transformer layer and of the output layer, from the kernel model (GEMMs at the measured
matmul rate with wave quantisation, FlashAttention at its fraction of peak, memory-bound ops
at the HBM rate). Pure functions over numpy arrays of plan fields (``a``).
"""

from __future__ import annotations

import functools

import numpy as np

from models import finetune
from models import flops as fl
from models import kernel_tables as kt
from models import numeric as num
from models.hardware import Cluster
from models.parallel import expert, zero
from models.plan import ATTENTION_KERNELS as ATTENTION_KERNEL_CHOICES
from models.profile import kernel_model
from models.transformer import Transformer

# Attention throughput comes from published kernel measurements (models.kernel_tables: by kernel, GPU
# architecture, head dim, block length, causal, forward/backward). The flat values below are the
# A100 FlashAttention-2 anchors (Dao 2023, Sec. 4.1: forward up to 73% of peak; backward 0.55) and
# FlashAttention v1's 40% / 30% (Dao 2023, Sec. 1), kept for callers that pass flat efficiencies.
ATTN_FWD_EFFICIENCY = kt.FA2_A100_BEST_FRACTION["fwd"]
ATTN_BWD_EFFICIENCY = kt.FA2_A100_BEST_FRACTION["bwd"]
FLASH1_FWD_EFFICIENCY = kt.FLASH1_FRACTION["fwd"]
FLASH1_BWD_EFFICIENCY = kt.FLASH1_FRACTION["bwd"]
# The plan's attention kernels, in models.plan.ATTENTION_KERNELS order (the attn_kernel code).
ATTENTION_KERNELS = ATTENTION_KERNEL_CHOICES
# Flash backward runs 5 matmuls against the forward's 2 (it recomputes QK^T): 2.5x the FLOPs.
ATTN_BWD_FLOP_RATIO = 2.5
# Cross-entropy on fp32-upcast logits, pass by pass (PyTorch F.cross_entropy / Megatron's
# vocab-parallel loss both upcast): upcast r2+w4, log-softmax r4+r4+w4, backward r4+r4+w4
# plus the gradient fill w4, downcast r4+w2 = 40 bytes per logit element.
LOSS_BYTES_PER_LOGIT = 40
# A fused cross-entropy kernel on the 16-bit logits (flash-attn losses/cross_entropy.py, the xentropy CUDA
# kernel, from apex's softmax_xentropy; llm-foundry's default loss): forward reads the logits twice (a max
# pass and a sum-of-exp pass, 2 + 2 B), backward reads them again and writes
# their gradient (2 + 2 B), no fp32 copy: 8 bytes per logit element.
FUSED_LOSS_BYTES_PER_LOGIT = 8
# A training-metric cross-entropy on the cached logits after backward (Composer's LanguageCrossEntropy:
# torch.nn.CrossEntropyLoss(reduction='sum') under the autocast context, which runs log_softmax in fp32),
# forward only: upcast r2+w4, log-softmax r4+r4+w4 = 18 bytes per logit element per metric.
METRIC_LOSS_BYTES_PER_LOGIT = 18
# Elementwise traffic that depends on the implementation (Plan.fused_elementwise), bytes per element at 2 bytes,
# forward; the backward moves about twice (as the other elementwise ops here).
# Rotary embedding on each q and k element: fused (Megatron-Core fused_apply_rotary_pos_emb, TE) r+w = 4;
# eager 20: torchtitan model.py@0011fb9 apply_rotary_emb (xq.float() r2 w4, complex product r4 w4, type_as r4 w2)
# and Hugging Face's q*cos + rotate_half(q)*sin (4 + neg/cat 6 + 4 + add 6) both move 20.
ROPE_BYTES = {"fused": 4, "eager": 20}
# Gated activation per FFN element: fused bias-SwiGLU reads gate and up and writes one (2r+w = 6); eager
# F.silu(w1(x)) * w3(x) (torchtitan FeedForward, HF LlamaMLP) runs the SiLU (r+w) and the product (2r+w): 10.
GATED_ACT_BYTES = {"fused": 6, "eager": 10}
# RMSNorm per element, forward: fused (TE/apex/Triton: r+w) 4; eager 36 (torchtitan norms.py@3faaa1a0d RMSNorm and
# Hugging Face LlamaRMSNorm alike: x.float() r2 w4, pow r4 w4, mean r4, x * rsqrt r4 w4, type_as r4 w2,
# * weight r2 w2), in 8 kernels instead of 1. LayerNorm is PyTorch's one native kernel (native_layer_norm) either way.
NORM_BYTES = {"fused": 4, "eager": 36}
EAGER_NORM_KERNELS = 7
# Eager attention around SDPA (torchtitan model.py@0011fb9, HF sdpa path): GQA keys and values expanded to all
# heads (repeat_kv: read kv, write q width, each of k and v) and the output made contiguous (transpose: r+w
# of q width). Fused stacks (TE/cuDNN attention, flash-attn's GQA) do neither.
# Eager kernels each adds: rope 6 (upcast, product, downcast on q and k), SiLU 1, repeat_kv 2, transpose 1.
EAGER_KERNELS = {"rope": 6, "gated": 1, "gqa": 2, "layout": 1}
# The Adam step's bytes per parameter and the gradient bucket are models.parallel.zero's.
OPTIMIZER_BYTES_PER_PARAM, DP_BUCKET_BYTES = zero.OPTIMIZER_BYTES_PER_PARAM, zero.DP_BUCKET_BYTES
# One of the output layer's three GEMMs (and about a third of the loss's passes) runs forward.
LOGITS_FWD_SHARE = 1 / 3


def eager_rmsnorm(model: Transformer, a):
    """Whether the layer's RMSNorms run eagerly (arrays ok): an RMSNorm model whose plan neither fuses its
    elementwise ops (fused_elementwise: torch.compile, Megatron, XLA) nor runs a fused norm kernel (fused_norm)."""
    if model.norm != "rmsnorm":
        return False
    return num.logical_not(num.as_bool(a.get("fused_elementwise", False)) | num.as_bool(a.get("fused_norm", False)))


def kernels(cluster: Cluster, dtype: str):
    """The kernel-time model (models.profile.KernelModel) both the estimate and the simulator cost with:
    attention from the published kernel tables unless the cluster carries a measured profile. Built once
    per (cluster, dtype): both are frozen, and an estimate asks for it on every call."""
    by_dtype = _kernels_by_dtype(cluster)   # by identity first: hashing a cluster spec costs ~1 us
    km = by_dtype.get(dtype)
    if km is None:
        try:
            km = by_dtype[dtype] = _cached_kernels(cluster, dtype)
        except TypeError:   # a cluster with an unhashable part: built each time, as it may change
            return kernel_model(cluster, dtype)
    return km


@num.per_spec
def _kernels_by_dtype(cluster: Cluster) -> dict:
    return {}


@functools.lru_cache(maxsize=256)
def _cached_kernels(cluster: Cluster, dtype: str):
    return kernel_model(cluster, dtype)


def moe_permute_s(km, tokens, routed_per_token, hidden, local_experts, bytes_per_elem=2):
    """Seconds of one MoE layer's token permutation in one direction (forward; the backward moves the same rows
    back): Megatron-Core's all-to-all dispatcher, unfused (megatron/core/transformer/moe/moe_utils.py@core_r0.12.0,
    moe_permute_fusion off by default): permute() index_selects the R = tokens x routed rows (read + write R),
    sort_chunks_by_idxs() orders the received rows by local expert and back when a rank holds more than one
    (token_dispatcher.py: 2 x (read + write R)), unpermute() multiplies them by the router probabilities
    (read + write R), zero-fills the T output rows and scatter_adds into them (read R, read + write T):
    5R + 3T rows, + 4R with local experts > 1, of ``hidden`` elements, in six kernels.

    >>> from models.hardware import make_cluster
    >>> km = kernels(make_cluster("h100-sxm-80gb", 1), "bf16")
    >>> t = moe_permute_s(km, 4096, 4, 2880, 16)
    >>> round(2 * 2880 * (5 * 16384 + 3 * 4096 + 4 * 16384) / (t - 6 * 3e-6) / 1e12, 3)  # = 0.88 x 3.35 TB/s
    2.948
    """
    R = tokens * routed_per_token
    rows = 5 * R + 3 * tokens + num.where(num.arr(local_experts) > 1, 4 * R, 0.0)
    return km.memory_bound(bytes_per_elem * hidden * rows, 6)


def flash_attention_s(km, kernel: str, head_dim, causal_flops, block_len, cp):
    """(forward, backward) seconds of FlashAttention-style attention doing ``causal_flops`` forward FLOPs
    (the causal half of the s x s square: the convention of models.flops) on blocks of ``block_len``
    tokens (s / cp). Under context parallelism a rank's share splits into its causal diagonal block
    (1/cp of the work) and full (non-causal) blocks (the rest), each at its measured rate (Liu et al.
    2023; Megatron-Core's load-balanced ring). Backward: 2.5x the forward FLOPs (5 matmuls against 2).
    """
    peak = km.attn_peak_flops_per_s or km.peak_flops_per_s
    diag = 1.0 / num.as_float(cp)
    out = []
    for pss, ratio in (("fwd", 1.0), ("bwd", ATTN_BWD_FLOP_RATIO)):
        e_c = km.attention_efficiency(kernel, head_dim, block_len, True, pss)
        e_n = km.attention_efficiency(kernel, head_dim, block_len, False, pss)
        out.append(ratio * causal_flops * (diag / e_c + (1 - diag) / e_n) / peak)
    return tuple(out)


def layer_times(model: Transformer, km, a, moe: bool | None = None):
    """(forward, backward, recompute, forward GEMMs, attention forward) seconds of one layer for one
    micro-batch on one rank, for plan arrays ``a`` (plan_arrays' keys). ``moe``: a dense (False) or
    MoE (True) layer; None averages over the model's layers."""
    if moe is None:
        times = layer_times(model, km, a, moe=False)
        if not model.is_moe:
            return times
        f = model.num_moe_layers / model.num_layers
        return tuple((1 - f) * x + f * y for x, y in zip(times, layer_times(model, km, a, moe=True)))
    tp, cp, mb, s = a["tp"], a["cp"], a["micro_batch_size"], model.seq_len
    T = mb * s / cp
    h, hq, hkv = model.hidden, model.num_heads * model.dh, model.num_kv_heads * model.dh
    gemm = km.gemm
    if model.is_mla:
        # MLA (DeepSeek-V2 eqs. 9-18): latent down-projections, then per-head up-projections, every one split over
        # TP (Megatron-Core gpt_layer_specs.py@core_r0.12.0: linear_q/kv_down_proj are TEColumnParallelLinear,
        # their outputs gathered before the latent norm); the FLOPs are models.flops.mla_attn_proj_flops'
        a_h, qo, ql, kvl = model.num_heads, model.num_heads * model.qk_head_dim, model.q_lora_rank, model.kv_lora_rank
        q_proj = gemm(T, ql / tp, h) + gemm(T, qo / tp, ql) if ql else gemm(T, qo / tp, h)
        proj = (q_proj + gemm(T, (kvl + model.qk_rope_head_dim) / tp, h)
                + gemm(T, a_h * (model.qk_nope_head_dim + model.v_head_dim) / tp, kvl) + gemm(T, h, a_h * model.v_dim / tp))
    else:
        proj = gemm(T, (hq + 2 * hkv) / tp, h) + gemm(T, h, hq / tp)
    if moe:
        # routed experts in the expert layout (models.parallel.expert): an expert_tp group routes T etp/tp tokens
        etp = expert.expert_tp(tp, a.get("expert_tp", 0))
        local_experts = model.num_experts / a["ep"]
        Te = T * expert.tokens_share(tp, etp) * model.top_k * model.capacity_factor * a["ep"] / model.num_experts
        fe, k = model.expert_ffn_hidden, model.ffn_matrices - 1
        ffn = (local_experts * (gemm(Te, k * fe / etp, h) + gemm(Te, h, fe / etp)) + gemm(T, model.num_experts, h)
               + model.num_shared_experts * (gemm(T, k * fe / tp, h) + gemm(T, h, fe / tp)))
        act_elems = (model.top_k * model.capacity_factor + model.num_shared_experts) * fe / tp
        # token permutation around the experts (memory-bound, 16-bit rows of h): moe_permute_s
        perm = moe_permute_s(km, T * expert.tokens_share(tp, etp), model.top_k * model.capacity_factor, h,
                             local_experts)
    else:
        k, f = model.ffn_matrices - 1, model.ffn_hidden
        ffn = gemm(T, k * f / tp, h) + gemm(T, h, f / tp)
        act_elems = f / tp
        perm = 0.0
    gemms_fwd = proj + ffn
    # attention core: flash runs the causal half (models.flops' convention); unfused the full square
    # (sliding-window layers averaged in; a cp rank's load-balanced share is 1/cp)
    causal_flops = fl.attn_core_flops_all_layers(model, mb, s) / model.num_layers / (tp * cp)
    code = num.arr(a["attn_kernel"]) if "attn_kernel" in a else num.where(
        a["flash1"], ATTENTION_KERNELS.index("flash1"),
        num.where(a["flash"], ATTENTION_KERNELS.index("flash"), ATTENTION_KERNELS.index("unfused")))
    flash_fwd = flash_bwd = 0.0
    for c in ((code,) if num.is_num(code) else np.unique(code)):   # one kernel per run in practice: one lookup
        if ATTENTION_KERNELS[int(c)] == "unfused":
            continue
        f, b = flash_attention_s(km, ATTENTION_KERNELS[int(c)], model.dh, causal_flops, s / cp, cp)
        flash_fwd, flash_bwd = num.where(code == c, f, flash_fwd), num.where(code == c, b, flash_bwd)
    v1 = a["flash1"]
    heads_rows = mb * model.num_heads / tp * (s / cp)
    mask = 1.0 if model.dropout else 0.0
    score_bytes = 2.0 * mb * model.num_heads / tp * (s / cp) * s
    unfused_fwd = (gemm(heads_rows, s, model.dh) + gemm(heads_rows, model.dh, s)
                   + km.memory_bound(score_bytes * (3 + 2.5 * mask), 2))
    unfused_bwd = 2 * unfused_fwd
    flash = a["flash"]
    attn_fwd = num.where(flash, flash_fwd, unfused_fwd)
    attn_bwd = num.where(flash, flash_bwd, unfused_bwd)
    # memory-bound ops per token: 2 norms (r+w h), 2 residual adds (2r+w h), dropout (r+w h + 1B mask)
    # at 2 bytes; activation function r+w (GeLU) or, gated, GATED_ACT_BYTES of the FFN width; the rotary
    # embedding on q and k (ROPE_BYTES); eager SDPA's GQA expansion and output copy (see EAGER_KERNELS)
    fused = a.get("fused_elementwise", False)
    eager_norm = eager_rmsnorm(model, a)
    norm_extra = num.where(eager_norm, model.norms_per_layer * (NORM_BYTES["eager"] - NORM_BYTES["fused"]), 0)
    repl_bytes = (2 * 2 * 2 + norm_extra + 2 * 3 * 2 + mask * 2 * 5) * h / num.where(a["sp"], tp, 1)
    act_bytes = (4 if model.activation == "gelu" else num.where(fused, GATED_ACT_BYTES["fused"],
                                                                GATED_ACT_BYTES["eager"])) * act_elems
    rope_bytes = num.where(fused, ROPE_BYTES["fused"], ROPE_BYTES["eager"]) * model.rope_dims / tp
    # (FlashAttention v1's packed interface has its own copies: pack_fwd / pack_bwd below)
    sdpa_copies = num.logical_not(num.as_bool(fused) | num.as_bool(a["flash1"]))
    gqa, gated, rope = hkv < hq, model.activation != "gelu", model.rope_dims > 0
    layout_bytes = num.where(sdpa_copies, (4 * (hq + hkv) * gqa + 4 * hq) / tp, 0.0)
    eager_kernels = (EAGER_KERNELS["rope"] * rope + EAGER_KERNELS["gated"] * gated
                     + num.where(sdpa_copies, EAGER_KERNELS["gqa"] * gqa + EAGER_KERNELS["layout"], 0))
    eager_kernels = eager_kernels + num.where(eager_norm, model.norms_per_layer * EAGER_NORM_KERNELS, 0)
    elem_fwd = km.memory_bound(T * (repl_bytes + act_bytes + rope_bytes + layout_bytes),
                               8 + num.where(fused, 0, eager_kernels))
    # FlashAttention v1 takes only unpadded (tokens, heads, dim) inputs: llm-foundry's flash_attn_fn
    # (and HF's v1 path) always pack q, k, v with flash_attn.bert_padding.unpad_input and scatter the
    # output back with pad_input. From bert_padding.py, at 2 bytes: forward gathers q, k, v (r+w each)
    # and zero-fills then index-puts the output (w, r+w); backward zero-fills and scatters the q, k, v
    # gradients (w, r+w each) and gathers the output gradient (r+w).
    pack_fwd = pack_bwd = 0.0
    if num.any_nonzero(v1):  # skipped on the planner's grids, which never search v1
        qkv_w, q_w = (hq + 2 * hkv) / tp, hq / tp
        pack_fwd = num.where(v1, km.memory_bound(T * (4 * qkv_w + 6 * q_w), 4), 0.0)
        pack_bwd = num.where(v1, km.memory_bound(T * (6 * qkv_w + 4 * q_w), 4), 0.0)
    # fine-tuning (models.finetune): adapters, DoRA's norm, QLoRA's dequantisation; a frozen base runs
    # no weight-gradient GEMMs (dw = 0: backward ~1x forward)
    ft_fwd, ft_bwd, dw = (finetune.layer_extra_s(model, km, a, T, bool(moe)) if num.any_nonzero(a.get("finetune", 0))
                          else (0.0, 0.0, 1.0))   # full training: no adapter time, every weight gradient
    fwd = gemms_fwd + attn_fwd + elem_fwd + pack_fwd + ft_fwd + perm
    bwd = (1 + dw) * gemms_fwd + attn_bwd + 2 * elem_fwd + pack_bwd + ft_bwd + perm
    rc = a["recompute"]
    recompute = num.where(rc == 2, fwd, num.where(rc == 1, num.where(flash, 0.0, unfused_fwd), 0.0))
    # recompute on a share of the layers only (Megatron's block method, torchtitan's every-Nth-layer AC):
    # the per-layer average
    recompute = recompute * a.get("recompute_fraction", 1.0)
    return fwd, bwd, recompute, gemms_fwd, attn_fwd


_layer_times = layer_times   # the old private name, still imported by tests/test_flash1.py and test_sustained_clock.py


def logits_time_s(model: Transformer, km, tokens, tp, fused_loss=False):
    """Output layer + loss of one micro-batch on the last stage, forward + backward, seconds;
    ``fused_loss``: the cross-entropy is one fused kernel on the 16-bit logits (FUSED_LOSS_BYTES_PER_LOGIT)."""
    per_logit = num.where(fused_loss, FUSED_LOSS_BYTES_PER_LOGIT, LOSS_BYTES_PER_LOGIT)
    return 3 * km.gemm(tokens, model.vocab / tp, model.hidden) + km.memory_bound(
        tokens * model.vocab / tp * per_logit, 6)


def metric_loss_s(km, logits, metric_passes):
    """Seconds of ``metric_passes`` training-metric cross-entropies run after backward over ``logits`` logit
    elements (METRIC_LOSS_BYTES_PER_LOGIT each, two kernels: the upcast and the log-softmax); 0 for none."""
    if num.is_num(metric_passes) and not metric_passes:
        return 0.0
    return num.where(num.arr(metric_passes) > 0, km.memory_bound(
        metric_passes * logits * METRIC_LOSS_BYTES_PER_LOGIT, 2 * metric_passes), 0.0)


def logits_split_s(model: Transformer, km, tokens, tp, fused_loss=False, metric_passes=0):
    """(forward, backward) seconds of the output layer + loss of one micro-batch (LOGITS_FWD_SHARE); the
    training-metric passes run after the backward and join it."""
    t = logits_time_s(model, km, tokens, tp, fused_loss)
    return LOGITS_FWD_SHARE * t, (1 - LOGITS_FWD_SHARE) * t + metric_loss_s(km, tokens * model.vocab / tp,
                                                                          metric_passes)
