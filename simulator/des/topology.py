"""Cluster topology as a networkx graph, rank placement, and the links the simulator shares.

Graph: one node per GPU (``gpu{r}``), one NVSwitch per NVLink domain (``nvsw{d}``: 8-GPU
servers or NVL72-style racks), one NIC per GPU (``nic{r}``), a two-level fat tree of leaf and
spine switches. Rail-optimised wiring (NVIDIA DGX SuperPOD reference architecture): NIC k of
every node in a scalable unit goes to leaf (unit, k). Each leaf has as many uplinks as
downlinks divided by the oversubscription ratio. Edges carry ``bytes_per_s`` (one direction)
and ``latency_s``.

Placement (Megatron order, as models/estimate.py assumes): global rank
``r = t + tp (c + cp (d + dp s))`` for tensor rank t, context rank c, data-parallel rank d and
pipeline stage s: TP innermost (inside a node), PP outermost. ``order`` overrides it.

>>> g = build_topology(make_cluster("h100-sxm-80gb", 2))
>>> g.number_of_nodes(), g.nodes["gpu9"]["node"]
(42, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from models.collectives import ALPHA_NET_S, ALPHA_NVLINK_S
from models.hardware import Cluster, make_cluster  # noqa: F401  (make_cluster used in the doctest)

NODES_PER_UNIT = 32          # DGX SuperPOD scalable unit: 32 nodes per leaf group (reference architecture)
DIMS = ("tp", "cp", "dp", "pp")


def build_topology(cluster: Cluster, nodes_per_unit: int = NODES_PER_UNIT) -> nx.Graph:
    """The networkx graph of ``cluster`` (GPUs, NVSwitches, NICs, rail leaves, spines)."""
    if nodes_per_unit < 1:
        raise ValueError(f"topology.nodes_per_unit: must be >= 1, got {nodes_per_unit}")
    g = nx.Graph()
    gpn, dom = cluster.node.gpus_per_node, cluster.node.nvlink_domain_gpus
    nvl = cluster.gpu.nvlink_bytes_per_s
    nic = cluster.node.nic_bytes_per_s_per_gpu
    units = -(-cluster.num_nodes // nodes_per_unit)
    for r in range(cluster.num_gpus):
        node = r // gpn
        g.add_node(f"gpu{r}", kind="gpu", node=node, domain=r // dom)
        g.add_edge(f"gpu{r}", f"nvsw{r // dom}", bytes_per_s=nvl, latency_s=ALPHA_NVLINK_S, kind="nvlink")
        g.add_edge(f"gpu{r}", f"nic{r}", bytes_per_s=nic, latency_s=0.0, kind="pcie")
        leaf = f"leaf{node // nodes_per_unit}.{r % gpn}"
        g.add_edge(f"nic{r}", leaf, bytes_per_s=nic, latency_s=ALPHA_NET_S / 2, kind="nic")
    for d in range(-(-cluster.num_gpus // dom)):
        g.nodes[f"nvsw{d}"]["kind"] = "nvswitch"
    up = nic * nodes_per_unit / cluster.oversubscription   # leaf uplink capacity, all spines together
    if units > 1:
        for u in range(units):
            for k in range(gpn):
                g.add_edge(f"leaf{u}.{k}", f"spine{k}", bytes_per_s=up, latency_s=ALPHA_NET_S / 2, kind="uplink")
    for n, data in g.nodes(data=True):
        data.setdefault("kind", "nic" if n.startswith("nic") else "switch")
    return g


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the ranks of a plan sit: rank(stage, dp, cp, tp) and node(rank)."""
    tp: int
    cp: int
    dp: int
    pp: int
    gpus_per_node: int
    order: tuple = DIMS          # innermost first

    def __post_init__(self) -> None:
        if sorted(self.order) != sorted(DIMS):
            raise ValueError(f"placement.order: must be a permutation of {', '.join(DIMS)}, got {self.order}")

    def rank(self, stage: int = 0, dp: int = 0, cp: int = 0, tp: int = 0) -> int:
        """Global rank of the GPU at these coordinates."""
        idx = {"tp": tp, "cp": cp, "dp": dp, "pp": stage}
        r, stride = 0, 1
        for d in self.order:
            r += idx[d] * stride
            stride *= getattr(self, d)
        return r

    def stride(self, dim: str) -> int:
        """Rank distance between neighbours along ``dim``."""
        s = 1
        for d in self.order:
            if d == dim:
                return s
            s *= getattr(self, d)
        raise ValueError(f"placement: unknown dimension {dim!r}")

    def node(self, rank: int) -> int:
        return rank // self.gpus_per_node

    def stage_ranks_on_node(self, stage: int) -> int:
        """GPUs of pipeline stage ``stage`` on the node of its representative rank (dp=cp=tp=0).

        Walks that node's ranks (O(gpus_per_node), not O(dp cp tp)): a rank belongs to the stage
        when its pipeline coordinate, ``(r // stride("pp")) % pp``, is ``stage``.

        >>> Placement(tp=4, cp=1, dp=4, pp=2, gpus_per_node=8).stage_ranks_on_node(1)
        8
        >>> Placement(tp=4, cp=1, dp=4, pp=2, gpus_per_node=8, order=("tp", "pp", "cp", "dp")).stage_ranks_on_node(1)
        4
        """
        gpn, world = self.gpus_per_node, self.tp * self.cp * self.dp * self.pp
        first, s = self.node(self.rank(stage)) * gpn, self.stride("pp")
        return sum(1 for r in range(first, min(first + gpn, world)) if (r // s) % self.pp == stage)


def path_links(graph: nx.Graph, src: int, dst: int) -> list[tuple[str, str]]:
    """The edges of a shortest path between GPU ranks ``src`` and ``dst``."""
    p = nx.shortest_path(graph, f"gpu{src}", f"gpu{dst}")
    return list(zip(p, p[1:]))
