"""Alpha-beta costs of NCCL-style collectives over a two-level hierarchy (NVLink, network).

Bus-bandwidth convention of nccl-tests (PERFORMANCE.md): for a buffer of S bytes on n
ranks, all-reduce moves 2(n-1)/n S per rank, reduce-scatter / all-gather / all-to-all
(n-1)/n S, so t = alpha * steps + factor * S / busbw. A group inside one NVLink domain
sees the measured NVLink bus bandwidth; a group spanning nodes is limited by the NICs its
members on one node drive together (a ring crosses each node boundary once per step on
every channel: nccl-tests #160 / GTC24 S62129, multi-node busbw ~ NICs per node x per-NIC rate).
Latency: NCCL's own tuning model (NVIDIA/nccl src/graph/tuning.cc at v2.20.3, commit b647562,
``ncclTopoTuneModel``), Simple protocol: a ring pays the base latency plus one hop per step, each step
inside a node at the NVLink hop latency and each step that crosses nodes at the network one, so its
latency grows linearly with the ring size: all-gather / reduce-scatter n - 1 steps (N - 1 of them
between N nodes), all-reduce 2(n - 1) steps (2N across nodes); a tree all-reduce pays
2 ((n/N - 1) intra + log2(N) inter) hops (NCCL's double binary tree, Sanders et al. 2009), and NCCL
runs whichever is faster. All functions accept numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models import numeric as num

# NCCL 2.20.3 src/graph/tuning.cc (NVIDIA/nccl@b647562), Simple protocol, microseconds: baseLat Ring 8.4;
# hwLat NVLINK Ring 3.4, NET Ring 14.0 (per ring step); hwLat NVLINK Tree 28, NET Tree 28 (per tree hop,
# Tree/Simple base 0). The ring's intra-node step is at least the network post overhead x 3 once the ring
# spans nodes (getNetOverhead: 1 us on Intel/other hosts, x3 for Simple): max(3.4, 3.0) = 3.4.
ALPHA_NVLINK_S = 3.4e-6         # one ring step over NVLink (hwLat[NVLINK][RING][SIMPLE])
ALPHA_NET_S = 14.0e-6           # one ring step that crosses nodes (hwLat[NET][RING][SIMPLE])
BASE_LATENCY_S = 8.4e-6         # per collective (baseLat[RING][SIMPLE])
TREE_HOP_NVLINK_S = 28e-6       # one tree hop inside a node (hwLat[NVLINK][TREE][SIMPLE])
TREE_HOP_NET_S = 28e-6          # one tree hop between nodes (hwLat[NET][TREE][SIMPLE])
# LL128 protocol, same file: baseLat Ring 14.0 / Tree 14.0; hwLat NVLINK Ring 1.9 / Tree 1.25, NET Ring 4.0 /
# Tree 8.5 us; its bus bandwidth is 0.92 of Simple's (ring, >= 2 GPUs per node: "busBw * 0.92") and
# 0.92 x 120/128 for a multi-node tree. NCCL picks, per call, the (algorithm, protocol) of least
# latency + bytes / bandwidth (ncclTopoGetAlgoTime); LL128 is on by default on NVLink systems.
LL128 = {"base": 14.0e-6, "ring_nvl": 1.9e-6, "ring_net": 4.0e-6, "tree_nvl": 1.25e-6, "tree_net": 8.5e-6,
         "ring_bw": 0.92, "tree_bw": 0.92 * 120 / 128}
# The all-to-all (NCCL send/recv to every peer at once, no ring) keeps the per-peer latencies it had:
# ~1 us per NVLink peer, ~5 us per network peer, 8 us per call (assumed, of the order of tuning.cc's).
A2A_PEER_NVLINK_S, A2A_PEER_NET_S, A2A_BASE_S = 1e-6, 5e-6, 8e-6

# Communication steals compute: an NCCL kernel overlapped with a GEMM occupies SMs (one CTA per channel) and
# HBM bandwidth, so the compute it hides behind runs slower. Lee et al. 2025, "Characterizing Compute-
# Communication Overlap in GPU-Accelerated Distributed Deep Learning: Performance and Power Implications"
# (arXiv 2507.03114), abstract: overlapped compute is slowed by 18.9% on average (40.0% max) against the same
# compute run alone, GPT and Llama training on 4 x A100 / H100 / MI250 / MI210. The SM share agrees: an
# ncclAllGather beside a GEMM on an H100 holds 24 of its 132 SMs (18%) in Nsight Systems (NVIDIA developer
# forum thread 337991, "Compute-Communication Overlap Causes Severe GEMM Performance Degradation").
COMPUTE_SLOWDOWN_WHILE_OVERLAPPED = 0.189

KINDS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send_recv")
_LL128_LATENCIES = tuple(LL128[k] for k in ("base", "ring_nvl", "ring_net", "tree_nvl", "tree_net"))
_LL128_TREE_BW, _LL128_RING_BW = LL128["tree_bw"], LL128["ring_bw"]
_SCALAR_TYPES = (int, float, bool)


def scalars(*xs) -> bool:
    """True when every argument is one number (a Python number, a numpy scalar or a 0-d array): the cost
    functions then take a plain-float branch of the same formula, as one estimate() has only scalars and
    a numpy call on a 0-d array costs ~1 us against ~30 ns for float arithmetic (issue 19)."""
    for x in xs:
        t = type(x)
        if t in num.NUMBER_TYPES:
            continue
        if t is np.ndarray:
            if x.ndim:
                return False
        elif t not in _SCALAR_TYPES and not isinstance(x, np.generic):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Measured:
    """One collective kind as ``clustersim calibrate`` measured it (models.profile): the fitted
    latency, and the measured times of single collectives over ``world`` ranks of one node
    (log2 bytes ascending, log2 seconds), which are interpolated inside their size range."""
    alpha_s: float | None = None
    world: int = 0
    log2_bytes: tuple = ()
    log2_time_s: tuple = ()

    def __post_init__(self) -> None:
        if len(self.log2_bytes) != len(self.log2_time_s) or list(self.log2_bytes) != sorted(self.log2_bytes):
            raise ValueError("profile: collective points must be (bytes, seconds) pairs in ascending size")


def ranks_per_node(group_size, stride, gpus_per_node):
    """How many members of a group with rank ``stride`` share one node (>= 1).

    >>> int(ranks_per_node(group_size=16, stride=8, gpus_per_node=8))
    1
    >>> int(ranks_per_node(group_size=8, stride=1, gpus_per_node=8))
    8
    """
    return num.maximum(1, num.minimum(group_size, gpus_per_node // num.minimum(stride, gpus_per_node)))


def group_bus_bytes_per_s(group_size, stride, gpus_per_node, nvlink_busbw_bytes_per_s, net_bytes_per_s_per_gpu,
                          local=None):
    """Bus bandwidth a collective sees in bytes/s: NVLink inside a node, else the group's NICs on a node.
    ``local``: members per node when the group spans several dimensions (default: from ``stride``)."""
    local = ranks_per_node(group_size, stride, gpus_per_node) if local is None else local
    spans_nodes = group_size > local
    return num.where(spans_nodes, num.minimum(nvlink_busbw_bytes_per_s, local * net_bytes_per_s_per_gpu),
                     nvlink_busbw_bytes_per_s)


def nccl_latency_s(kind, group_size, ranks_per_node, spans_nodes):
    """(Simple, LL128) latency in seconds of one NCCL ``kind`` collective over ``group_size`` ranks,
    ``ranks_per_node`` of them on each node (NCCL 2.20.3 tuning.cc, module docstring): ring for every
    kind, the faster of ring and tree for all-reduce. Linear in the ring size.

    >>> [round(float(x) * 1e6, 1) for x in nccl_latency_s("all_gather", 8, 8, False)]   # 8.4 + 7 x 3.4
    [32.2, 27.3]
    >>> round(float(nccl_latency_s("all_gather", 1024, 8, True)[0]) * 1e3, 2)           # 896 x 3.4 + 127 x 14 us
    4.83
    """
    if scalars(group_size, ranks_per_node, spans_nodes):
        return _nccl_latency_scalar_s(kind, float(group_size), float(ranks_per_node), bool(spans_nodes))
    n = np.asarray(group_size, dtype=float)
    r = np.where(spans_nodes, np.minimum(np.asarray(ranks_per_node, dtype=float), n), n)
    nodes = np.ceil(n / np.maximum(r, 1))
    if kind == "all_reduce":
        steps, inter = 2 * (n - 1), np.where(nodes > 1, 2 * nodes, 0)
    elif kind == "send_recv":
        steps, inter = np.ones_like(n), np.where(nodes > 1, 1.0, 0.0)
    else:
        steps, inter = n - 1, nodes - 1
    intra = np.maximum(steps - inter, 0)
    simple = BASE_LATENCY_S + intra * ALPHA_NVLINK_S + inter * ALPHA_NET_S
    ll128 = LL128["base"] + intra * LL128["ring_nvl"] + inter * LL128["ring_net"]
    if kind == "all_reduce":
        log_nodes = np.log2(np.maximum(nodes, 1))
        simple = np.minimum(simple, 2 * ((r - 1) * TREE_HOP_NVLINK_S + log_nodes * TREE_HOP_NET_S))
        ll128 = np.minimum(ll128, LL128["base"] + 2 * ((r - 1) * LL128["tree_nvl"] + log_nodes * LL128["tree_net"]))
    return simple, ll128


def _nccl_latency_scalar_s(kind: str, n: float, rpn: float, spans_nodes: bool):
    """nccl_latency_s for one collective, in floats (the same formula, term by term)."""
    r = min(rpn, n) if spans_nodes else n
    nodes = float(math.ceil(n / max(r, 1.0)))
    if kind == "all_reduce":
        steps, inter = 2 * (n - 1), (2 * nodes if nodes > 1 else 0.0)
    elif kind == "send_recv":
        steps, inter = 1.0, (1.0 if nodes > 1 else 0.0)
    else:
        steps, inter = n - 1, nodes - 1
    intra = max(steps - inter, 0.0)
    simple = BASE_LATENCY_S + intra * ALPHA_NVLINK_S + inter * ALPHA_NET_S
    base, ring_nvl, ring_net, tree_nvl, tree_net = _LL128_LATENCIES
    ll128 = base + intra * ring_nvl + inter * ring_net
    if kind == "all_reduce":
        log_nodes = math.log2(max(nodes, 1.0))
        simple = min(simple, 2 * ((r - 1) * TREE_HOP_NVLINK_S + log_nodes * TREE_HOP_NET_S))
        ll128 = min(ll128, base + 2 * ((r - 1) * tree_nvl + log_nodes * tree_net))
    return simple, ll128


def collective_time_s(kind, num_bytes, group_size, bus_bytes_per_s, spans_nodes=False, measured=None, count=1,
                      ranks_per_node=None):
    """Seconds for ``count`` collectives of ``kind`` that together move ``num_bytes`` (full buffers)
    over ``group_size`` ranks: each collective runs at the faster of NCCL's Simple protocol (its latency,
    the full bus bandwidth) and LL128 (lower latency, 0.92 of the bandwidth), :func:`nccl_latency_s`.
    ``ranks_per_node``: the group's members on each node when it spans nodes (None: one, every ring
    step crosses the network).

    ``measured`` (a :class:`Measured`, from a calibration profile): its fitted latency replaces the
    hop model's for a group inside one node (a group spanning nodes adds the network hops), and for
    a group of the measured size inside one node, a collective whose size lies within the measured
    sizes takes the time interpolated between them (log-log). None: the hop model above.

    >>> round(float(collective_time_s("all_reduce", 1e9, 8, 232e9)) * 1e3, 2)  # 1 GB on 8 A100s
    7.6
    >>> float(collective_time_s("all_reduce", 1e9, 1, 232e9))
    0.0
    >>> round(float(collective_time_s("all_gather", 4e6, 2, 1e9, measured=Measured(alpha_s=1e-3), count=4)) * 1e3, 1)
    6.0
    >>> pts = Measured(1e-3, 2, (20.0, 22.0), (-10.0, -8.0))   # 1 MiB in 2^-10 s, 4 MiB in 2^-8 s
    >>> round(float(collective_time_s("all_reduce", 2 * 2**21, 2, 1e9, measured=pts, count=2)) * 1e3, 3)
    3.906
    """
    number = num.NUMBER_TYPES
    if measured is None and ((type(num_bytes) in number and type(group_size) in number and type(count) in number
                              and type(bus_bytes_per_s) in number and type(spans_nodes) in number)
                             or scalars(num_bytes, group_size, bus_bytes_per_s, spans_nodes, count)):
        return _collective_scalar_s(kind, num_bytes, float(group_size), bus_bytes_per_s, bool(spans_nodes), count,
                                    1.0 if ranks_per_node is None else ranks_per_node)
    n = np.asarray(group_size, dtype=float)
    frac = (n - 1) / np.maximum(n, 1)
    if kind == "all_reduce":
        factor = 2 * frac
    elif kind in ("reduce_scatter", "all_gather", "all_to_all"):
        factor = frac
    elif kind == "send_recv":
        factor = 1.0
    else:
        raise ValueError(f"collective kind {kind!r} unknown; choose one of {', '.join(KINDS)}")
    rpn = 1 if ranks_per_node is None else ranks_per_node
    bw_time = factor * num_bytes / np.maximum(count, 1) / bus_bytes_per_s
    if measured is None or measured.alpha_s is None:
        lat_simple, lat_ll128 = nccl_latency_s(kind, n, rpn, spans_nodes)
        ll128_bw = LL128["tree_bw"] if kind == "all_reduce" else LL128["ring_bw"]
        each = np.minimum(lat_simple + bw_time, lat_ll128 + bw_time / ll128_bw)
    else:
        r = np.where(spans_nodes, np.minimum(rpn, n), n)
        inter = np.where(spans_nodes, np.ceil(n / np.maximum(r, 1)) - 1, 0.0)
        each = measured.alpha_s + inter * ALPHA_NET_S + bw_time
    t = count * each
    if measured is not None and len(measured.log2_bytes) >= 2:
        xs, ys = measured.log2_bytes, measured.log2_time_s
        each_b = np.log2(np.maximum(num_bytes / np.maximum(count, 1), 1.0))
        inside = (n == measured.world) & ~np.asarray(spans_nodes, dtype=bool) & (each_b >= xs[0]) & (each_b <= xs[-1])
        t = np.where(inside, count * np.exp2(np.interp(each_b, xs, ys)), t)
    return np.where(n > 1, t, 0.0)


def _collective_scalar_s(kind, num_bytes, n, bus_bytes_per_s, spans_nodes, count, rpn):
    """collective_time_s for one collective without a measured profile, in floats (the same formula)."""
    if kind == "all_reduce":
        factor = 2 * ((n - 1) / max(n, 1.0))
    elif kind in ("reduce_scatter", "all_gather", "all_to_all"):
        factor = (n - 1) / max(n, 1.0)
    elif kind == "send_recv":
        factor = 1.0
    else:
        raise ValueError(f"collective kind {kind!r} unknown; choose one of {', '.join(KINDS)}")
    if not n > 1 or not count:   # (no collective: 0 whatever it would have cost)
        return 0.0
    if bus_bytes_per_s:
        bw_time = factor * num_bytes / max(count, 1) / bus_bytes_per_s
    else:   # numpy scalars: a zero bandwidth gives inf, as the array path
        bw_time = factor * np.float64(num_bytes) / max(count, 1) / np.float64(bus_bytes_per_s)
    lat_simple, lat_ll128 = (_nccl_latency_scalar_s(kind, n, float(rpn), spans_nodes)
                             if type(rpn) in num.NUMBER_TYPES else nccl_latency_s(kind, n, rpn, spans_nodes))
    ll128_bw = _LL128_TREE_BW if kind == "all_reduce" else _LL128_RING_BW
    return count * min(lat_simple + bw_time, lat_ll128 + bw_time / ll128_bw)


def stolen_compute_s(total_comm_s, exposed_comm_s, slowdown=None):
    """Seconds of compute lost to a collective that ran beside it: the fraction of compute throughput the
    NCCL kernels take (``slowdown``) times the time they overlapped it, i.e. the part of the collective that
    was hidden, ``total - exposed`` (a collective that runs alone steals nothing). Arrays ok.

    >>> round(float(stolen_compute_s(10e-3, 4e-3)) * 1e3, 3)   # 6 ms hidden x 18.9%
    1.134
    >>> float(stolen_compute_s(1.0, 1.0))
    0.0
    """
    slowdown = COMPUTE_SLOWDOWN_WHILE_OVERLAPPED if slowdown is None else slowdown
    return slowdown * num.maximum(0.0, num.arr(total_comm_s) - exposed_comm_s)


def all_to_all_time_s(num_bytes, group_size, local_ranks, nvlink_busbw_bytes_per_s, net_bytes_per_s_per_gpu,
                      measured=None):
    """Seconds for an all-to-all of ``num_bytes`` per rank over ``group_size`` ranks, ``local_ranks``
    of them on each node: each rank sends (n - r)/n of its buffer over its own NIC and (r - 1)/n
    over NVLink, concurrently (no ring shares the NICs here, unlike all-reduce). ``measured``: a
    calibrated :class:`Measured` whose latency replaces the base latency and the NVLink hops.

    >>> round(float(all_to_all_time_s(1e9, 16, 8, 370e9, 47e9)) * 1e3, 2)  # 16 ranks on 2 DGX H100
    10.65
    """
    n = np.asarray(group_size, dtype=float)
    r = np.minimum(np.asarray(local_ranks, dtype=float), n)
    t_net = (n - r) / n * num_bytes / net_bytes_per_s_per_gpu + np.where(n > r, (n / r - 1) * A2A_PEER_NET_S, 0.0)
    if measured is None or measured.alpha_s is None:
        t_nvl = (r - 1) / n * num_bytes / nvlink_busbw_bytes_per_s + (r - 1) * A2A_PEER_NVLINK_S
        return np.where(n > 1, np.maximum(t_net, t_nvl) + A2A_BASE_S, 0.0)
    t_nvl = (r - 1) / n * num_bytes / nvlink_busbw_bytes_per_s
    return np.where(n > 1, np.maximum(t_net, t_nvl) + measured.alpha_s, 0.0)
