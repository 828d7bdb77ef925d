"""The program of one iteration: per pipeline stage, the ordered ops (from the schedule) and
what each costs, all taken from models/ (the engine only decides *when*).

One op per layer chunk per micro-batch (the coarsening that keeps big clusters fast):
forward, backward (with recompute), and for ZB-H1 the weight gradient W split off the
backward (W = the weight-gradient GEMMs, as many FLOPs as the forward GEMMs; Qi et al. 2023
Sec. 2). Communication is described by :class:`Comm` records: the bytes each member puts on
its bottleneck link (nccl-tests bus-bandwidth convention, models/collectives.py), the
alpha-beta latency, the links it loads, and the bus bandwidth the analytical model gives the
group (its rate cap). Alone on its links a Comm takes exactly ``collective_time_s``.

Symmetry: one representative rank per stage (tp = dp = cp rank 0). TP ranks of a stage do
identical work; the dp replicas run the same schedule, so their flows on a shared node's NICs
enter as a multiplicity ``weight`` on the representative's flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models import collectives as coll
from models import estimate as est_mod
from models import finetune
from models import flops as fl
from models import memory as mem
from models.hardware import Cluster
from models.parallel import expert, pipeline, tensor, zero
from models.plan import DTYPE_BYTES, PLACEMENTS, WEIGHT_BYTES, Plan, Schedule
from models.transformer import Transformer
from simulator.des.schedules import stage_orders
from simulator.des.topology import Placement

# ZB-H1's W frees the share of a layer's activations only the weight gradient needs (models.memory).
W_ACTIVATION_FRACTION = mem.W_ACTIVATION_FRACTION


@dataclass(frozen=True, slots=True)
class Comm:
    kind: str                     # tp | cp | ep | pp | dp
    op: str                       # all_reduce | reduce_scatter | all_gather | all_to_all | send_recv
    wire_bytes: float             # bytes each member moves over its bottleneck link
    latency_s: float              # alpha terms (hops, base latency): not bandwidth-bound
    links: tuple                  # ((link name, weight), ...): weight = identical flows it stands for
    cap_bytes_per_s: float        # bus bandwidth the analytical model gives the group

    @property
    def alone_s(self) -> float:
        """Seconds with nothing else on its links (= models.collectives.collective_time_s)."""
        return self.latency_s + (self.wire_bytes / self.cap_bytes_per_s if self.wire_bytes > 0 else 0.0)


@dataclass(frozen=True, slots=True)
class OpCost:
    compute_s: float              # kernel time on the stage's GPU
    flops: float                  # FLOPs on one rank
    comms: tuple                  # TP/CP/EP Comms run after (or overlapped with) the compute, in order
    act_bytes: float              # activations this op allocates (>0) or frees (<0)
    transient_bytes: float = 0.0  # held only while the op runs (recomputed layer)


@dataclass(frozen=True, slots=True)
class StageProgram:
    stage: int
    rank: int                                   # representative global rank
    order: tuple                                # ((phase, microbatch, chunk), ...)
    costs: dict                                 # (phase, chunk) -> OpCost
    first_layer: tuple                          # first layer index of each chunk
    send: dict                                  # phase -> Comm to the neighbour (None: no send)
    grad_buckets: dict                          # chunk -> (Comm, ...) reduced after the chunk's last backward
    grad_every_microbatch: bool                 # ZeRO-2/3: reduce-scatter after every backward
    gather: dict                                # chunk -> ((first layer Comms), (other layers Comms)): ZeRO-3
    optimizer_s: float
    param_gather: tuple                         # ZeRO-1/2 all-gathers of the updated weights
    static_bytes: float                         # weights + grads + optimizer (+ ZeRO-3 buffers)


@dataclass(frozen=True, slots=True)
class Program:
    stages: tuple                               # StageProgram per stage
    pp: int
    vpp: int
    num_microbatches: int
    schedule: str
    overlap_tp_comm: bool
    overlap_param_gather: bool
    first_fwd_s: float                          # one micro-batch's forward on a stage (hides the param gather)
    notes: tuple = field(default_factory=tuple)
    overlap_ep_comm: bool = False               # EP all-to-alls run beside compute (hidden unless longer)
    overlap_grad_reduce: bool = True            # gradient buckets reduce during the backward, else after it
    # compute seconds lost per second a collective runs beside the compute (models.collectives.stolen_compute_s
    # of one hidden second: it is linear in the hidden time); the engine charges it on the overlap it simulates
    stolen_s_per_overlap_s: float = 0.0


def memory_total_bytes(static_bytes, act_bytes):
    """Allocated bytes of a rank as models.estimate.stage_memory_arrays counts them (models.memory)."""
    return mem.allocated_bytes(static_bytes + act_bytes)


def _comm(kind, op, nbytes, group, bw, spans, links, measured=None, local=None) -> Comm | None:
    """A Comm whose time alone equals collective_time_s(op, nbytes, group, bw, spans, measured, 1, local) (its
    latency part at least 0: a measured collective faster than ``bw`` allows keeps the bandwidth time)."""
    if group <= 1 or nbytes <= 0:
        return None
    total = float(coll.collective_time_s(op, nbytes, group, bw, spans, measured, 1, local))
    frac = (group - 1) / group
    wire = nbytes * {"all_reduce": 2 * frac, "send_recv": 1.0}.get(op, frac)
    return Comm(kind, op, wire, max(0.0, total - wire / bw), tuple(links), float(bw))


def _ep_comm(cluster: Cluster, nbytes, ep, stride, links, links_nvl) -> Comm | None:
    """An all-to-all whose time alone equals collectives.all_to_all_time_s: the cross-node part
    on each rank's own NIC (the node-local part overlaps it on NVLink)."""
    if ep <= 1 or nbytes <= 0:
        return None
    gpn = cluster.node.nvlink_domain_gpus
    r = int(coll.ranks_per_node(ep, stride, gpn))
    net, nvl = cluster.net_bytes_per_s_per_gpu, cluster.gpu.nvlink_busbw_bytes_per_s
    nvl = nvl * est_mod.busbw_ratio(cluster, "all_to_all")   # as models.estimate.layer_comm_s
    total = float(coll.all_to_all_time_s(nbytes, ep, r, nvl, net, est_mod.measured_collective(cluster, "all_to_all")))
    if ep > r:
        wire, cap = (ep - r) / ep * nbytes, net
    else:
        wire, cap, links = (r - 1) / ep * nbytes, nvl, links_nvl
    return Comm("ep", "all_to_all", wire, max(0.0, total - wire / cap), tuple(links), float(cap))


