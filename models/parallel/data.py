"""Data parallelism and ZeRO: gradient reduction and parameter gathers.

DDP all-reduces the gradients once per iteration (Li et al. 2020, PyTorch DDP), overlapped
with the last micro-batch's backward when buckets are used. ZeRO-1/2 reduce-scatter the
gradients and all-gather the updated weights (same volume as one all-reduce; ZeRO paper
Sec. 7.2); ZeRO-2 (DeepSpeed) reduce-scatters at every micro-batch. ZeRO-3/FSDP gathers
every layer's weights in forward and again in backward, and reduce-scatters the gradients,
per micro-batch: 1.5x the all-reduce volume (ZeRO paper Sec. 7.2.2) times the micro-batches.
"""

from __future__ import annotations

import numpy as np


def grad_sync_bytes(params_per_rank, bytes_per_grad=2):
    """Gradient bytes each rank contributes to the DP reduction."""
    return bytes_per_grad * params_per_rank


def zero3_gathers_per_microbatch():
    """All-gathers of the full weights per micro-batch under ZeRO-3 (forward + backward)."""
    return 2


def dp_comm_group(dp, cp):
    """Gradients are reduced over dp * cp ranks (Megatron: CP ranks hold the same weights)."""
    return np.asarray(dp) * np.asarray(cp)
