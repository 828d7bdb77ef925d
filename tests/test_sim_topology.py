"""Topology graph, rank placement and the links the symmetric simulation shares."""

import itertools

import networkx as nx
import pytest

from models.hardware import make_cluster
from models.inputs import build_inputs
from simulator.des.program import build_program
from simulator.des.simulate import simulate
from simulator.des.topology import Placement, build_topology, path_links


def test_graph_shape_rails_and_oversubscription():
    cl = make_cluster("h100-sxm-80gb", 64, oversubscription=2.0)
    g = build_topology(cl, nodes_per_unit=32)
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "gpu") == 512
    assert nx.is_connected(g)
    # rail-optimised: NIC k of every node in a unit hangs off leaf (unit, k)
    assert g.has_edge("nic0", "leaf0.0") and g.has_edge("nic15", "leaf0.7") and g.has_edge("nic263", "leaf1.7")
    up = g.edges["leaf0.0", "spine0"]["bytes_per_s"]
    assert up == pytest.approx(32 * cl.node.nic_bytes_per_s_per_gpu / 2.0)
    # same node: NVSwitch path; different unit: through a spine
    assert [e for e in path_links(g, 0, 5) if "nvsw0" in e]
    assert any("spine" in n for e in path_links(g, 0, 300) for n in e)


def test_nvl72_domain():
    g = build_topology(make_cluster("gb200", 2))
    assert g.nodes["gpu71"]["domain"] == 0 and g.nodes["gpu72"]["domain"] == 1


def test_placement_megatron_order_and_errors():
    pl = Placement(tp=8, cp=1, dp=8, pp=16, gpus_per_node=8)
    assert pl.rank(stage=1) == 64 and pl.rank(dp=1) == 8 and pl.stride("pp") == 64
    assert pl.stage_ranks_on_node(0) == 8
    with pytest.raises(ValueError, match="placement.order"):
        Placement(8, 1, 8, 16, 8, order=("tp", "dp", "pp"))
    with pytest.raises(ValueError, match="nodes_per_unit"):
        build_topology(make_cluster("h100-sxm-80gb", 2), nodes_per_unit=0)


def test_tp_across_nodes_is_slower():
    inp = build_inputs(model="llama3-70b", gpu="h100-sxm-80gb", nodes=8, tp=8, pp=4, dp=2, global_batch=32)
    default = simulate(inp.model, inp.cluster, inp.plan)
    spread = simulate(inp.model, inp.cluster, inp.plan, placement_order=("dp", "tp", "cp", "pp"))
    assert spread.exposed_comm_by_kind_s["tp"] > 1.5 * default.exposed_comm_by_kind_s["tp"]


def test_dp_replicas_counted_on_shared_node_links():
    # TP1 DP8 on one node: the eight replicas' all-reduces share the NVLink of their GPUs, and
    # across nodes the node's NICs; the representative flow stands for the groups on its node.
    inp = build_inputs(model="llama3-8b", gpu="h100-sxm-80gb", nodes=2, tp=1, pp=1, dp=16, global_batch=64)
    prog = build_program(inp.model, inp.cluster, inp.plan)
    (bucket, *_) = prog.stages[0].grad_buckets[0]
    assert dict(bucket.links) == {"net.tx0": 1, "net.rx0": 1}   # one 16-rank ring per node, 8 local members
    assert bucket.cap_bytes_per_s == pytest.approx(min(inp.cluster.gpu.nvlink_busbw_bytes_per_s,
                                                       8 * inp.cluster.net_bytes_per_s_per_gpu))


def _stage_ranks_on_node_brute(pl: Placement, stage: int) -> int:
    """The definition: every DP, CP and TP rank of the stage, counted when on the representative's node."""
    n = pl.node(pl.rank(stage))
    return sum(1 for d in range(pl.dp) for c in range(pl.cp) for t in range(pl.tp)
               if pl.node(pl.rank(stage, d, c, t)) == n)


@pytest.mark.parametrize("order", list(itertools.permutations(("tp", "cp", "dp", "pp"))))
def test_stage_ranks_on_node_equals_brute_force(order):
    # all 24 orders, node sizes that do and do not divide the groups (6), the world not a whole
    # number of nodes (3 x 5), NVL72-sized nodes larger than the world
    for tp, cp, dp, pp, gpn in [(8, 1, 4, 4, 8), (2, 3, 5, 3, 8), (4, 2, 3, 2, 6), (1, 1, 16, 2, 8),
                                (4, 1, 2, 3, 72), (1, 3, 5, 1, 4), (8, 2, 2, 8, 4)]:
        pl = Placement(tp, cp, dp, pp, gpn, order)
        for s in range(pp):
            assert pl.stage_ranks_on_node(s) == _stage_ranks_on_node_brute(pl, s), (pl, s)
