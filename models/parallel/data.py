"""Data parallelism: which ranks reduce gradients together.

DDP all-reduces the gradients once per iteration (Li et al. 2020, PyTorch DDP), overlapped with
the last micro-batch's backward when buckets are used. Everything that ZeRO sharding changes
(model-state memory, reduce-scatter / all-gather traffic and their overlap) is in
models.parallel.zero, which also costs plain DDP (stage 0); the expert weights' data-parallel group is
models.parallel.expert.expert_dp_size (it depends on the expert layout).
"""

from __future__ import annotations

import numpy as np


def dp_comm_group(dp, cp):
    """Gradients are reduced over dp * cp ranks (Megatron: CP ranks hold the same weights).

    >>> int(dp_comm_group(4, 2))
    8
    """
    return np.asarray(dp) * np.asarray(cp)

