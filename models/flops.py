"""FLOP counts of a transformer layer, the logits, and a whole iteration.

Per layer forward, b sequences of s tokens (Narayanan et al. SC'21 Sec. 5.1, App. A):
QKV 2bsh(h_q + 2 h_kv), scores + values 4bs^2 h_q x 1/2, output 2bsh h_q, MLP 2bsh f x (2 for
GeLU, 3 for SwiGLU); logits 2bshV. Backward is twice the forward (full training; a frozen base under
LoRA/QLoRA/DoRA skips the weight gradients: finetune_flops_per_iteration).

Causal convention (one, used for model FLOPs, hardware FLOPs and the attention kernel time in
models.layer): a causal layer's scores and values count the causal half of the s x s square, the
FLOPs a FlashAttention kernel executes and reports (flash-attention benchmarks/
benchmark_flash_attention.py: ``4 b s^2 h d // (2 if causal else 1)``), and NVIDIA's MFU formulas
for its published recipes (NeMo ``flops_formulas.py``: ``(12 s / h) * (0.5 if causal_self_attn)``).
With it MFU and HFU stay below 1 at any sequence length. ``causal=False`` gives the full square of
SC'21 eq. (3), 96 B s l h^2 (1 + s/6h + V/16lh) with f = 4h, MHA and full recompute.

Variants: multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, Sec. 2.1.2, eqs. 9-18)
replaces the QKV projections by down- and up-projections through the latent ranks and scores
with d_h + d_h^R query/key dims and d_v value dims; a sliding-window layer (Beltagy et al. 2020,
Longformer Sec. 3.1; Mistral 7B, Jiang et al. 2023, Sec. 2) scores each query against at most
w keys instead of s.
"""

from __future__ import annotations

import numpy as np

from models import numeric as num


def attn_proj_flops(model, tokens):
    """QKV and output projection FLOPs of one layer's forward for ``tokens`` tokens (MLA: the
    latent down/up projections, mla_attn_proj_flops)."""
    if model.is_mla:
        return mla_attn_proj_flops(tokens, model.hidden, model.num_heads, model.q_lora_rank, model.kv_lora_rank,
                                   model.qk_nope_head_dim, model.qk_rope_head_dim, model.v_head_dim)
    hq = model.num_heads * model.dh
    hkv = model.num_kv_heads * model.dh
    return 2.0 * tokens * model.hidden * (2 * hq + 2 * hkv)


def mla_attn_proj_flops(tokens, hidden, num_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
                        v_head_dim):
    """Projection FLOPs of one multi-head-latent-attention layer's forward, 2 per weight per token.

    DeepSeek-V2 eqs. 9-18: c_Q = W_DQ h (h -> d_c'), [q_C; q_R] = W_UQ, W_QR c_Q (d_c' -> n_h(d_h + d_h^R)),
    c_KV = W_DKV h and k_R = W_KR h (h -> d_c + d_h^R), [k_C; v_C] = W_UK, W_UV c_KV (d_c -> n_h(d_h + d_v)),
    out = W_O [o_1..o_nh] (n_h d_v -> h). q_lora_rank = 0: one h -> n_h(d_h + d_h^R) query matrix.
    Training multiplies the up-projections out (no weight absorption).

    >>> f = mla_attn_proj_flops(1, 7168, 128, 1536, 512, 128, 64, 128)  # DeepSeek-V3, one token
    >>> round(float(f) / 1e6, 1)
    374.2
    """
    q_out = num_heads * (qk_nope_head_dim + qk_rope_head_dim)
    q = num.where(q_lora_rank > 0, hidden * q_lora_rank + q_lora_rank * q_out, hidden * q_out)
    kv = hidden * (kv_lora_rank + qk_rope_head_dim) + kv_lora_rank * num_heads * (qk_nope_head_dim + v_head_dim)
    out = num_heads * v_head_dim * hidden
    return 2.0 * tokens * (q + kv + out)


CAUSAL = True   # the module's convention (docstring above)


def attention_score_flops(batch, seq_len, num_heads, qk_head_dim, v_head_dim, window=0, causal=CAUSAL):
    """QK^T and AV FLOPs of one attention layer's forward: 2 b s k n_h (d_qk + d_v), with k keys per
    query: s for a global layer over the full square (SC'21), s/2 causal; a sliding window of w
    tokens (Longformer Sec. 3.1: O(s w) instead of O(s^2)) has min(w, s), causal w - w^2/(2s)
    (each query sees at most w earlier keys). Arrays ok.

    With d_qk = d_v = d_h and causal=False this is SC'21's 4 b s^2 a d_h per layer.

    >>> float(attention_score_flops(1, 4096, 32, 128, 128, causal=False)) == 4 * 4096**2 * 32 * 128
    True
    >>> float(attention_score_flops(1, 4096, 32, 128, 128)) == 2 * 4096**2 * 32 * 128
    True
    >>> float(attention_score_flops(1, 4096, 32, 128, 128, window=1024, causal=False)
    ...       / attention_score_flops(1, 4096, 32, 128, 128, causal=False))
    0.25
    """
    w = num.where(num.arr(window) > 0, num.minimum(window, seq_len), seq_len)
    keys = num.where(causal, w - w * w / (2.0 * seq_len), w)
    return 2.0 * batch * seq_len * keys * num_heads * (qk_head_dim + v_head_dim)


