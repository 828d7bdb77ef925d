"""Memory per GPU: model states under ZeRO, activations (Korthikanti et al. 2022), buffers.

Model states (Rajbhandari et al. 2020, ZeRO, Sec. 3.1 / Fig. 1): mixed-precision Adam keeps
2 bytes of fp16/bf16 weights, 2 of gradients and K = 12 of optimizer state (fp32 master
weights, momentum, variance) per parameter. Stage 1 shards the optimizer states over the
data-parallel ranks, stage 2 also the gradients, stage 3 also the weights.

Activations per transformer layer (Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models", Sec. 4, eqs. 1-5 and Table 2), bytes, 16-bit:
  no parallelism:           s b h (34 + 5 a s / h)
  tensor parallel t:        s b h (10 + 24/t + 5 a s / (h t))
  tensor + sequence par.:   s b h / t (34 + 5 a s / h)
  + selective recompute:    s b h / t * 34
  full recompute:           2 s b h (only the layer input; / t with SP)
Generalised here to GQA (K, V of kv_heads), any FFN width f, SwiGLU (two FFN inputs to the
activation), no-dropout models (no 1-byte masks), and FlashAttention (no s x s scores:
Dao et al. 2022 keep only the softmax statistics, as selective recompute does).
"""

from __future__ import annotations

from models import numeric as num
from models.parallel import zero
from models.parallel.zero import BYTES_GRAD, BYTES_OPTIMIZER, BYTES_WEIGHT, model_state_bytes  # noqa: F401
from models.units import GIB

# Model states (ZeRO sharding) and the ZeRO-3 gather buffer are models.parallel.zero's; the
# names above are re-exported for callers of the old location.

# Not modelled as tensors, stated here: CUDA context, cuBLAS/NCCL workspaces (~1 GiB on
# A100/H100, PyTorch CUDA-semantics notes) and caching-allocator fragmentation, taken as 5%
# of tensor bytes (PyTorch memory-management docs describe block rounding and splitting).
FRAMEWORK_OVERHEAD_BYTES = 1.0 * GIB
ALLOCATOR_FRAGMENTATION = 0.05


def korthikanti_layer_activation_bytes(s, b, h, a, t=1, sp=False, recompute="none"):
    """Korthikanti et al. 2022 Table 2 closed forms, bytes per layer (GPT, 4h FFN, dropout, MHA).

    >>> korthikanti_layer_activation_bytes(2048, 1, 12288, 96) / (2048 * 12288)
    114.0
    """
    if recompute == "full":
        return 2 * s * b * h / (t if sp else 1)
    attn = 0 if recompute == "selective" else 5 * a * s / h
    if sp:
        return s * b * h / t * (34 + attn)
    return s * b * h * (10 + 24 / t + attn / t)


def layer_activation_bytes(model, micro_batch, seq_len, tp, sp, recompute, flash, cp=1, moe=False):
    """Activation bytes one layer keeps for backward, per micro-batch, on one rank (arrays ok).

    Terms follow Korthikanti Sec. 4.1 (attention 11sbh + 5as^2b, MLP 19sbh, norms 4sbh for
    MHA, 4h GeLU, dropout); here K/V scale with kv_heads/heads, the MLP with f, and dropout
    masks (1 byte) appear only when the model has dropout. ``moe``: the FFN terms use the
    routed tokens (top_k copies of each) and the expert width.
    """
    s = seq_len / cp
    sbh = s * micro_batch * model.hidden
    kv_frac = model.num_kv_heads / model.num_heads
    q_frac = model.num_heads * model.dh / model.hidden
    mask = 1.0 if model.dropout else 0.0
    # replicated across TP ranks unless SP: 2 norm inputs (2 x 2sbh), QKV input and fc1 input
    # are norm outputs kept once each (2sbh x 2), the two dropout masks after attention/MLP.
    replicated = 4 * sbh + 2 * sbh + 2 * sbh + 2 * mask * sbh
    # split by TP: Q, K (QK^T inputs), V, attention-output projection input.
    attn_split = sbh * (2 * q_frac + 2 * q_frac * kv_frac + 2 * q_frac * kv_frac + 2 * q_frac)
    if moe:
        tokens_per_token = model.top_k + model.num_shared_experts
        f = model.expert_ffn_hidden
    else:
        tokens_per_token, f = 1, model.ffn_hidden
    ffn_per_h = f / model.hidden
    if model.activation == "swiglu":   # gate and up outputs (2 x 2sbf) + product (2sbf)
        mlp_split = sbh * ffn_per_h * 6 * tokens_per_token
    else:                              # GeLU input (2sbf) + fc2 input (2sbf)
        mlp_split = sbh * ffn_per_h * 4 * tokens_per_token
    # softmax out (+ dropout mask, out)
    scores = num.where(flash, 0.0, (2.0 + 3.0 * mask) * model.num_heads * s * s * micro_batch)
    scores = num.where(recompute >= 1, 0.0, scores)
    split = attn_split + mlp_split + scores
    full = replicated / num.where(sp, tp, 1) + split / tp
    return num.where(recompute == 2, 2 * sbh / num.where(sp, tp, 1), full)


