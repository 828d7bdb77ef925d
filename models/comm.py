"""Communication costs of one iteration: rank placement (which dimension sits on NVLink),
group bandwidths, the per-layer TP/SP, CP and EP collectives and what of them is exposed,
and the data-parallel / ZeRO collectives (models.parallel.zero owns their exposure).
Pure functions over numpy arrays of plan fields (``a``).
"""

from __future__ import annotations

import math

import numpy as np

from models import collectives as coll
from models import finetune
from models import memory as mem
from models import numeric as num
from models.hardware import Cluster
from models.layer import ATTN_BWD_FLOP_RATIO
from models.parallel import context, data, expert, tensor, zero
from models.plan import PLACEMENT_DIMS, PLACEMENTS
from models.transformer import Transformer

# _PRECEDES[code, i, j]: in placement PLACEMENTS[code], dimension j sits inside dimension i.
_PRECEDES = np.array([[[o.index(dj) < o.index(di) for dj in PLACEMENT_DIMS] for di in PLACEMENT_DIMS]
                      for o in (p.split("-") for p in PLACEMENTS)])
# Pure functions of a few plan integers in models.parallel, whose numpy formulas cost microseconds on one number.
_dp_comm_group = num.memo(data.dp_comm_group)
_tp_edge_allreduces = num.memo(tensor.tp_edge_allreduces)
_PRECEDES_ROWS = tuple(tuple(tuple(row) for row in p) for p in _PRECEDES.tolist())


def placement_strides(code, tp, cp, dp, pp):
    """Rank distance between neighbours along tp, cp, dp, pp (arrays ok) for placement ``code``
    (an index into models.plan.PLACEMENTS): the product of the sizes of the dimensions inside it.

    >>> [int(x) for x in placement_strides(0, 8, 2, 4, 16)]  # Megatron order: tp, cp, dp, pp
    [1, 8, 16, 64]
    >>> [int(x) for x in placement_strides(PLACEMENTS.index("dp-tp-cp-pp"), 8, 2, 4, 16)]
    [4, 32, 1, 64]
    """
    if coll.scalars(code, tp, cp, dp, pp):   # one plan: the product in ints, no array stacking
        sizes1, prec1 = (tp, cp, dp, pp), _PRECEDES_ROWS[int(code)]
        return tuple(math.prod(sz for sz, inside in zip(sizes1, row) if inside) for row in prec1)
    sizes = np.stack(np.broadcast_arrays(tp, cp, dp, pp), axis=-1)
    prec = _PRECEDES[np.asarray(code)]
    return tuple(np.moveaxis(np.prod(np.where(prec, sizes[..., None, :], 1), axis=-1), -1, 0))


def measured_collective(cl: Cluster, kind: str):
    """What a measured profile says about ``kind`` collectives (models.collectives.Measured: fitted
    latency, timed sizes), or None: models.collectives' hop model and the cluster's bandwidths."""
    p = cl.profile
    return p.collective(kind) if p is not None and hasattr(p, "collective") else None


def busbw_ratio(cl: Cluster, kind: str) -> float:
    """A measured profile's bus bandwidth of ``kind`` relative to all-reduce (1 without one)."""
    p = cl.profile
    return p.busbw_ratio(kind) if p is not None and hasattr(p, "busbw_ratio") else 1.0


def group_bandwidth(cl: Cluster, group, stride, local=None):
    """(bus bytes/s, spans nodes) for a group of ``group`` ranks at rank distance ``stride``, or with
    ``local`` members per node (a group over several placement dimensions, e.g. dp x cp)."""
    gpn, nvlink_bw, net_bw = _links(cl)
    local = coll.ranks_per_node(group, stride, gpn) if local is None else local
    bw = coll.group_bus_bytes_per_s(group, stride, gpn, nvlink_bw, net_bw, local)
    return bw, group > local


@num.per_spec
def _links(cl: Cluster) -> tuple:
    """(GPUs per NVLink domain, NVLink bus bytes/s, network bytes/s per GPU) of a cluster."""
    return cl.node.nvlink_domain_gpus, cl.gpu.nvlink_busbw_bytes_per_s, cl.net_bytes_per_s_per_gpu