def _scale(c: Comm | None, n: float) -> Comm | None:
    """n back-to-back collectives merged into one flow (same links, n times bytes and latency)."""
    if c is None or n == 0:
        return None
    return Comm(c.kind, c.op, c.wire_bytes * n, c.latency_s * n, c.links, c.cap_bytes_per_s)


def _seq(*cs: Comm | None) -> tuple:
    return tuple(c for c in cs if c is not None)


class _Links:
    """Names and weights of the links a representative rank's flows load."""

    def __init__(self, pl: Placement, cluster: Cluster):
        self.pl, self.cl = pl, cluster

    def group(self, stage, dim, size, stride=None, local=None):
        """Links of a collective along ``dim`` (or at rank distance ``stride``, or with ``local``
        members per node) among ``size`` ranks, from stage ``stage``'s rank."""
        pl, gpn = self.pl, self.cl.node.nvlink_domain_gpus
        r = pl.rank(stage)
        local = int(coll.ranks_per_node(size, stride or pl.stride(dim), gpn)) if local is None else int(local)
        if size <= local:
            return ((f"nvl.tx{r}", 1), (f"nvl.rx{r}", 1))
        # the group's bus bandwidth already counts its ``local`` NICs; the node carries one such
        # flow per group of this stage on it (the other replicas, the other TP ranks)
        w = max(1, pl.stage_ranks_on_node(stage) // local)
        n = pl.node(r)
        return ((f"net.tx{n}", w), (f"net.rx{n}", w))

    def per_rank_nic(self, stage):
        """Links of traffic each rank sends over its own NIC (all-to-all): one flow per rank of the stage."""
        n, w = self.pl.node(self.pl.rank(stage)), self.pl.stage_ranks_on_node(stage)
        return ((f"net.tx{n}", w), (f"net.rx{n}", w))

    def p2p(self, src_stage, dst_stage):
        pl = self.pl
        a, b = pl.rank(src_stage), pl.rank(dst_stage)
        if a // self.cl.node.nvlink_domain_gpus == b // self.cl.node.nvlink_domain_gpus:
            return ((f"nvl.tx{a}", 1), (f"nvl.rx{b}", 1))
        w = pl.stage_ranks_on_node(src_stage)
        return ((f"net.tx{pl.node(a)}", w), (f"net.rx{pl.node(b)}", w))


def link_capacities(cluster: Cluster, pl: Placement) -> dict:
    """Capacity in bytes/s of every link the program can name: per-GPU NVLink (bus bandwidth),
    per-node network (NICs x achieved per-GPU rate, oversubscription folded in as estimate does)."""
    caps = {}
    nvl = cluster.gpu.nvlink_busbw_bytes_per_s
    net = cluster.gpus_per_node * cluster.net_bytes_per_s_per_gpu
    for s in range(pl.pp):          # the representative rank of each stage and its node
        r = pl.rank(s)
        caps[f"nvl.tx{r}"] = caps[f"nvl.rx{r}"] = nvl
        caps[f"net.tx{pl.node(r)}"] = caps[f"net.rx{pl.node(r)}"] = net
    return caps


def _virtual_layers(num_layers, pp, vpp):
    counts = [int(pipeline.chunk_layers(num_layers, v, pp, vpp)) for v in range(pp * vpp)]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return counts, starts


@dataclass(frozen=True, slots=True)
class LayerCosts:
    """Per-layer, per-micro-batch costs on one rank, from models/ (estimate's own formulas)."""
    fwd_s: float                  # forward kernels
    bwd_s: float                  # backward kernels incl. recompute
    wgrad_s: float                # weight-gradient GEMMs (ZB-H1's W): the forward GEMMs' FLOPs
    logits_fwd_s: float           # output layer + loss, forward, on the last stage
    logits_bwd_s: float           # output layer + loss, backward
    flops: float                  # forward FLOPs of one layer on one rank
    act_bytes: float              # activations a layer keeps for backward
    full_act_bytes: float         # a recomputed layer's activations + its backward's gradients (transient)
    out_act_bytes: float          # output layer's activations (last stage)
    tp_bytes: float               # one TP all-reduce buffer
    tp_loss_bytes: float          # one of the vocab-parallel cross-entropy's all-reduces
    cp_fwd_s: float               # exposed CP ring time per layer, forward
    cp_bwd_s: float               # exposed CP ring time per layer, backward (+ recompute)
    a2a_bytes: float              # one MoE all-to-all buffer
    p2p_bytes: float              # one pipeline send
    rc_full: float                # 1.0 under full recompute
    moe_frac: float               # share of MoE layers


def layer_costs(model: Transformer, cluster: Cluster, plan: Plan) -> LayerCosts:
    """What one layer of ``plan`` costs per micro-batch: models.estimate's kernel times and exposed CP
    ring, models.memory's activation bytes and the collective buffer sizes of models/parallel."""
    a = {k: np.asarray(v) for k, v in est_mod.plan_arrays(plan).items()}
    km = est_mod.kernels(cluster, plan.dtype)
    tp, cp, mb, s = plan.tp, plan.cp, plan.micro_batch_size, model.seq_len
    bpe = mem.activation_bytes_per_elem(DTYPE_BYTES[plan.dtype], plan.dtype)
    rc = int(plan.recompute)
    fwd, bwd, rcmp, gemms_fwd, attn_fwd = (float(x) for x in est_mod.layer_times(model, km, a))
    flash = plan.attention != "unfused"
    strides = est_mod.placement_strides(PLACEMENTS.index(plan.placement), tp, cp, plan.dp, plan.pp)
    cp_f, cp_b = (float(x) for x in est_mod.cp_exposed_s(model, cluster, a, strides[1], attn_fwd, bpe))
    logits_f, logits_b = (float(x) for x in est_mod.logits_split_s(model, km, mb * s / cp, tp, plan.fused_loss,
                                                                   plan.train_metric_passes))
    logits_b -= float(finetune.frozen_output_dw_s(model, km, a, mb * s / cp, tp))   # LoRA: lm_head frozen, no dW
    act_scale = float(a["act_scale"])   # fp32 training: 4-byte activations (models.estimate.dtype_columns)
    return LayerCosts(
        fwd_s=fwd, bwd_s=bwd + rcmp, wgrad_s=float(gemms_fwd), logits_fwd_s=logits_f, logits_bwd_s=logits_b,
        flops=float((fl.forward_flops(model, mb, s) - fl.logits_flops(model, mb * s)) / model.num_layers / tp),
        act_bytes=act_scale * float(mem.recompute_share_activation_bytes(model, mb, s, tp, plan.sp, rc, flash, cp,
                                                                         plan.recompute_fraction))
        + float(est_mod.eager_norm_activation_bytes(model, a, mb, s, tp, plan.sp, cp, rc)),
        full_act_bytes=act_scale * float(mem.recompute_backward_transient_bytes(model, mb, s, tp, plan.sp, flash, cp)),
        out_act_bytes=act_scale * float(mem.output_layer_activation_bytes(model, mb, s, tp, plan.sp, cp,
                                                                          plan.fused_loss)),
        tp_bytes=float(tensor.tp_collective_bytes(mb, s, model.hidden, cp, bpe)
                       * (est_mod.folded_tp_factor(model, cluster, a, strides, bpe) if model.is_moe else 1.0)),
        tp_loss_bytes=float(tensor.tp_loss_collective_bytes(mb, s, cp)),
        cp_fwd_s=cp_f, cp_bwd_s=cp_b,
        a2a_bytes=float(expert.all_to_all_bytes(mb, s, model.hidden, model.top_k, model.capacity_factor, cp, bpe)
                        * expert.tokens_share(tp, expert.expert_tp(tp, plan.expert_tp))) if model.is_moe else 0.0,
        p2p_bytes=float(pipeline.p2p_bytes_per_microbatch(mb, s, model.hidden, tp, cp, True, bpe)),
        rc_full=float(rc == 2), moe_frac=model.num_moe_layers / model.num_layers)


def _group_bw(cluster: Cluster, stride: int, size: int, local=None) -> tuple[float, bool]:
    """(bus bytes/s, spans nodes) of a group of ``size`` ranks at rank distance ``stride`` (or with
    ``local`` members per node), as the analytical model sees it."""
    bw, spans = est_mod.group_bandwidth(cluster, size, stride, local)
    return float(bw), bool(spans)


def _stage_comms(cluster: Cluster, plan: Plan, pl: Placement, links: _Links, lc: LayerCosts, st: int) -> dict:
    """Templates of one collective of each kind from stage ``st``'s rank (None where the group is 1)."""
    tp, cp, pp, ep = plan.tp, plan.cp, plan.pp, plan.ep
    s_dp = pl.stride("dp")
    strides = tuple(pl.stride(d) for d in ("tp", "cp", "dp", "pp"))
    a_dp = {"dp": plan.dp, "cp": cp, "ep": ep, "tp": tp, "expert_tp": plan.expert_tp,
            "zero_stage": int(plan.zero_stage), "shard_group": plan.shard_group}
    # EP groups: consecutive DP ranks (Megatron), or after the expert_tp ranks when folded (models.comm.expert_layout)
    _, s_ep, _, s_edp = (np.asarray(x).item() for x in est_mod.expert_layout(a_dp, strides))
    (dpcp, dp_bw, dp_spans, dpcp_local), (edp, edp_bw, edp_spans, edp_local) = (
        tuple(np.asarray(x).item() for x in g) for g in est_mod.dp_groups(cluster, a_dp, strides))
    rep, rep_bw, rep_spans, rep_local = (np.asarray(x).item() for x in est_mod.replica_group(cluster, a_dp, strides))
    ep1 = _ep_comm(cluster, lc.a2a_bytes, ep, s_ep, links.per_rank_nic(st), links.group(st, "dp", 1))
    pp_bw = _group_bw(cluster, pl.stride("pp"), pp)
    lat = {k: est_mod.measured_collective(cluster, k) for k in coll.KINDS}
    tp_bw = _group_bw(cluster, pl.stride("tp"), tp)
    return {
        "tp": _comm("tp", "all_reduce", lc.tp_bytes, tp, *tp_bw, links.group(st, "tp", tp), lat["all_reduce"]),
        "tp_loss": _comm("tp", "all_reduce", lc.tp_loss_bytes, tp, *tp_bw, links.group(st, "tp", tp), lat["all_reduce"]),
        "cp": _comm("cp", "send_recv", 1.0, cp, *_group_bw(cluster, pl.stride("cp"), cp), links.group(st, "cp", cp),
                    lat["send_recv"]),
        "ep": ep1,
        "dp": (dpcp, dp_bw, dp_spans, links.group(st, "dp", dpcp, s_dp, dpcp_local), dpcp_local),
        "edp": (edp, edp_bw, edp_spans, links.group(st, "dp", edp, s_edp), edp_local),
        # hybrid sharding's cross-replica group (models.comm.replica_group): all-reduces the gradient shards
        "rep": (rep, rep_bw, rep_spans, links.group(st, "dp", rep, s_dp * dpcp, rep_local), rep_local),
        "latency": lat,
        "busbw_ratio": {k: est_mod.busbw_ratio(cluster, k) for k in coll.KINDS},
        # bytes a DP collective moves per parameter against the 16-bit count (models.comm.dp_bytes_scale): as held
        # (bucket counts), reduced, gathered
        "held_scale": float(est_mod.dp_bytes_scale("all_gather", WEIGHT_BYTES[plan.dtype])),
        "reduce_scale": float(est_mod.dp_bytes_scale("reduce_scatter", WEIGHT_BYTES[plan.dtype], plan.grad_reduce_fp32)),
        "gather_scale": float(est_mod.dp_bytes_scale("all_gather", WEIGHT_BYTES[plan.dtype],
                                                     fp8_param_gather=plan.fp8_param_gather)),
        "send_F": _comm("pp", "send_recv", lc.p2p_bytes, pp, *pp_bw, links.p2p(st, (st + 1) % pp), lat["send_recv"])
        if pp > 1 else None,
        "send_B": _comm("pp", "send_recv", lc.p2p_bytes, pp, *pp_bw, links.p2p(st, (st - 1) % pp), lat["send_recv"])
        if pp > 1 else None,
    }


def _cp_exposed(cp1: Comm | None, exposed_s: float) -> Comm | None:
    """CP ring traffic enters the network as its exposed (not hidden behind attention) part."""
    if cp1 is None or exposed_s <= 0:
        return None
    return Comm("cp", "send_recv", exposed_s * cp1.cap_bytes_per_s, 0.0, cp1.links, cp1.cap_bytes_per_s)


def _chunk_costs(lc: LayerCosts, comms: dict, num_layers: int, last: bool, zb: bool, c: int, first: bool = False,
                 overlap_ep: bool = False) -> dict:
    """OpCosts of a chunk of ``num_layers`` layers: F, B (and W for ZB-H1). The first chunk's
    forward adds the embedding's TP all-reduce; the last chunk the cross-entropy's (forward) and the
    output layer's input-gradient all-reduce (backward), as models.parallel.tensor counts them.
    ``overlap_ep``: the MoE all-to-alls of a layer's forward and backward hide behind the pair's compute
    together (DualPipe runs one micro-batch's forward beside another's backward, DeepSeek-V3 Sec. 3.2.1;
    models.comm.layer_comm_s): F and B carry them in proportion to their kernel time."""
    L, rc = num_layers, lc.rc_full
    ep_n = lc.moe_frac * L
    ep_f, ep_b = 2 * ep_n, (2 + 2 * rc) * ep_n
    if overlap_ep and lc.fwd_s + lc.bwd_s > 0:
        ep_f, ep_b = (ep_f + ep_b) * lc.fwd_s / (lc.fwd_s + lc.bwd_s), (ep_f + ep_b) * lc.bwd_s / (lc.fwd_s + lc.bwd_s)
    tp_f = 2 * L + first
    comm_f = _seq(_scale(comms["tp"], tp_f), _scale(comms["tp_loss"], tensor.TP_LOSS_ALLREDUCES * last),
                  _cp_exposed(comms["cp"], L * lc.cp_fwd_s), _scale(comms["ep"], ep_f))
    comm_b = _seq(_scale(comms["tp"], (2 + 2 * rc) * L + last), _cp_exposed(comms["cp"], L * lc.cp_bwd_s),
                  _scale(comms["ep"], ep_b))
    layer_act, out_act = L * lc.act_bytes, (lc.out_act_bytes if last else 0.0)
    act = layer_act + out_act
    f_s = L * lc.fwd_s + (lc.logits_fwd_s if last else 0.0)
    b_s = L * lc.bwd_s + (lc.logits_bwd_s if last else 0.0)
    # the output layer's tensors are freed before the blocks' backward (models.estimate: max of the two)
    transient = (max(0.0, lc.full_act_bytes - lc.out_act_bytes) if last else lc.full_act_bytes) if rc else 0.0
    out = {("F", c): OpCost(f_s, L * lc.flops, comm_f, act)}
    if zb:
        w_s = L * lc.wgrad_s
        # B frees the output layer's tensors and the layers' non-W share; W the linear layers' inputs
        out[("B", c)] = OpCost(b_s - w_s, L * lc.flops, comm_b, -(layer_act * (1 - W_ACTIVATION_FRACTION) + out_act),
                               transient)
        out[("W", c)] = OpCost(w_s, L * lc.flops, (), -layer_act * W_ACTIVATION_FRACTION)
    else:
        out[("B", c)] = OpCost(b_s, (2 + rc) * L * lc.flops, comm_b, -act, transient)
    return out


def _dp_comms(kind: str, comms: dict, nonexp: float, exp: float, zero_stage: int, num_layers: int,
              count: int | None = None) -> tuple:
    """Gradient (or weight) collectives of ``nonexp`` + ``exp`` parameters: non-expert ones over
    dp*cp ranks, expert ones over the dp*cp/ep expert-data-parallel ranks; as many as
    models.parallel.zero.num_grad_collectives says (buckets; one per layer at ZeRO-3), or ``count``."""
    out = []
    for i, (nparams, (group, bw, spans, links, local)) in enumerate(((nonexp, comms["dp"]), (exp, comms["edp"]))):
        held = float(zero.grad_sync_bytes(nparams))
        nbytes = held * comms.get("gather_scale" if kind == "all_gather" else "reduce_scale", 1.0)
        nb = count or int(zero.num_grad_collectives(zero_stage, held * comms.get("held_scale", 1.0), num_layers))
        one = _comm("dp", kind, nbytes / nb, group, bw * comms["busbw_ratio"][kind], spans, links,
                    comms["latency"][kind], local)
        # hybrid sharding: each gradient reduce-scatter is followed by the all-reduce of its shard across the
        # replicas (models.comm.dp_comm_s)
        rep, rep_bw, rep_spans, rep_links, rep_local = comms["rep"]
        after = _comm("dp", "all_reduce", nbytes / nb / group, rep, rep_bw * comms["busbw_ratio"]["all_reduce"],
                      rep_spans, rep_links, comms["latency"]["all_reduce"], rep_local) \
            if kind == "reduce_scatter" and i == 0 and zero_stage >= 1 else None
        out += [x for x in (one, after) if x is not None] * nb if one is not None else []
    return tuple(out)


def _stage_program(model, cluster, plan, pl, links, lc, km, orders, st) -> StageProgram:
    pp, vpp, z = plan.pp, plan.vpp, int(plan.zero_stage)
    a = {k: np.asarray(v) for k, v in est_mod.plan_arrays(plan).items()}
    counts, starts = _virtual_layers(model.num_layers, pp, vpp)
    comms = _stage_comms(cluster, plan, pl, links, lc, st)
    zb = plan.schedule == Schedule.ZERO_BUBBLE
    costs, buckets, gathers, nonexp, exp, g_nonexp, g_exp = {}, {}, {}, 0.0, 0.0, 0.0, 0.0
    for c in range(vpp):
        v = c * pp + st
        costs.update(_chunk_costs(lc, comms, counts[v], v == pp * vpp - 1, zb, c, first=v == 0,
                                  overlap_ep=plan.overlap_ep_comm))
        ne, ex = (float(x) for x in est_mod.stage_params(model, a, counts[v], v == 0, v == pp * vpp - 1))
        nonexp, exp = nonexp + ne, exp + ex
        # the gradients the DP reduction moves: all, or under LoRA/QLoRA only the adapters' (models.comm.dp_comm_s)
        g_ne, g_ex = (float(x) for x in finetune.grad_sync_params(model, a, counts[v], ne, ex))
        g_nonexp, g_exp = g_nonexp + g_ne, g_exp + g_ex
        buckets[c] = _dp_comms(zero.grad_reduce_kind(z), comms, g_ne, g_ex, z, counts[v])
        if z >= 3:   # the first layer's weights, then the rest (gathered while the first layers compute)
            f = 1.0 / max(counts[v], 1)
            gathers[c] = (_dp_comms("all_gather", comms, f * ne, f * ex, z, 1, 1),
                          _dp_comms("all_gather", comms, (1 - f) * ne, (1 - f) * ex, z, 1, max(counts[v] - 1, 1)))
    static = float(sum(est_mod.stage_state_bytes(model, a, st)))   # ZeRO-3: + current (+ prefetched) layer
    opt_params = zero.optimizer_params(nonexp, exp, comms["dp"][0], comms["edp"][0], z)
    t_opt = float(est_mod.optimizer_step_s(km, opt_params))
    # ZeRO-1/2 gather the updated weights: the adapters' only under LoRA (ZeRO-3 gathers every weight, above)
    param_gather = _dp_comms("all_gather", comms, g_nonexp, g_exp, z, sum(counts[c * pp + st] for c in range(vpp))) \
        if z in (1, 2) else ()
    send = {"F": comms["send_F"], "B": comms["send_B"]} if pp > 1 else {}
    return StageProgram(st, pl.rank(st), tuple(orders[st]), costs, tuple(int(starts[c * pp + st]) for c in range(vpp)),
                        send, buckets, z >= 2, gathers, t_opt, param_gather, static)


def build_program(model: Transformer, cluster: Cluster, plan: Plan, placement_order=None) -> Program:
    """The ops of one iteration of ``plan`` with their costs from models/."""
    pl = Placement(plan.tp, plan.cp, plan.dp, plan.pp, cluster.gpus_per_node,
                   tuple(placement_order or plan.placement.split("-")))
    km = est_mod.kernels(cluster, plan.dtype)
    lc = layer_costs(model, cluster, plan)
    orders = stage_orders(int(plan.schedule), plan.pp, plan.num_microbatches, plan.vpp)
    links = _Links(pl, cluster)
    stages = tuple(_stage_program(model, cluster, plan, pl, links, lc, km, orders, st) for st in range(plan.pp))
    first_fwd = max(sum(sp.costs[("F", c)].compute_s for c in range(plan.vpp)) for sp in stages)
    return Program(stages, plan.pp, plan.vpp, plan.num_microbatches,
                   ("gpipe", "1f1b", "interleaved", "zb-h1")[int(plan.schedule)],
                   plan.overlap_tp_comm, plan.overlap_param_gather, first_fwd, overlap_ep_comm=plan.overlap_ep_comm,
                   overlap_grad_reduce=plan.overlap_grad_reduce,
                   stolen_s_per_overlap_s=float(coll.stolen_compute_s(1.0, 0.0)))


def uniform_program(schedule: str, pp: int, num_microbatches: int, vpp: int = 1, t_f_s: float = 1.0,
                    t_b_s: float = 2.0, t_w_s: float = 0.0) -> Program:
    """A communication-free program with identical stages: forward ``t_f_s`` and backward
    ``t_b_s`` per micro-batch and stage (split over vpp chunks); for zb-h1 the backward's
    weight-gradient part ``t_w_s`` runs as the separate W op. For checking schedules against
    their closed forms, e.g. 1F1B makespan (m + p - 1)(t_f + t_b)."""
    orders = stage_orders(schedule, pp, num_microbatches, vpp)
    zb = schedule == "zb-h1"
    stages = []
    for s in range(pp):
        costs = {}
        for c in range(vpp):
            costs[("F", c)] = OpCost(t_f_s / vpp, 0.0, (), 1.0)
            costs[("B", c)] = OpCost((t_b_s - (t_w_s if zb else 0.0)) / vpp, 0.0, (), -1.0 if not zb else -0.5)
            if zb:
                costs[("W", c)] = OpCost(t_w_s / vpp, 0.0, (), -0.5)
        stages.append(StageProgram(s, s, tuple(orders[s]), costs, tuple(range(vpp)), {}, {}, False, {}, 0.0, (), 0.0))
    return Program(tuple(stages), pp, vpp, num_microbatches, schedule, False, False, t_f_s)