def output_layer_activation_bytes(model, micro_batch, seq_len, tp, sp, cp=1, fused_loss=False):
    """Final norm input, output-projection input and fp32 logits for the loss (Korthikanti Sec. 4.3),
    plus the 16-bit logits that live beside their fp32 copy during the loss (measured with the
    live-tensor tracker of ``clustersim validate``). ``fused_loss``: a fused cross-entropy kernel keeps
    only the 16-bit logits (flash-attn losses/cross_entropy.py saves the logits and a per-row lse)."""
    s = seq_len / cp
    sbh = s * micro_batch * model.hidden
    per_logit = num.where(fused_loss, 2, 4 + 2)
    return 4 * sbh / num.where(sp, tp, 1) + per_logit * s * micro_batch * model.vocab / tp


def metric_loss_transient_bytes(model, micro_batch, seq_len, tp, cp=1):
    """Activation memory while a training-metric cross-entropy runs after backward (Composer's train metrics
    on the cached 16-bit logits): the logits (2 B), their fp32 upcast under autocast (4 B) and the fp32
    log-softmax output (4 B) per logit element; the layers' activations are already freed.

    >>> from models.transformer import Transformer
    >>> m = Transformer("t", 2, 64, 4, 4, 256, vocab=1000, seq_len=8)
    >>> float(metric_loss_transient_bytes(m, 2, 8, 1))
    160000.0
    """
    return (2 + 4 + 4) * (seq_len / cp) * micro_batch * model.vocab / tp


# Share of a layer's saved activations that only the weight gradient needs (the inputs of the
# four linear layers, 14 of Korthikanti et al.'s 34 sbh): ZB-H1's W frees them, B the rest.
W_ACTIVATION_FRACTION = 14 / 34


def activation_bytes_per_elem(dtype_bytes, dtype: str):
    """Bytes of one activation element: the dtype's, except under fp8 GEMMs, whose activations
    (and the TP/CP/PP/EP buffers that carry them) stay 16-bit (Transformer Engine keeps fp8 only
    inside the GEMMs; Micikevicius et al. 2022).

    >>> activation_bytes_per_elem(1, "fp8"), activation_bytes_per_elem(2, "bf16")
    (2, 2)
    """
    return 2 if dtype == "fp8" else dtype_bytes


def recompute_share_activation_bytes(model, micro_batch, seq_len, tp, sp, recompute, flash, cp=1, fraction=1.0):
    """mean_layer_activation_bytes when ``recompute`` applies to a ``fraction`` of the layers only
    (Megatron's block method, torchtitan's every-Nth-layer checkpointing): the others keep everything."""
    act = mean_layer_activation_bytes(model, micro_batch, seq_len, tp, sp, recompute, flash, cp)
    if not num.any_nonzero(num.arr(fraction) < 1.0):
        return act
    return fraction * act + (1 - fraction) * mean_layer_activation_bytes(model, micro_batch, seq_len, tp, sp, 0,
                                                                         flash, cp)


def mean_layer_activation_bytes(model, micro_batch, seq_len, tp, sp, recompute, flash, cp=1):
    """layer_activation_bytes averaged over the model's dense and MoE layers, bytes (arrays ok)."""
    args = (model, micro_batch, seq_len, tp, sp, recompute, flash, cp)
    act = layer_activation_bytes(*args)
    if not model.is_moe:
        return act
    moe_frac = model.num_moe_layers / model.num_layers
    return (1 - moe_frac) * act + moe_frac * layer_activation_bytes(*args, moe=True)


