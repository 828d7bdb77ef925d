"""Alpha-beta costs of NCCL-style collectives over a two-level hierarchy (NVLink, network).

Bus-bandwidth convention of nccl-tests (PERFORMANCE.md): for a buffer of S bytes on n
ranks, all-reduce moves 2(n-1)/n S per rank, reduce-scatter / all-gather / all-to-all
(n-1)/n S, so t = alpha * steps + factor * S / busbw. A group inside one NVLink domain
sees the measured NVLink bus bandwidth; a group spanning nodes is limited by the NICs its
members on one node drive together (a ring crosses each node boundary once per step on
every channel: nccl-tests #160 / GTC24 S62129, multi-node busbw ~ NICs per node x per-NIC rate).
Tree all-reduce (Sanders et al. 2009; NCCL double binary tree) has log2(n) latency steps.
All functions accept numpy arrays.
"""

from __future__ import annotations

import numpy as np

# Per-hop latency (NCCL's tuning model, src/graph/tuning.cc, is of this order: ~1 us per
# NVLink hop, a few us per network hop, plus a per-collective base latency).
ALPHA_NVLINK_S = 1e-6
ALPHA_NET_S = 5e-6
BASE_LATENCY_S = 8e-6

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send_recv")


def ranks_per_node(group_size, stride, gpus_per_node):
    """How many members of a group with rank ``stride`` share one node (>= 1).

    >>> int(ranks_per_node(group_size=16, stride=8, gpus_per_node=8))
    1
    >>> int(ranks_per_node(group_size=8, stride=1, gpus_per_node=8))
    8
    """
    return np.maximum(1, np.minimum(group_size, gpus_per_node // np.minimum(stride, gpus_per_node)))


def group_bus_bytes_per_s(group_size, stride, gpus_per_node, nvlink_busbw_bytes_per_s, net_bytes_per_s_per_gpu,
                          local=None):
    """Bus bandwidth a collective sees in bytes/s: NVLink inside a node, else the group's NICs on a node.
    ``local``: members per node when the group spans several dimensions (default: from ``stride``)."""
    local = ranks_per_node(group_size, stride, gpus_per_node) if local is None else local
    spans_nodes = group_size > local
    return np.where(spans_nodes, np.minimum(nvlink_busbw_bytes_per_s, local * net_bytes_per_s_per_gpu),
                    nvlink_busbw_bytes_per_s)


def collective_time_s(kind, num_bytes, group_size, bus_bytes_per_s, spans_nodes=False):
    """Seconds for one collective of ``num_bytes`` (the full buffer) over ``group_size`` ranks.

    >>> round(float(collective_time_s("all_reduce", 1e9, 8, 232e9)) * 1e3, 2)  # 1 GB on 8 A100s
    7.56
    >>> float(collective_time_s("all_reduce", 1e9, 1, 232e9))
    0.0
    """
    n = np.asarray(group_size, dtype=float)
    alpha = np.where(spans_nodes, ALPHA_NET_S, ALPHA_NVLINK_S)
    frac = (n - 1) / np.maximum(n, 1)
    if kind == "all_reduce":
        ring = 2 * (n - 1) * alpha + 2 * frac * num_bytes / bus_bytes_per_s
        tree = 2 * np.log2(np.maximum(n, 2)) * alpha + 2 * frac * num_bytes / bus_bytes_per_s
        t = np.minimum(ring, tree)
    elif kind in ("reduce_scatter", "all_gather", "all_to_all"):
        t = (n - 1) * alpha + frac * num_bytes / bus_bytes_per_s
    elif kind == "send_recv":
        t = alpha + num_bytes / bus_bytes_per_s
    else:
        raise ValueError(f"collective kind {kind!r} unknown; choose one of {', '.join(KINDS)}")
    return np.where(n > 1, t + BASE_LATENCY_S, 0.0)


def all_to_all_time_s(num_bytes, group_size, local_ranks, nvlink_busbw_bytes_per_s, net_bytes_per_s_per_gpu):
    """Seconds for an all-to-all of ``num_bytes`` per rank over ``group_size`` ranks, ``local_ranks``
    of them on each node: each rank sends (n - r)/n of its buffer over its own NIC and (r - 1)/n
    over NVLink, concurrently (no ring shares the NICs here, unlike all-reduce).

    >>> round(float(all_to_all_time_s(1e9, 16, 8, 370e9, 47e9)) * 1e3, 2)  # 16 ranks on 2 DGX H100
    10.65
    """
    n = np.asarray(group_size, dtype=float)
    r = np.minimum(np.asarray(local_ranks, dtype=float), n)
    t_net = (n - r) / n * num_bytes / net_bytes_per_s_per_gpu + np.where(n > r, (n / r - 1) * ALPHA_NET_S, 0.0)
    t_nvl = (r - 1) / n * num_bytes / nvlink_busbw_bytes_per_s + (r - 1) * ALPHA_NVLINK_S
    return np.where(n > 1, np.maximum(t_net, t_nvl) + BASE_LATENCY_S, 0.0)
