"""Context parallelism: ring attention (Liu et al. 2023; Megatron-Core CP).

Each of c ranks holds s/c tokens; for attention it passes its K and V blocks around the
ring, c-1 steps per layer forward, overlapped with the blockwise attention compute; the
backward passes K, V and their gradients (2x).
"""

from __future__ import annotations


def kv_block_bytes(micro_batch, seq_len, kv_heads, head_dim, tp, cp, bytes_per_elem=2):
    """Bytes of one rank's K and V block for one layer."""
    return 2 * bytes_per_elem * micro_batch * seq_len / cp * kv_heads * head_dim / tp


def ring_steps(cp):
    return cp - 1