def stage_params(model, tp, pp, ep, layers, first, last, etp=None):
    """(non-expert, expert) parameters one rank of a pipeline stage (or chunk) with ``layers``
    layers holds before ZeRO sharding; ``first`` / ``last``: it holds the embedding / output layer
    (arrays ok). Tied embeddings share one matrix when pp = 1. ``etp``: the expert layers' tensor-parallel
    degree (models.parallel.expert.expert_tp; None: tp).

    >>> from models.transformer import get_model
    >>> m = get_model("llama3-8b")
    >>> round(float(sum(stage_params(m, 1, 1, 1, m.num_layers, True, True))) / 1e9, 2)
    8.03
    """
    moe_frac, dense_layer, routed, moe_rest, vocab_params, embedding = _layer_params(model)
    nonexp = layers * dense_layer / tp
    exp = 0.0   # a dense model: no MoE layer terms
    if moe_frac:
        nonexp = nonexp + layers * moe_frac * moe_rest / tp
        exp = layers * moe_frac * routed / (ep * (tp if etp is None else etp))
    out = num.where(model.tied_embeddings & (num.arr(pp) == 1), 0, vocab_params) / tp
    nonexp = nonexp + num.where(first, embedding / tp, 0) + num.where(last, out, 0)
    return nonexp, exp


@num.per_spec
def _layer_params(model):
    """stage_params' per-model terms: MoE layer share, a layer's non-expert parameters (attention, norms,
    the dense share of the MLP), routed-expert and other MoE-layer parameters, vocab x hidden, embedding."""
    moe_frac = model.num_moe_layers / model.num_layers
    routed = model.num_experts * model.expert_params
    return (moe_frac, model.attn_params + (1 - moe_frac) * model.dense_mlp_params, routed,
            model.moe_mlp_params - routed, model.vocab * model.hidden, model.embedding_params)


def warmup_forwards(stage, pp, vpp, num_microbatches, schedule):
    """Forwards (chunk-forwards when interleaved) a stage runs before its first backward, as
    simulator.des.schedules orders them: GPipe all m; 1F1B and ZB-H1 p - s - 1 (Narayanan et al.
    2021 Sec. 2.2); interleaved 2 (p - s - 1) + (v - 1) p (Megatron-LM's interleaved schedule)."""
    m = num_microbatches
    one_f_one_b = lambda: num.minimum(pp - stage - 1, m)  # noqa: E731
    interleaved = lambda: num.minimum(2 * (pp - stage - 1) + (vpp - 1) * pp, m * vpp)  # noqa: E731
    if num.is_num(schedule):   # one schedule: only its own count
        return m if schedule == 0 else interleaved() if schedule == 2 else one_f_one_b()
    return num.where(schedule == 0, m, num.where(schedule == 2, interleaved(), one_f_one_b()))


def inflight_microbatches(stage, pp, vpp, num_microbatches, schedule):
    """Micro-batches' worth of layer activations stage ``stage`` (0-based) holds at its peak:
    the warm-up forwards plus the one of the steady state (chunks / v when interleaved).

    GPipe: all m (Huang et al. 2019). 1F1B: p - stage (Narayanan et al. 2021 Sec. 2.2).
    Interleaved: (2 (p-s-1) + (v-1) p + 1) / v; on the first stage p (1 + (p-1)/(p v)) (Korthikanti
    et al. 2022 Sec. 4.2.3). ZB-H1 (Qi et al. 2023): 1F1B's plus the W-only share of the s + 1
    micro-batches whose weight gradient stage s postpones (simulator.des.schedules.zb_h1).

    >>> float(inflight_microbatches(0, 4, 2, 8, 2))   # 4 (1 + 3/8)
    5.5
    >>> float(inflight_microbatches(3, 4, 1, 8, 3))   # 1 + 4 W shares of 14/34
    2.6470588235294117
    """
    m = num_microbatches
    warm = warmup_forwards(stage, pp, vpp, m, schedule)
    chunks = num.minimum(warm + 1, num.where(schedule == 2, m * vpp, m))
    deferred_w = lambda: num.maximum(num.minimum(m - warm - 1, stage + 1), 0) * W_ACTIVATION_FRACTION  # noqa: E731
    if num.is_num(schedule):   # one schedule: only its own count
        return chunks / vpp if schedule == 2 else chunks + (deferred_w() if schedule == 3 else 0.0)
    return num.where(schedule == 2, chunks / vpp, chunks + num.where(schedule == 3, deferred_w(), 0.0))


def output_layers_inflight(num_microbatches, schedule):
    """Micro-batches whose output-layer tensors (logits) the last stage holds at once: all m under
    GPipe, else 1 (every other schedule runs the last stage's backward right after its forward)."""
    return num.where(schedule == 0, num_microbatches, 1)