def cp_ring_s(model: Transformer, cl: Cluster, a, stride_cp, bpe):
    """Seconds of one layer's K/V ring over the cp ranks at rank distance ``stride_cp`` (c-1 steps)."""
    cp = a["cp"]
    cp_bw, cp_spans = group_bandwidth(cl, cp, stride_cp)
    kv = context.kv_block_bytes(a["micro_batch_size"], model.seq_len, model.num_kv_heads, model.dh, a["tp"], cp, bpe)
    return context.ring_steps(cp) * coll.collective_time_s("send_recv", kv, cp, cp_bw, cp_spans,
                                                           measured_collective(cl, "send_recv"))


def cp_exposed_s(model: Transformer, cl: Cluster, a, stride_cp, attn_fwd_s, bpe):
    """(forward, backward) seconds per layer and micro-batch the CP ring costs (models.parallel.context):
    what sticks out beyond the attention it overlaps, plus the attention it slows while hidden
    (models.collectives.stolen_compute_s)."""
    ring = cp_ring_s(model, cl, a, stride_cp, bpe)
    rc = num.as_float(a["recompute"] == 2)
    fwd, bwd = context.exposed_ring_s(ring, attn_fwd_s, ATTN_BWD_FLOP_RATIO * attn_fwd_s, rc)
    return fwd + coll.stolen_compute_s(ring, fwd), bwd + coll.stolen_compute_s((2 + rc) * ring, bwd)


def tp_layer_cost_s(tp_total_s, gemms_fwd_s, overlap_tp_comm):
    """Seconds one layer's TP/SP collectives (``tp_total_s``) cost: all of them, or with overlap_tp_comm
    what sticks out beyond the ~3x forward GEMMs they hide behind plus the compute they steal while
    hidden (models.collectives.stolen_compute_s)."""
    exposed = num.where(overlap_tp_comm, num.maximum(0, tp_total_s - 3 * gemms_fwd_s), tp_total_s)
    return exposed + coll.stolen_compute_s(tp_total_s, exposed)


def expert_layout(a, strides):
    """(expert_tp, EP rank stride, expert-DP size, expert-DP stride) of the plan's expert layers
    (models.parallel.expert). Without folding (expert_tp = tp) the EP group is consecutive DP ranks and the
    expert-DP group the DP ranks beyond it (Megatron); folded, Megatron-Core orders the expert ranks etp,
    ep, edp from the innermost (parallel_state expert rank generator "tp-ep-dp"), so the EP group follows
    the expert_tp ranks inside the tensor-parallel ranks first."""
    tp, cp, dp, ep = a["tp"], a["cp"], a["dp"], a["ep"]
    s_tp, _, s_dp, _ = strides
    etp = expert.expert_tp(tp, a.get("expert_tp", 0))
    s_ep = num.where(num.arr(etp) == tp, s_dp, s_tp * etp)
    return etp, s_ep, expert.expert_dp_size(tp, cp, dp, ep, etp), s_ep * ep


def folded_tp_factor(model: Transformer, cl: Cluster, a, strides, bpe, t_tp=None):
    """Share of a layer's TP collective time left when the experts are folded (expert_tp < tp): the MoE
    layers' MLP collectives (half of each such layer's) run over the expert_tp ranks instead of tp; 1 when
    not folded. Both the estimate and the simulator scale a layer's TP collectives by it."""
    tp, cp, mb, s = a["tp"], a["cp"], a["micro_batch_size"], model.seq_len
    s_tp = strides[0]
    etp = expert.expert_tp(tp, a.get("expert_tp", 0))
    nbytes = tensor.tp_collective_bytes(mb, s, model.hidden, cp, bpe)
    ar = measured_collective(cl, "all_reduce")
    if t_tp is None:
        t_tp = coll.collective_time_s("all_reduce", nbytes, tp, *group_bandwidth(cl, tp, s_tp), ar)
    t_etp = coll.collective_time_s("all_reduce", nbytes, etp, *group_bandwidth(cl, etp, s_tp), ar)
    share = 0.5 * model.num_moe_layers / model.num_layers
    ratio = num.where(t_tp > 0, t_etp / num.maximum(t_tp, 1e-30), 1.0)
    return num.where(num.arr(etp) == tp, 1.0, 1 - share * (1 - ratio))


