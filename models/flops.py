"""FLOP counts of a transformer layer, the logits, and a whole iteration.

Per layer forward, b sequences of s tokens (Narayanan et al. SC'21 Sec. 5.1, App. A):
QKV 2bsh(h_q + 2 h_kv), scores + values 4bs^2 h_q (full s x s, the convention of the
Megatron formula), output 2bsh h_q, MLP 2bsh f x (2 for GeLU, 3 for SwiGLU); logits 2bshV.
Backward is twice the forward. With f = 4h and MHA the total with full recompute is
eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh).
"""

from __future__ import annotations

import numpy as np


def attn_proj_flops(model, tokens):
    """QKV and output projection FLOPs of one layer's forward for ``tokens`` tokens."""
    hq = model.num_heads * model.dh
    hkv = model.num_kv_heads * model.dh
    return 2.0 * tokens * model.hidden * (2 * hq + 2 * hkv)


def attn_core_flops(model, batch, seq_len):
    """QK^T and AV FLOPs of one layer's forward over the full s x s square (model FLOPs)."""
    return 4.0 * batch * seq_len**2 * model.num_heads * model.dh


def mlp_flops(model, tokens, ffn_hidden):
    return 2.0 * model.ffn_matrices * tokens * model.hidden * ffn_hidden


def moe_layer_mlp_flops(model, tokens):
    """Router + top_k routed + shared experts, per MoE layer forward."""
    active = model.top_k + model.num_shared_experts
    return 2.0 * tokens * model.hidden * model.num_experts + active * mlp_flops(model, tokens, model.expert_ffn_hidden)


def logits_flops(model, tokens):
    return 2.0 * tokens * model.hidden * model.vocab


def forward_flops(model, batch, seq_len=None):
    """Model forward FLOPs for ``batch`` sequences (all layers + logits)."""
    s = seq_len or model.seq_len
    tokens = batch * s
    per_layer_attn = attn_proj_flops(model, tokens) + attn_core_flops(model, batch, s)
    dense = model.num_dense_ffn_layers * mlp_flops(model, tokens, model.ffn_hidden)
    moe = model.num_moe_layers * moe_layer_mlp_flops(model, tokens) if model.is_moe else 0.0
    return model.num_layers * per_layer_attn + dense + moe + logits_flops(model, tokens)


def model_flops_per_iteration(model, global_batch_size):
    """Model FLOPs of one iteration: 3x forward (fwd + 2x bwd), no recompute (PaLM MFU convention)."""
    return 3.0 * forward_flops(model, global_batch_size)


def hardware_flops_per_iteration(model, global_batch_size, recompute):
    """Model FLOPs plus recomputed forward: full recompute re-runs every layer's forward (not the
    logits), selective re-runs the attention core (Korthikanti et al. 2022 Sec. 5)."""
    s = model.seq_len
    layer_fwd = forward_flops(model, global_batch_size) - logits_flops(model, global_batch_size * s)
    attn = model.num_layers * attn_core_flops(model, global_batch_size, s)
    extra = np.where(recompute == 2, layer_fwd, np.where(recompute == 1, attn, 0.0))
    return model_flops_per_iteration(model, global_batch_size) + extra


def megatron_flops_formula(batch, seq_len, num_layers, hidden, vocab):
    """SC'21 eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh), FLOPs per iteration with full recompute.

    >>> f = megatron_flops_formula(1536, 2048, 96, 12288, 51200)
    >>> round(f / 1e18, 2)
    4.51
    """
    return 96.0 * batch * seq_len * num_layers * hidden**2 * (
        1 + seq_len / (6.0 * hidden) + vocab / (16.0 * num_layers * hidden))
