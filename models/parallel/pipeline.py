"""Pipeline parallelism: bubble and point-to-point traffic.

Bubble fraction of a step (Narayanan et al. SC'21 Sec. 2.2): GPipe and 1F1B (p-1)/m of the
ideal time, i.e. (p-1)/(m+p-1) of the step; interleaved with v chunks per rank (p-1)/(v m);
ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism", Sec. 3) about a third of 1F1B's,
(p-1)(t_f + t_b - 2 t_w)/(m(t_f+t_b+t_w)) with t_w ~ t_b/2, i.e. (p-1)/(3m) for t_b = 2 t_f.
"""

from __future__ import annotations

import numpy as np


def bubble_ratio(pp, num_microbatches, vpp=1, schedule=1):
    """Bubble time over ideal (bubble-free) compute time, dimensionless.

    >>> float(bubble_ratio(pp=4, num_microbatches=8))
    0.375
    >>> float(bubble_ratio(pp=4, num_microbatches=8, vpp=2, schedule=2))
    0.1875
    """
    base = (pp - 1) / num_microbatches
    return np.where(schedule == 2, base / vpp, np.where(schedule == 3, base / 3.0, base))


def bubble_frac(pp, num_microbatches, vpp=1, schedule=1):
    """Fraction of a step a stage sits idle: (p-1)/(m+p-1) for 1F1B.

    >>> float(bubble_frac(pp=4, num_microbatches=8))
    0.2727272727272727
    """
    r = bubble_ratio(pp, num_microbatches, vpp, schedule)
    return r / (1 + r)


def p2p_bytes_per_microbatch(micro_batch, seq_len, hidden, tp, cp, sp, bytes_per_elem=2):
    """Activation bytes sent between adjacent stages per micro-batch, one direction.

    With TP the SC'21 scatter/gather optimisation (Sec. 4.1) or SP sends 1/t of the tensor.
    """
    return bytes_per_elem * micro_batch * seq_len / cp * hidden / tp


def num_p2p_on_critical_path(pp, num_microbatches, vpp=1):
    """Blocking sends on the critical path of one step: one forward and one backward per
    micro-batch and chunk, plus the fill and drain (Megatron's 1F1B uses blocking
    send/recv pairs between compute steps)."""
    return np.where(pp > 1, 2 * (num_microbatches * vpp + pp - 1), 0)


def chunk_layers(num_layers, virtual_stage, pp, vpp=1):
    """Layers of virtual stage ``virtual_stage`` (chunk c of stage s is c * pp + s): an even split
    over pp * vpp, the first num_layers % (pp vpp) one layer more (Megatron's uneven split).

    >>> [int(chunk_layers(30, v, 4, 2)) for v in range(8)]
    [4, 4, 4, 4, 4, 4, 3, 3]
    """
    n = pp * vpp
    return num_layers // n + (virtual_stage < num_layers % n)


def stage_layers(num_layers, stage, pp, vpp=1):
    """Layers a pipeline stage holds over its vpp chunks (arrays ok): the sum of chunk_layers.

    >>> [int(stage_layers(30, s, 4, 2)) for s in range(4)]
    [8, 8, 7, 7]
    """
    n = pp * vpp
    extra = np.clip(-(-(num_layers % n - stage) // pp), 0, vpp)   # chunks c with c pp + s < L % n
    return vpp * (num_layers // n) + extra
