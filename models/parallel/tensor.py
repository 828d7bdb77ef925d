"""Tensor (Shoeybi et al. 2019) and sequence (Korthikanti et al. 2022) parallelism traffic.

Per layer, per micro-batch: forward has 2 all-reduces of the b s h activation (after the
attention and MLP blocks); backward 2 more (Shoeybi et al. Fig. 4, the f and g operators).
Sequence parallelism replaces each all-reduce by a reduce-scatter + all-gather of the same
total volume (Korthikanti Sec. 4.2.2), so the bytes on the wire are equal.
"""

from __future__ import annotations


def tp_collective_bytes(micro_batch, seq_len, hidden, cp=1, bytes_per_elem=2):
    """Size of one TP all-reduce buffer (b s h activations), bytes."""
    return bytes_per_elem * micro_batch * seq_len / cp * hidden


def tp_allreduces_per_layer(recompute_full):
    """All-reduce-equivalents per layer per micro-batch: 2 fwd + 2 bwd (+2 when the forward is recomputed)."""
    return 4 + 2 * recompute_full
