"""Data parallelism: which ranks reduce gradients together.

DDP all-reduces the gradients once per iteration (Li et al. 2020, PyTorch DDP), overlapped with
the last micro-batch's backward when buckets are used. Everything that ZeRO sharding changes
(model-state memory, reduce-scatter / all-gather traffic and their overlap) is in
models.parallel.zero, which also costs plain DDP (stage 0).
"""

from __future__ import annotations

import numpy as np


def dp_comm_group(dp, cp):
    """Gradients are reduced over dp * cp ranks (Megatron: CP ranks hold the same weights).

    >>> int(dp_comm_group(4, 2))
    8
    """
    return np.asarray(dp) * np.asarray(cp)


def expert_dp_group(dp, cp, ep):
    """Expert weights are reduced over the dp * cp / ep expert-data-parallel ranks (>= 1).

    >>> int(expert_dp_group(8, 1, 4))
    2
    """
    return np.maximum(dp_comm_group(dp, cp) // ep, 1)