def stage_activation_bytes(layer_bytes, layers, inflight, out_bytes, out_inflight, transient_bytes, last, recompute):
    """Peak activation bytes of one rank of a stage: ``inflight`` micro-batches of ``layers`` layers
    of ``layer_bytes``, ``out_inflight`` of the output layer's ``out_bytes`` on the last stage, and
    under full recompute the recomputed layer's ``transient_bytes``, which replace the output
    layer's tensors of the micro-batch in backward (they are freed before the blocks' backward).

    >>> float(stage_activation_bytes(10.0, 2, 3, 5.0, 1, 8.0, True, 2))   # 60 + 5 + (8 - 5)
    68.0
    """
    out = num.where(last, out_bytes, 0.0)
    rc_extra = num.where(recompute == 2, num.maximum(0.0, transient_bytes - out), 0.0) \
        if num.any_nonzero(num.arr(recompute) == 2) else 0.0   # (no full recompute: none)
    return inflight * layers * layer_bytes + out_inflight * out + rc_extra


def allocated_bytes(tensor_bytes, fragmentation=True):
    """What the allocator holds for ``tensor_bytes`` of live tensors: plus the CUDA context and
    workspaces and the fragmentation share (the constants above); ``fragmentation`` False: ZeRO-R's
    memory defragmentation (contiguous buffers, Rajbhandari et al. 2020 Sec. 6.3) leaves none."""
    return tensor_bytes + FRAMEWORK_OVERHEAD_BYTES + num.where(fragmentation, ALLOCATOR_FRAGMENTATION, 0.0) * tensor_bytes


def zero3_gather_buffer_bytes(model, tp, prefetch, max_live_params=0.0, weight_bytes=zero.BYTES_WEIGHT,
                              output_layer=True):
    """Working weights (``weight_bytes`` each: 16-bit, or fp32 in fp32 training) of the gathered layer(s) a
    ZeRO-3/FSDP rank holds (models.parallel.zero.gather_buffer_bytes of one dense layer's weights over tp, or
    the output layer's with the next layer's prefetched, whichever is larger; FSDP's prefetch needs a separate
    CUDA stream, so none on CPU). ``max_live_params`` > 0: DeepSpeed gathers one sub-module at a time
    and prefetches only while fewer than stage3_max_live_parameters are resident (deepspeed/runtime/zero/
    partitioned_param_coordinator.py fetch_sub_module), so at most the largest module plus that many."""
    layer = (model.attn_params + model.dense_mlp_params) / tp
    whole = zero.gather_buffer_bytes(layer, prefetch, weight_bytes)
    # the output layer runs on its whole gathered weight (V x h / tp; the embedding's too when tied), with the
    # next layer's gather prefetched behind it: with a large vocabulary that, not two layers, is the most
    # gathered at once (Llama-3 8B: 525M + 218M parameters against 2 x 218M)
    # (output_layer False: the output layer's weight is resident anyway, fsdp_root_bytes)
    out_layer = model.vocab * model.hidden / tp
    if output_layer:
        whole = num.maximum(whole, weight_bytes * (out_layer + num.as_float(prefetch) * layer))
    if not num.any_nonzero(max_live_params):
        return whole
    h, hq, hkv = model.hidden, model.num_heads * model.dh, model.num_kv_heads * model.dh
    largest = max(h * (hq + 2 * hkv), hq * h, h * model.ffn_hidden, h * model.vocab)   # QKV, out, MLP, output layer
    bound = weight_bytes * (largest / tp + max_live_params)
    return num.where(max_live_params > 0, num.minimum(whole, bound), whole)


def fsdp_root_bytes(model, tp, weight_bytes=zero.BYTES_WEIGHT):
    """Weights of PyTorch FSDP2's root unit, held gathered from its forward to its backward: the input embedding,
    the output layer when untied, the final norm (torch/distributed/_composable/fsdp/_fsdp_state.py@005da46,
    FSDPState._lazy_init: "For the root, do not reshard after forward"; torchtitan wraps every block and then
    the model, so the root holds what no block does).

    >>> from models.transformer import get_model
    >>> m = get_model("llama3-8b")
    >>> round(float(fsdp_root_bytes(m, 1)) / 1e9, 2)     # 2 x 128256 x 4096 + 4096 at 2 bytes
    2.1
    """
    return weight_bytes * (model.vocab * model.hidden * (1 if model.tied_embeddings else 2) + model.norm_size) / tp


def recompute_backward_transient_bytes(model, micro_batch, seq_len, tp, sp, flash, cp=1):
    """Bytes that exist only during one layer's recomputed backward: the layer's full
    activations (recompute = 0) plus its backward's input and FFN gradients, 2 s b (h/t_sp + f/t)
    (measured with the live-tensor tracker of ``clustersim validate``)."""
    s = seq_len / cp
    full = layer_activation_bytes(model, micro_batch, seq_len, tp, sp, 0, flash, cp)
    return full + 2 * s * micro_batch * (model.hidden / num.where(sp, tp, 1) + model.ffn_hidden / tp)

