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

import numpy as np

from models.units import GIB

BYTES_WEIGHT = 2          # bf16/fp16 working weights
BYTES_GRAD = 2            # bf16/fp16 gradients (ZeRO paper accounting)
BYTES_OPTIMIZER = 12      # fp32 master weights + Adam m + v (ZeRO paper K = 12)

# Not modelled as tensors, stated here: CUDA context, cuBLAS/NCCL workspaces (~1 GiB on
# A100/H100, PyTorch CUDA-semantics notes) and caching-allocator fragmentation, taken as 5%
# of tensor bytes (PyTorch memory-management docs describe block rounding and splitting).
FRAMEWORK_OVERHEAD_BYTES = 1.0 * GIB
ALLOCATOR_FRAGMENTATION = 0.05


def model_state_bytes(num_params, dp, zero_stage):
    """(weights, grads, optimizer) bytes per rank for ``num_params`` parameters held by the rank
    before ZeRO sharding over ``dp`` ranks.

    ZeRO paper Fig. 1, 7.5B parameters, N_d = 64: 120 / 31.4 / 16.6 / 1.9 GB for stages 0-3.
    >>> [round(float(sum(model_state_bytes(7.5e9, 64, z))) / 1e9, 1) for z in range(4)]
    [120.0, 31.4, 16.6, 1.9]
    """
    zero_stage = np.asarray(zero_stage)
    weights = BYTES_WEIGHT * num_params / np.where(zero_stage >= 3, dp, 1)
    grads = BYTES_GRAD * num_params / np.where(zero_stage >= 2, dp, 1)
    optimizer = BYTES_OPTIMIZER * num_params / np.where(zero_stage >= 1, dp, 1)
    return weights, grads, optimizer


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
    scores = np.where(flash, 0.0, (2.0 + 3.0 * mask) * model.num_heads * s * s * micro_batch)  # softmax out (+ dropout mask, out)
    scores = np.where(recompute >= 1, 0.0, scores)
    split = attn_split + mlp_split + scores
    full = replicated / np.where(sp, tp, 1) + split / tp
    return np.where(recompute == 2, 2 * sbh / np.where(sp, tp, 1), full)


def output_layer_activation_bytes(model, micro_batch, seq_len, tp, sp, cp=1):
    """Final norm input, output-projection input and fp32 logits for the loss (Korthikanti Sec. 4.3),
    plus the 16-bit logits that live beside their fp32 copy during the loss (measured with the
    live-tensor tracker of ``clustersim validate``)."""
    s = seq_len / cp
    sbh = s * micro_batch * model.hidden
    return 4 * sbh / np.where(sp, tp, 1) + (4 + 2) * s * micro_batch * model.vocab / tp


def inflight_microbatches(stage, pp, vpp, num_microbatches, schedule):
    """Micro-batches whose activations stage ``stage`` (0-based) holds at its peak.

    GPipe: all m (Huang et al. 2019). 1F1B and ZB-H1: p - stage (Narayanan et al. 2021 Sec. 2.2;
    Qi et al. 2023 keep 1F1B's memory for ZB-H1). Interleaved: the first stage holds
    p (1 + (p-1)/(p v)) micro-batches' worth (Korthikanti et al. 2022 Sec. 4.2.3).
    """
    m = num_microbatches
    one_f_one_b = np.minimum(pp - stage, m)
    interleaved = np.minimum((pp - stage) * (1 + (pp - 1) / (pp * vpp)), m * 1.0)
    return np.where(schedule == 0, m, np.where(schedule == 2, interleaved, one_f_one_b))


def zero3_gather_buffer_bytes(model, tp, prefetch):
    """16-bit weights of gathered layers a ZeRO-3/FSDP rank holds at once: the current layer,
    plus the next one when its all-gather is prefetched (overlapped with compute; FSDP's
    forward/backward prefetch needs a separate CUDA stream, so none on CPU)."""
    layer_w = (model.attn_params + model.dense_mlp_params) / tp * BYTES_WEIGHT
    return (1 + np.asarray(prefetch, dtype=float)) * layer_w


def recompute_backward_transient_bytes(model, micro_batch, seq_len, tp, sp, flash, cp=1):
    """Bytes that exist only during one layer's recomputed backward: the layer's full
    activations (recompute = 0) plus its backward's input and FFN gradients, 2 s b (h/t_sp + f/t)
    (measured with the live-tensor tracker of ``clustersim validate``)."""
    s = seq_len / cp
    full = layer_activation_bytes(model, micro_batch, seq_len, tp, sp, 0, flash, cp)
    return full + 2 * s * micro_batch * (model.hidden / np.where(sp, tp, 1) + model.ffn_hidden / tp)
