"""Context parallelism: ring attention (Liu et al. 2023; Megatron-Core CP).

Each of c ranks holds s/c tokens; for attention it passes its K and V blocks around the
ring, c-1 steps per layer forward, overlapped with the blockwise attention compute; the
backward passes K, V and their gradients (2x).
"""

from __future__ import annotations

import numpy as np


def kv_block_bytes(micro_batch, seq_len, kv_heads, head_dim, tp, cp, bytes_per_elem=2):
    """Bytes of one rank's K and V block for one layer."""
    return 2 * bytes_per_elem * micro_batch * seq_len / cp * kv_heads * head_dim / tp


def ring_steps(cp):
    """K/V block exchanges per layer and direction: c - 1."""
    return cp - 1


def exposed_ring_s(ring_s, attn_fwd_s, attn_bwd_s, recompute_full):
    """(forward, backward) seconds per layer that the K/V ring of ``ring_s`` (all c-1 steps, one
    direction) adds beyond the attention it overlaps: forward max(0, r - a_f); the backward sends
    K, V and their gradients (2 r) behind the attention backward a_b; full recompute re-runs the
    forward ring before it.

    >>> [float(x) for x in exposed_ring_s(2.0, 1.0, 2.5, 1)]
    [1.0, 2.5]
    """
    fwd = np.maximum(0.0, ring_s - attn_fwd_s)
    return fwd, np.maximum(0.0, 2 * ring_s - attn_bwd_s) + recompute_full * fwd