def attn_core_flops(model, batch, seq_len, causal=CAUSAL):
    """QK^T and AV FLOPs of one global layer's forward (the causal half of the s x s square, or the
    full square with causal=False); MLA scores with d_h + d_h^R query/key dims and d_v value dims."""
    return attention_score_flops(batch, seq_len, model.num_heads, model.qk_head_dim, model.v_dim, causal=causal)


def attn_core_flops_all_layers(model, batch, seq_len, causal=CAUSAL):
    """QK^T and AV FLOPs of all layers' forward: global layers over the s x s square (causal: half),
    the ``num_sliding_layers`` over their windows (attention_score_flops)."""
    local = model.num_sliding_layers
    full = (model.num_layers - local) * attn_core_flops(model, batch, seq_len, causal)
    if not local:   # no sliding-window layer
        return full
    window = attention_score_flops(batch, seq_len, model.num_heads, model.qk_head_dim, model.v_dim,
                                   model.sliding_window, causal)
    return full + local * window


def mlp_flops(model, tokens, ffn_hidden):
    return 2.0 * model.ffn_matrices * tokens * model.hidden * ffn_hidden


def moe_layer_mlp_flops(model, tokens):
    """Router + top_k routed + shared experts, per MoE layer forward."""
    active = model.top_k + model.num_shared_experts
    return 2.0 * tokens * model.hidden * model.num_experts + active * mlp_flops(model, tokens, model.expert_ffn_hidden)


def logits_flops(model, tokens):
    return 2.0 * tokens * model.hidden * model.vocab


def forward_flops(model, batch, seq_len=None, causal=CAUSAL):
    """Model forward FLOPs for ``batch`` sequences (all layers + logits)."""
    return _forward_flops(model, batch, seq_len, causal)[0]


def _forward_flops(model, batch, seq_len=None, causal=CAUSAL):
    """(forward FLOPs, of which the attention cores', of which the logits')."""
    s = seq_len or model.seq_len
    tokens = batch * s
    core = attn_core_flops_all_layers(model, batch, s, causal)
    attn = model.num_layers * attn_proj_flops(model, tokens) + core
    dense = model.num_dense_ffn_layers * mlp_flops(model, tokens, model.ffn_hidden)
    moe = model.num_moe_layers * moe_layer_mlp_flops(model, tokens) if model.is_moe else 0.0
    logits = logits_flops(model, tokens)
    return attn + dense + moe + logits, core, logits


def model_flops_per_iteration(model, global_batch_size, causal=CAUSAL):
    """Model FLOPs of one iteration: 3x forward (fwd + 2x bwd), no recompute (PaLM MFU convention)."""
    return 3.0 * forward_flops(model, global_batch_size, causal=causal)


def hardware_flops_per_iteration(model, global_batch_size, recompute, causal=CAUSAL):
    """Model FLOPs plus recomputed forward: full recompute re-runs every layer's forward (not the
    logits), selective re-runs the attention core (Korthikanti et al. 2022 Sec. 5)."""
    return iteration_flops(model, global_batch_size, recompute, causal)[1]


def iteration_flops(model, global_batch_size, recompute, causal=CAUSAL, recompute_fraction=1.0):
    """(model FLOPs, hardware FLOPs) of one iteration (model_flops_per_iteration,
    hardware_flops_per_iteration) from one count of the forward; ``recompute_fraction``: the share of
    layers the recomputation applies to.

    >>> from models.transformer import get_model
    >>> m = get_model("gpt3-175b")
    >>> iteration_flops(m, 1536, 2) == (model_flops_per_iteration(m, 1536), hardware_flops_per_iteration(m, 1536, 2))
    True
    """
    fwd, attn, logits = _forward_flops(model, global_batch_size, causal=causal)
    layer_fwd = fwd - logits
    extra = num.where(recompute == 2, layer_fwd, num.where(recompute == 1, attn, 0.0)) * recompute_fraction
    model_flops = 3.0 * fwd
    return model_flops, model_flops + extra