def layer_comm_s(model: Transformer, cl: Cluster, a, km, strides, times, bpe):
    """Exposed TP/SP, CP and EP seconds of one layer for one micro-batch on one rank (each with the compute
    its hidden part steals, models.collectives.stolen_compute_s), and the TP seconds outside the layers per
    micro-batch (embedding, output layer, loss)."""
    tp, cp, ep, mb, s = a["tp"], a["cp"], a["ep"], a["micro_batch_size"], model.seq_len
    s_tp, s_cp, s_dp, _ = strides
    fwd, bwd, rcmp, gemms_fwd, attn_fwd = times
    rc_full = num.as_float(a["recompute"] == 2)
    # TP / SP collectives: 4 (+2 recompute) all-reduce equivalents per layer
    tp_bw, tp_spans = group_bandwidth(cl, tp, s_tp)
    measured_ar = measured_collective(cl, "all_reduce")
    t_tp = coll.collective_time_s("all_reduce", tensor.tp_collective_bytes(mb, s, model.hidden, cp, bpe),
                                  tp, tp_bw, tp_spans, measured_ar)
    tp_layer = tensor.tp_allreduces_per_layer(rc_full) * t_tp
    tp_layer = tp_layer_cost_s(tp_layer, gemms_fwd, a["overlap_tp_comm"])
    # outside the layers: embedding / output-layer all-reduces and the cross-entropy's, per micro-batch
    tp_edge = _tp_edge_allreduces(a["pp"]) * t_tp + coll.collective_time_s(
        "all_reduce", tensor.TP_LOSS_ALLREDUCES * tensor.tp_loss_collective_bytes(mb, s, cp), tp, tp_bw, tp_spans,
        measured_ar, tensor.TP_LOSS_ALLREDUCES)
    # CP ring attention: (c-1) K/V block exchanges per layer, hidden behind attention
    cp_layer = 0.0   # cp = 1: no ring
    if num.any_nonzero(num.arr(cp) != 1):
        cp_fwd, cp_bwd = cp_exposed_s(model, cl, a, s_cp, attn_fwd, bpe)
        cp_layer = cp_fwd + cp_bwd
    if not model.is_moe:
        return tp_layer, cp_layer, num.zeros_like(tp_layer), tp_edge
    etp, s_ep, _, _ = expert_layout(a, strides)
    if num.any_nonzero(num.arr(etp) != tp):
        tp_layer = tp_layer * folded_tp_factor(model, cl, a, strides, bpe, t_tp)
    # EP all-to-alls: 4 (+2) per MoE layer over the EP group (expert_layout); an expert_tp group routes
    # etp / tp of its tensor-parallel group's tokens
    a2a = expert.all_to_all_bytes(mb, s, model.hidden, model.top_k, model.capacity_factor, cp, bpe) * \
        expert.tokens_share(tp, etp)
    local = coll.ranks_per_node(ep, s_ep, cl.node.nvlink_domain_gpus)
    ep_layer = model.num_moe_layers / model.num_layers * expert.all_to_alls_per_moe_layer(rc_full) * \
        coll.all_to_all_time_s(a2a, ep, local, cl.gpu.nvlink_busbw_bytes_per_s * busbw_ratio(cl, "all_to_all"),
                               cl.net_bytes_per_s_per_gpu, measured_collective(cl, "all_to_all"))
    # Overlapped dispatch/combine (DeepSeek-V3 DualPipe, Sec. 3.2.1; Megatron-Core a2a overlap) hides the
    # all-to-alls behind the other micro-batch's layer compute; only what exceeds it stays exposed.
    overlap_ep = num.arr(a.get("overlap_ep_comm", False))
    ep_exposed = num.where(overlap_ep, num.maximum(0.0, ep_layer - (fwd + bwd + rcmp)), ep_layer)
    return tp_layer, cp_layer, ep_exposed + coll.stolen_compute_s(ep_layer, ep_exposed), tp_edge


def dp_groups(cl: Cluster, a, strides):
    """The gradient-reduction groups: ((dp*cp ranks, bus bytes/s, spans nodes, members per node),
    (expert-data-parallel ranks, bus bytes/s, spans nodes, members per node))."""
    dp, cp = a["dp"], a["cp"]
    _, s_cp, s_dp, _ = strides
    gpn = cl.node.nvlink_domain_gpus
    dpcp_all = _dp_comm_group(dp, cp)
    # gradients reduce over the dp x cp ranks: their members per node multiply (strides nest); hybrid
    # sharding (models.parallel.zero.shard_size): over a group of consecutive ones of them
    dpcp = num.where(num.arr(a.get("zero_stage", 0)) >= 1, zero.shard_size(dpcp_all, a.get("shard_group", 0)),
                    dpcp_all)
    dpcp_local = num.minimum(coll.ranks_per_node(cp, s_cp, gpn) * coll.ranks_per_node(dp, s_dp, gpn), dpcp)
    _, _, edp, s_edp = expert_layout(a, strides)
    edp_local = coll.ranks_per_node(edp, s_edp, gpn)
    return ((dpcp, *group_bandwidth(cl, dpcp, s_dp, dpcp_local), dpcp_local),
            (edp, *group_bandwidth(cl, edp, s_edp, edp_local), edp_local))


