"""Tensor (Shoeybi et al. 2019) and sequence (Korthikanti et al. 2022) parallelism traffic.

Per layer, per micro-batch: forward has 2 all-reduces of the b s h activation (after the
attention and MLP blocks); backward 2 more (Shoeybi et al. Fig. 4, the f and g operators).
Sequence parallelism replaces each all-reduce by a reduce-scatter + all-gather of the same
total volume (Korthikanti Sec. 4.2.2), so the bytes on the wire are equal.

Outside the layers, per micro-batch (Megatron-LM core/tensor_parallel): the vocab-parallel
embedding all-reduces its b s h output in forward (first stage); the output layer's input copy
all-reduces the b s h input gradient in backward (last stage); the vocab-parallel cross-entropy
all-reduces three fp32 values per token (the logit max, the sum of exponentials, the target
logit; last stage). With sequence parallelism the first two become reduce-scatter / all-gather
pairs of at most the same volume; they are costed as all-reduces.
"""

from __future__ import annotations


def tp_collective_bytes(micro_batch, seq_len, hidden, cp=1, bytes_per_elem=2):
    """Size of one TP all-reduce buffer (b s h activations), bytes."""
    return bytes_per_elem * micro_batch * seq_len / cp * hidden


def tp_allreduces_per_layer(recompute_full):
    """All-reduce-equivalents per layer per micro-batch: 2 fwd + 2 bwd (+2 when the forward is recomputed)."""
    return 4 + 2 * recompute_full


# The vocab-parallel cross-entropy's all-reduces per micro-batch: max, sum of exp, target logit.
TP_LOSS_ALLREDUCES = 3


def tp_loss_collective_bytes(micro_batch, seq_len, cp=1):
    """Size of one of the cross-entropy's all-reduces: one fp32 per token, bytes."""
    return 4.0 * micro_batch * seq_len / cp


def tp_edge_allreduces(pp):
    """b s h all-reduces outside the layers on the busiest stage per micro-batch: the embedding's
    (first stage) and the output layer's input gradient (last stage); both when pp = 1."""
    import numpy as np
    return np.where(np.asarray(pp) == 1, 2, 1)