def lora_forward_flops_per_token(model, rank, mask):
    """Forward FLOPs per token of all layers' LoRA adapters (Hu et al. 2021 Sec. 4.1: x A, then (x A) B,
    2 r (d_in + d_out) per adapted module per token); in MoE layers a token passes only the adapters of
    its top_k routed and the shared experts. ``mask``: models.finetune TARGETS bitmask (arrays ok).

    Llama-2 7B, r = 8 on q_proj, v_proj: 2 modules x 2 x 8 x (4096 + 4096) x 32 layers per token.
    >>> from models.transformer import get_model
    >>> int(lora_forward_flops_per_token(get_model("llama2-7b"), 8, 5)) == 2 * 2 * 8 * 8192 * 32
    True
    """
    from models.finetune import TARGETS, module_shapes

    def per_layer(moe):
        total, shapes = 0.0, module_shapes(model, moe)
        for i, name in enumerate(TARGETS):
            d_in, d_out, n = shapes.get(name, (0, 0, 0))
            active = (model.top_k + model.num_shared_experts) if moe and name in TARGETS[4:] else n
            total = total + ((np.asarray(mask) >> i) & 1) * active * 2.0 * rank * (d_in + d_out)
        return total

    moe_layers = model.num_moe_layers if model.is_moe else 0
    return (model.num_layers - moe_layers) * per_layer(False) + (moe_layers * per_layer(True) if moe_layers else 0.0)


def finetune_flops_per_iteration(model, global_batch_size, method, rank, mask, recompute, microbatches,
                                 causal=CAUSAL):
    """(model FLOPs, hardware FLOPs) of one iteration of LoRA / QLoRA / DoRA on a frozen base (arrays ok;
    ``method``: models.finetune.METHODS code, 0 = full training gives model_flops_per_iteration's and
    hardware_flops_per_iteration's figures; ``microbatches``: forward passes per iteration over all
    data-parallel ranks, global batch / micro-batch size).

    What runs (the FLOPs the model needs, PaLM's MFU definition, Chowdhery et al. 2022 App. B; matmul
    FLOPs only, as there):
      forward          F (forward_flops: every layer and the logits) + the adapters' forward A;
      backward, data   F again: every matmul's input gradient; the attention core (no weights) also
                       its second half, the gradients w.r.t. keys and values, + attn (its backward is 2x);
      backward, dW     none for the frozen base ("we do not need to calculate the gradients or maintain
                       the optimizer states for most parameters", Hu et al. 2021 Sec. 4.2; the frozen
                       output layer and embedding likewise), 2 A for the adapters (input and weight
                       gradients);
      DoRA             the column norm of W + B A, 2 r d_in d_out + 3 d_in d_out per module (Liu et al.
                       2024 eq. 5; the norm is detached, Sec. 4.3, so it has no backward): once per
                       iteration in model FLOPs (the weights change once per step), once per forward pass
                       in hardware FLOPs (PEFT recomputes it each forward).
    So model FLOPs = 2 F + attn + 3 A (+ DoRA): about 4 N per token instead of 6 N. Hardware FLOPs add the
    recomputed forward: full recompute re-runs every layer with its adapters (and DoRA norms), not the
    logits; selective re-runs the attention core (hardware_flops_per_iteration's convention). QLoRA's
    dequantisation is memory-bound element-wise work, not matmul FLOPs: counted in time, not here.
    """
    s = model.seq_len
    tokens = global_batch_size * s
    fwd = forward_flops(model, global_batch_size, causal=causal)
    attn = attn_core_flops_all_layers(model, global_batch_size, s, causal)
    adapters = tokens * lora_forward_flops_per_token(model, rank, mask)
    from models.finetune import dora_flops_per_microbatch
    dora_norm = np.where(np.asarray(method) == 3, model.num_layers * dora_flops_per_microbatch(model, rank, mask), 0.0)
    model_ft = 2.0 * fwd + attn + 3.0 * adapters + dora_norm
    hw_ft = model_ft + (microbatches - 1) * dora_norm + np.where(
        recompute == 2, fwd - logits_flops(model, tokens) + adapters + microbatches * dora_norm,
        np.where(recompute == 1, attn, 0.0))
    peft = np.asarray(method) != 0
    return (np.where(peft, model_ft, model_flops_per_iteration(model, global_batch_size, causal)),
            np.where(peft, hw_ft, hardware_flops_per_iteration(model, global_batch_size, recompute, causal)))


def megatron_flops_formula(batch, seq_len, num_layers, hidden, vocab):
    """SC'21 eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh), FLOPs per iteration with full recompute.

    >>> f = megatron_flops_formula(1536, 2048, 96, 12288, 51200)
    >>> round(f / 1e18, 2)
    4.51
    """
    return 96.0 * batch * seq_len * num_layers * hidden**2 * (
        1 + seq_len / (6.0 * hidden) + vocab / (16.0 * num_layers * hidden))