def dp_bytes_scale(kind: str, weight_bytes=2.0, grad_reduce_fp32=False, fp8_param_gather=False):
    """Bytes a DP/ZeRO collective of ``kind`` moves per parameter, over the 16-bit count (arrays ok): weights and
    gradients as held (``weight_bytes``: 4 in fp32 training); a reduction in fp32 under ``grad_reduce_fp32``
    (4 bytes a gradient, whatever the weights); an all-gather in fp8 under ``fp8_param_gather`` (half).
    The estimate (:func:`dp_comm_s`) and the simulator (simulator/des/program.py) both take it from here.

    >>> dp_bytes_scale("reduce_scatter", 2.0, True), dp_bytes_scale("all_reduce", 4.0, True)
    (2.0, 2.0)
    >>> dp_bytes_scale("all_gather", 2.0, True, True), dp_bytes_scale("all_gather", 4.0)
    (0.5, 2.0)
    """
    w = weight_bytes / 2.0
    if kind == "all_gather":
        return w if num.is_num(fp8_param_gather) and not fp8_param_gather else w * num.where(fp8_param_gather, 0.5, 1.0)
    return w if num.is_num(grad_reduce_fp32) and not grad_reduce_fp32 else num.where(grad_reduce_fp32, 2.0, w)


def _scaled(x, scale):
    """``x`` times ``scale``, ``x`` itself when the scale is the number 1 (the common case, kept copy-free)."""
    return x if num.is_num(scale) and scale == 1.0 else x * scale


def dp_collective_s(cl: Cluster, kind: str, nonexp, exp, groups, count_nonexp, count_exp):
    """Seconds of the ``kind`` collectives over a rank's weights: ``count_nonexp`` over the dp*cp
    group for the non-expert ones, ``count_exp`` over the expert-data-parallel group."""
    r, lat = busbw_ratio(cl, kind), measured_collective(cl, kind)
    (g1, bw1, sp1, l1), (g2, bw2, sp2, l2) = groups
    b1, b2 = zero.grad_sync_bytes(nonexp), zero.grad_sync_bytes(exp)
    count2 = count_exp * (b2 > 0)   # (none without expert weights: a dense model)
    return (coll.collective_time_s(kind, b1, g1, bw1 * r, sp1, lat, count_nonexp, l1)
            + (0.0 if num.is_num(count2) and not count2 and lat is None else
               coll.collective_time_s(kind, b2, g2, bw2 * r, sp2, lat, count2, l2)))


def replica_group(cl: Cluster, a, strides):
    """Hybrid sharding's cross-replica group (models.parallel.zero.replica_size): (ranks, bus bytes/s, spans
    nodes, members per node). Its members sit one shard group apart; a node holding l of the dp*cp ranks
    holds l / shard of them (at least one)."""
    _, s_cp, s_dp, _ = strides
    gpn = cl.node.nvlink_domain_gpus
    dpcp_all = _dp_comm_group(a["dp"], a["cp"])
    shard = num.where(num.arr(a.get("zero_stage", 0)) >= 1, zero.shard_size(dpcp_all, a.get("shard_group", 0)),
                     dpcp_all)
    rep = dpcp_all // shard
    local = num.maximum(1, coll.ranks_per_node(a["cp"], s_cp, gpn) * coll.ranks_per_node(a["dp"], s_dp, gpn) // shard)
    local = num.minimum(local, rep)
    return (rep, *group_bandwidth(cl, rep, s_dp, local), local)


def replica_allreduce_s(cl: Cluster, nonexp, groups, rep, count):
    """Seconds of hybrid sharding's all-reduces of the gradient shards (1/shard of ``nonexp`` parameters'
    gradients) across the replicas ``rep``, in ``count`` collectives (one per layer); 0 without replicas."""
    g, bw, spans, local = rep
    shard = groups[0][0]
    return coll.collective_time_s("all_reduce", zero.grad_sync_bytes(nonexp) / shard, g, bw * busbw_ratio(
        cl, "all_reduce"), spans, measured_collective(cl, "all_reduce"), count, local)


def dp_comm_s(model: Transformer, cl: Cluster, a, strides, layers, fwd_s, bwd_s, wgrad_s=0.0):
    """(exposed, total) DP/ZeRO communication seconds per iteration on the heaviest stage (``layers``
    layers, the embedding and the output layer), its (non-expert, expert) parameters and groups.
    ``fwd_s`` / ``bwd_s`` / ``wgrad_s``: one micro-batch's forward, backward and (ZB-H1, else 0) separate
    weight-gradient pass: the overlap windows (models.parallel.zero.exposed_s)."""
    pp, z = a["pp"], a["zero_stage"]
    m = a["global_batch_size"] // (a["micro_batch_size"] * a["dp"])
    nonexp, exp = mem.stage_params(model, a["tp"], a["pp"], a["ep"], layers, pp == 1, True,
                                   expert.expert_tp(a["tp"], a.get("expert_tp", 0)))
    groups = dp_groups(cl, a, strides)
    # LoRA: the adapters' gradients only (full training: all of them)
    g1, g2 = (finetune.grad_sync_params(model, a, layers, nonexp, exp) if num.any_nonzero(a.get("finetune", 0))
              else (nonexp, exp))
    # bytes per parameter against the 16-bit count (dp_bytes_scale): as held (buckets count these), reduced
    # (fp32 under grad_reduce_fp32), gathered (fp8 under fp8_param_gather)
    wb = a.get("weight_bytes", 2.0)
    held = dp_bytes_scale("all_gather", wb)
    red = dp_bytes_scale("reduce_scatter", wb, a.get("grad_reduce_fp32", False))
    gat = dp_bytes_scale("all_gather", wb, fp8_param_gather=a.get("fp8_param_gather", False))
    n1 = zero.num_grad_collectives(z, zero.grad_sync_bytes(_scaled(g1, held)), layers)
    n2 = zero.num_grad_collectives(z, zero.grad_sync_bytes(_scaled(g2, held)), layers) * (g2 > 0)
    # one plan's stage needs the all-reduce (ZeRO-0) or the reduce-scatter and all-gather (1-3), not both
    ddp = not num.is_num(z) or z == 0
    gr1, gr2 = _scaled(g1, red), _scaled(g2, red)
    t_ar = dp_collective_s(cl, "all_reduce", gr1, gr2, groups, n1, n2) if ddp else 0.0
    t_rs, t_ag = ((dp_collective_s(cl, k, g, g_, groups, n1, n2) for k, g, g_ in (
        ("reduce_scatter", gr1, gr2), ("all_gather", _scaled(g1, gat), _scaled(g2, gat))))
                  if not num.is_num(z) or z != 0 else (0.0, 0.0))
    if g1 is not nonexp:   # ZeRO-3 gathers every weight, frozen ones too; ZeRO-1/2 only the updated adapters
        t_ag = num.where(num.arr(z) >= 3, dp_collective_s(cl, "all_gather", _scaled(nonexp, gat), _scaled(exp, gat),
                                                          groups, n1, n1 * (exp > 0)),
                         t_ag)
    # hybrid sharding: each reduce-scatter is followed by the all-reduce of its shard across the replicas
    # on the same stream (FSDP HYBRID_SHARD's post-backward hook), so it joins the reduce-scatter's time
    if num.any_nonzero(a.get("shard_group", 0)):   # (full sharding: one replica, nothing to all-reduce)
        t_rs = t_rs + num.where(num.arr(z) >= 1, replica_allreduce_s(cl, gr1, groups, replica_group(cl, a, strides),
                                                                     n1), 0.0)
    gathers = zero.gathers_per_microbatch(a["recompute"] == 2)
    exposed = zero.exposed_s(z, m, t_ar, t_rs, t_ag, n1 + n2, layers, fwd_s, bwd_s, a["overlap_grad_reduce"],
                             a["overlap_param_gather"], a["vpp"], wgrad_s, gathers)
    return exposed, zero.total_s(z, m, t_ar, t_rs, t_ag, gathers), nonexp, exp, groups
