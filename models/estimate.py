"""The analytical iteration model: compose compute, communication, bubble and memory.

``estimate_arrays`` evaluates any number of plans at once (numpy arrays of plan fields,
one model and one cluster) so the planner can score millions of plans per second;
``estimate`` wraps it for one :class:`~models.plan.Plan` and returns a StepEstimate.

Iteration time (1F1B family, Narayanan et al. SC'21 Sec. 2.2-3):
    step = m * t_mb(slowest stage) + bubble_ratio * m * t_mb(mean stage)   [pipeline]
         + exposed DP/ZeRO communication + optimizer step
where t_mb is one micro-batch's forward + backward (+ recompute) on one stage, including
the TP/SP, CP and EP collectives that are not hidden behind compute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from models import collectives as coll
from models import flops as fl
from models import memory as mem
from models.hardware import Cluster
from models.parallel import context, data, expert, pipeline, tensor, zero
from models.plan import DTYPE_BYTES, PLACEMENT_DIMS, PLACEMENTS, Plan, check_plan
from models.profile import kernel_model
from models.transformer import Transformer

# FlashAttention-2 reaches 50-73% of A100 peak (Dao 2023, "FlashAttention-2", abstract and
# Sec. 4.1: forward up to 73%, backward lower); FlashAttention-3 ~75% on H100 forward (Shah
# et al. 2024). Forward 0.70 and backward 0.55 of the dense peak are used for every GPU.
ATTN_FWD_EFFICIENCY = 0.70
ATTN_BWD_EFFICIENCY = 0.55
# FlashAttention v1 "only reaches 25-40% of the theoretical maximum FLOPs/s (e.g. up to 124
# TFLOPs/s on A100)" (Dao 2023, FlashAttention-2 paper, Sec. 1): forward 0.40, backward 0.30.
FLASH1_FWD_EFFICIENCY = 0.40
FLASH1_BWD_EFFICIENCY = 0.30
# Flash backward runs 5 matmuls against the forward's 2 (it recomputes QK^T): 2.5x the FLOPs.
ATTN_BWD_FLOP_RATIO = 2.5
# Cross-entropy on fp32-upcast logits, pass by pass (PyTorch F.cross_entropy / Megatron's
# vocab-parallel loss both upcast): upcast r2+w4, log-softmax r4+r4+w4, backward r4+r4+w4
# plus the gradient fill w4, downcast r4+w2 = 40 bytes per logit element.
LOSS_BYTES_PER_LOGIT = 40
# The Adam step's bytes per parameter and the gradient bucket are models.parallel.zero's.
OPTIMIZER_BYTES_PER_PARAM, DP_BUCKET_BYTES = zero.OPTIMIZER_BYTES_PER_PARAM, zero.DP_BUCKET_BYTES
# One of the output layer's three GEMMs (and about a third of the loss's passes) runs forward.
LOGITS_FWD_SHARE = 1 / 3

PLAN_FIELDS = ("dp", "tp", "pp", "cp", "ep", "vpp", "micro_batch_size", "global_batch_size", "sp",
               "zero_stage", "recompute", "schedule", "flash", "flash1", "overlap_grad_reduce",
               "overlap_param_gather", "overlap_tp_comm", "overlap_ep_comm", "placement")

# _PRECEDES[code, i, j]: in placement PLACEMENTS[code], dimension j sits inside dimension i.
_PRECEDES = np.array([[[o.index(dj) < o.index(di) for dj in PLACEMENT_DIMS] for di in PLACEMENT_DIMS]
                      for o in (p.split("-") for p in PLACEMENTS)])


def placement_strides(code, tp, cp, dp, pp):
    """Rank distance between neighbours along tp, cp, dp, pp (arrays ok) for placement ``code``
    (an index into models.plan.PLACEMENTS): the product of the sizes of the dimensions inside it.

    >>> [int(x) for x in placement_strides(0, 8, 2, 4, 16)]  # Megatron order: tp, cp, dp, pp
    [1, 8, 16, 64]
    >>> [int(x) for x in placement_strides(PLACEMENTS.index("dp-tp-cp-pp"), 8, 2, 4, 16)]
    [4, 32, 1, 64]
    """
    sizes = np.stack(np.broadcast_arrays(tp, cp, dp, pp), axis=-1)
    prec = _PRECEDES[np.asarray(code)]
    return tuple(np.moveaxis(np.prod(np.where(prec, sizes[..., None, :], 1), axis=-1), -1, 0))


def kernels(cluster: Cluster, dtype: str):
    """The kernel-time model (models.profile.KernelModel) both the estimate and the simulator cost with."""
    return kernel_model(cluster, dtype, ATTN_FWD_EFFICIENCY, ATTN_BWD_EFFICIENCY)


def layer_times(model: Transformer, km, a, moe: bool | None = None):
    """(forward, backward, recompute, forward GEMMs, attention forward) seconds of one layer for one
    micro-batch on one rank, for plan arrays ``a`` (plan_arrays' keys). ``moe``: a dense (False) or
    MoE (True) layer; None averages over the model's layers."""
    if moe is None:
        times = layer_times(model, km, a, moe=False)
        if not model.is_moe:
            return times
        f = model.num_moe_layers / model.num_layers
        return tuple((1 - f) * x + f * y for x, y in zip(times, layer_times(model, km, a, moe=True)))
    peak = km.peak_flops_per_s
    tp, cp, mb, s = a["tp"], a["cp"], a["micro_batch_size"], model.seq_len
    T = mb * s / cp
    h, hq, hkv = model.hidden, model.num_heads * model.dh, model.num_kv_heads * model.dh
    gemm = km.gemm
    proj = gemm(T, (hq + 2 * hkv) / tp, h) + gemm(T, h, hq / tp)
    if moe:
        local_experts = model.num_experts / a["ep"]
        Te = T * model.top_k * model.capacity_factor * a["ep"] / model.num_experts
        fe, k = model.expert_ffn_hidden, model.ffn_matrices - 1
        ffn = (local_experts * (gemm(Te, k * fe / tp, h) + gemm(Te, h, fe / tp)) + gemm(T, model.num_experts, h)
               + model.num_shared_experts * (gemm(T, k * fe / tp, h) + gemm(T, h, fe / tp)))
        act_elems = (model.top_k * model.capacity_factor + model.num_shared_experts) * fe / tp
    else:
        k, f = model.ffn_matrices - 1, model.ffn_hidden
        ffn = gemm(T, k * f / tp, h) + gemm(T, h, f / tp)
        act_elems = f / tp
    gemms_fwd = proj + ffn
    # attention core: flash runs the causal half; unfused runs two full batched GEMMs + softmax
    causal_flops = 0.5 * 4 * mb * (s / cp) * s * hq / tp
    v1 = a["flash1"]
    # v1's published rates are benchmark (burst) rates like FA2's: both run at the sustained clock
    fwd_eff = np.where(v1, np.minimum(km.attn_fwd_efficiency, FLASH1_FWD_EFFICIENCY * km.clock_ratio),
                       km.attn_fwd_efficiency)
    bwd_eff = np.where(v1, np.minimum(km.attn_bwd_efficiency, FLASH1_BWD_EFFICIENCY * km.clock_ratio),
                       km.attn_bwd_efficiency)
    attn_peak = km.attn_peak_flops_per_s or peak
    flash_fwd = causal_flops / (attn_peak * fwd_eff)
    flash_bwd = ATTN_BWD_FLOP_RATIO * causal_flops / (attn_peak * bwd_eff)
    heads_rows = mb * model.num_heads / tp * (s / cp)
    mask = 1.0 if model.dropout else 0.0
    score_bytes = 2.0 * mb * model.num_heads / tp * (s / cp) * s
    unfused_fwd = (gemm(heads_rows, s, model.dh) + gemm(heads_rows, model.dh, s)
                   + km.memory_bound(score_bytes * (3 + 2.5 * mask), 2))
    unfused_bwd = 2 * unfused_fwd
    flash = a["flash"]
    attn_fwd = np.where(flash, flash_fwd, unfused_fwd)
    attn_bwd = np.where(flash, flash_bwd, unfused_bwd)
    # memory-bound ops per token: 2 norms (r+w h), 2 residual adds (2r+w h), dropout (r+w h + 1B mask)
    # at 2 bytes; activation function r+w (GeLU) or 2r+w (SwiGLU) of the FFN width.
    repl_bytes = (2 * 2 * 2 + 2 * 3 * 2 + mask * 2 * 5) * h / np.where(a["sp"], tp, 1)
    act_bytes = (4 if model.activation == "gelu" else 6) * act_elems
    elem_fwd = km.memory_bound(T * (repl_bytes + act_bytes), 8)
    # FlashAttention v1 takes only unpadded (tokens, heads, dim) inputs: llm-foundry's flash_attn_fn
    # (and HF's v1 path) always pack q, k, v with flash_attn.bert_padding.unpad_input and scatter the
    # output back with pad_input. From bert_padding.py, at 2 bytes: forward gathers q, k, v (r+w each)
    # and zero-fills then index-puts the output (w, r+w); backward zero-fills and scatters the q, k, v
    # gradients (w, r+w each) and gathers the output gradient (r+w).
    pack_fwd = pack_bwd = 0.0
    if np.any(v1):  # skipped on the planner's grids, which never search v1
        qkv_w, q_w = (hq + 2 * hkv) / tp, hq / tp
        pack_fwd = np.where(v1, km.memory_bound(T * (4 * qkv_w + 6 * q_w), 4), 0.0)
        pack_bwd = np.where(v1, km.memory_bound(T * (6 * qkv_w + 4 * q_w), 4), 0.0)
    fwd = gemms_fwd + attn_fwd + elem_fwd + pack_fwd
    bwd = 2 * gemms_fwd + attn_bwd + 2 * elem_fwd + pack_bwd
    rc = a["recompute"]
    recompute = np.where(rc == 2, fwd, np.where(rc == 1, np.where(flash, 0.0, unfused_fwd), 0.0))
    return fwd, bwd, recompute, gemms_fwd, attn_fwd


_layer_times = layer_times   # the old private name, still imported by tests/test_flash1.py and test_sustained_clock.py


def logits_time_s(model: Transformer, km, tokens, tp):
    """Output layer + loss of one micro-batch on the last stage, forward + backward, seconds."""
    return 3 * km.gemm(tokens, model.vocab / tp, model.hidden) + km.memory_bound(
        tokens * model.vocab / tp * LOSS_BYTES_PER_LOGIT, 6)


def logits_split_s(model: Transformer, km, tokens, tp):
    """(forward, backward) seconds of the output layer + loss of one micro-batch (LOGITS_FWD_SHARE)."""
    t = logits_time_s(model, km, tokens, tp)
    return LOGITS_FWD_SHARE * t, (1 - LOGITS_FWD_SHARE) * t


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
    gpn = cl.node.nvlink_domain_gpus
    local = coll.ranks_per_node(group, stride, gpn) if local is None else local
    bw = coll.group_bus_bytes_per_s(group, stride, gpn, cl.gpu.nvlink_busbw_bytes_per_s, cl.net_bytes_per_s_per_gpu,
                                    local)
    return bw, group > local


def stage_params(model: Transformer, a, layers, first, last):
    """(non-expert, expert) parameters held by one rank of a stage (or chunk) with ``layers`` layers."""
    return mem.stage_params(model, a["tp"], a["pp"], a["ep"], layers, first, last)


def stage_state_bytes(model: Transformer, a, stage):
    """(weights, grads, optimizer, ZeRO-3 gather buffer) bytes of one rank of pipeline stage ``stage``:
    its weights' model states under ZeRO sharding (models.parallel.zero)."""
    pp = a["pp"]
    layers = pipeline.stage_layers(model.num_layers, stage, pp, a["vpp"])
    nonexp, exp = stage_params(model, a, layers, stage == 0, stage == pp - 1)
    dpcp, z = data.dp_comm_group(a["dp"], a["cp"]), a["zero_stage"]
    w1, g1, o1 = zero.model_state_bytes(nonexp, dpcp, z)
    w2, g2, o2 = zero.model_state_bytes(exp, dpcp / a["ep"], z)
    # ZeRO-3 keeps the gathered weights of the current (and the prefetched) layer
    buf = np.where(z >= 3, mem.zero3_gather_buffer_bytes(model, a["tp"], a["overlap_param_gather"]), 0)
    return w1 + w2, g1 + g2, o1 + o2, buf


def optimizer_step_s(km, params):
    """Seconds of the Adam step over ``params`` parameters (memory-bound; models.parallel.zero)."""
    return km.memory_bound(zero.optimizer_step_bytes(params), zero.OPTIMIZER_KERNELS)


def stage_memory_arrays(model: Transformer, cl: Cluster, a, stage):
    """Memory of one rank of pipeline stage ``stage`` (0-based), by component, bytes: the model states
    (stage_state_bytes) and the activations of the micro-batches its schedule holds at its peak
    (models.memory)."""
    pp, vpp, sched = a["pp"], a["vpp"], a["schedule"]
    last = stage == pp - 1
    layers = pipeline.stage_layers(model.num_layers, stage, pp, vpp)
    params, grads, optim, zero3_buf = stage_state_bytes(model, a, stage)
    mb, s, tp, sp, cp, flash = a["micro_batch_size"], model.seq_len, a["tp"], a["sp"], a["cp"], a["flash"]
    m = a["global_batch_size"] // (mb * a["dp"])
    acts = mem.stage_activation_bytes(
        mem.mean_layer_activation_bytes(model, mb, s, tp, sp, a["recompute"], flash, cp), layers,
        mem.inflight_microbatches(stage, pp, vpp, m, sched),
        mem.output_layer_activation_bytes(model, mb, s, tp, sp, cp), mem.output_layers_inflight(m, sched),
        mem.recompute_backward_transient_bytes(model, mb, s, tp, sp, flash, cp), last, a["recompute"])
    states = params + grads + optim
    total = mem.allocated_bytes(states + zero3_buf + acts)
    return {"params_bytes": params, "grads_bytes": grads, "optimizer_bytes": optim,
            "activations_bytes": acts, "other_bytes": total - states - acts, "total_bytes": total}


def cp_ring_s(model: Transformer, cl: Cluster, a, stride_cp, bpe):
    """Seconds of one layer's K/V ring over the cp ranks at rank distance ``stride_cp`` (c-1 steps)."""
    cp = a["cp"]
    cp_bw, cp_spans = group_bandwidth(cl, cp, stride_cp)
    kv = context.kv_block_bytes(a["micro_batch_size"], model.seq_len, model.num_kv_heads, model.dh, a["tp"], cp, bpe)
    return context.ring_steps(cp) * coll.collective_time_s("send_recv", kv, cp, cp_bw, cp_spans,
                                                           measured_collective(cl, "send_recv"))


def cp_exposed_s(model: Transformer, cl: Cluster, a, stride_cp, attn_fwd_s, bpe):
    """(forward, backward) exposed CP ring seconds per layer and micro-batch (models.parallel.context)."""
    return context.exposed_ring_s(cp_ring_s(model, cl, a, stride_cp, bpe), attn_fwd_s,
                                  ATTN_BWD_FLOP_RATIO * attn_fwd_s, (a["recompute"] == 2).astype(float))


def layer_comm_s(model: Transformer, cl: Cluster, a, km, strides, times, bpe):
    """Exposed TP/SP, CP and EP seconds of one layer for one micro-batch on one rank, and the TP
    seconds outside the layers per micro-batch (embedding, output layer, loss)."""
    tp, cp, ep, mb, s = a["tp"], a["cp"], a["ep"], a["micro_batch_size"], model.seq_len
    s_tp, s_cp, s_dp, _ = strides
    fwd, bwd, rcmp, gemms_fwd, attn_fwd = times
    rc_full = (a["recompute"] == 2).astype(float)
    # TP / SP collectives: 4 (+2 recompute) all-reduce equivalents per layer
    tp_bw, tp_spans = group_bandwidth(cl, tp, s_tp)
    measured_ar = measured_collective(cl, "all_reduce")
    t_tp = coll.collective_time_s("all_reduce", tensor.tp_collective_bytes(mb, s, model.hidden, cp, bpe),
                                  tp, tp_bw, tp_spans, measured_ar)
    tp_layer = tensor.tp_allreduces_per_layer(rc_full) * t_tp
    tp_layer = np.where(a["overlap_tp_comm"], np.maximum(0, tp_layer - 3 * gemms_fwd), tp_layer)
    # outside the layers: embedding / output-layer all-reduces and the cross-entropy's, per micro-batch
    tp_edge = tensor.tp_edge_allreduces(a["pp"]) * t_tp + coll.collective_time_s(
        "all_reduce", tensor.TP_LOSS_ALLREDUCES * tensor.tp_loss_collective_bytes(mb, s, cp), tp, tp_bw, tp_spans,
        measured_ar, tensor.TP_LOSS_ALLREDUCES)
    # CP ring attention: (c-1) K/V block exchanges per layer, hidden behind attention
    cp_fwd, cp_bwd = cp_exposed_s(model, cl, a, s_cp, attn_fwd, bpe)
    cp_layer = cp_fwd + cp_bwd
    if not model.is_moe:
        return tp_layer, cp_layer, np.zeros_like(tp_layer), tp_edge
    # EP all-to-alls: 4 (+2) per MoE layer; EP groups are consecutive DP ranks
    a2a = expert.all_to_all_bytes(mb, s, model.hidden, model.top_k, model.capacity_factor, cp, bpe)
    local = coll.ranks_per_node(ep, s_dp, cl.node.nvlink_domain_gpus)
    ep_layer = model.num_moe_layers / model.num_layers * expert.all_to_alls_per_moe_layer(rc_full) * \
        coll.all_to_all_time_s(a2a, ep, local, cl.gpu.nvlink_busbw_bytes_per_s * busbw_ratio(cl, "all_to_all"),
                               cl.net_bytes_per_s_per_gpu, measured_collective(cl, "all_to_all"))
    # Overlapped dispatch/combine (DeepSeek-V3 DualPipe, Sec. 3.2.1; Megatron-Core a2a overlap) hides the
    # all-to-alls behind the other micro-batch's layer compute; only what exceeds it stays exposed.
    overlap_ep = np.asarray(a.get("overlap_ep_comm", False))
    return tp_layer, cp_layer, np.where(overlap_ep, np.maximum(0.0, ep_layer - (fwd + bwd + rcmp)), ep_layer), tp_edge


def dp_groups(cl: Cluster, a, strides):
    """The gradient-reduction groups: ((dp*cp ranks, bus bytes/s, spans nodes, members per node),
    (expert-data-parallel ranks, bus bytes/s, spans nodes, members per node))."""
    dp, cp, ep = a["dp"], a["cp"], a["ep"]
    _, s_cp, s_dp, _ = strides
    gpn = cl.node.nvlink_domain_gpus
    dpcp = data.dp_comm_group(dp, cp)
    # gradients reduce over the dp x cp ranks: their members per node multiply (strides nest)
    dpcp_local = coll.ranks_per_node(cp, s_cp, gpn) * coll.ranks_per_node(dp, s_dp, gpn)
    edp = data.expert_dp_group(dp, cp, ep)
    edp_local = coll.ranks_per_node(edp, s_dp * ep, gpn)
    return ((dpcp, *group_bandwidth(cl, dpcp, s_dp, dpcp_local), dpcp_local),
            (edp, *group_bandwidth(cl, edp, s_dp * ep, edp_local), edp_local))


def dp_collective_s(cl: Cluster, kind: str, nonexp, exp, groups, count_nonexp, count_exp):
    """Seconds of the ``kind`` collectives over a rank's weights: ``count_nonexp`` over the dp*cp
    group for the non-expert ones, ``count_exp`` over the expert-data-parallel group."""
    r, lat = busbw_ratio(cl, kind), measured_collective(cl, kind)
    (g1, bw1, sp1, _), (g2, bw2, sp2, _) = groups
    b1, b2 = zero.grad_sync_bytes(nonexp), zero.grad_sync_bytes(exp)
    return (coll.collective_time_s(kind, b1, g1, bw1 * r, sp1, lat, count_nonexp)
            + coll.collective_time_s(kind, b2, g2, bw2 * r, sp2, lat, count_exp * (b2 > 0)))


def dp_comm_s(model: Transformer, cl: Cluster, a, strides, layers, fwd_s, bwd_s, wgrad_s=0.0):
    """(exposed, total) DP/ZeRO communication seconds per iteration on the heaviest stage (``layers``
    layers, the embedding and the output layer), its (non-expert, expert) parameters and groups.
    ``fwd_s`` / ``bwd_s`` / ``wgrad_s``: one micro-batch's forward, backward and (ZB-H1, else 0) separate
    weight-gradient pass: the overlap windows (models.parallel.zero.exposed_s)."""
    pp, z = a["pp"], a["zero_stage"]
    m = a["global_batch_size"] // (a["micro_batch_size"] * a["dp"])
    nonexp, exp = stage_params(model, a, layers, pp == 1, True)
    groups = dp_groups(cl, a, strides)
    n1 = zero.num_grad_collectives(z, zero.grad_sync_bytes(nonexp), layers)
    n2 = zero.num_grad_collectives(z, zero.grad_sync_bytes(exp), layers) * (exp > 0)
    t_ar, t_rs, t_ag = (dp_collective_s(cl, k, nonexp, exp, groups, n1, n2)
                        for k in ("all_reduce", "reduce_scatter", "all_gather"))
    exposed = zero.exposed_s(z, m, t_ar, t_rs, t_ag, n1 + n2, layers, fwd_s, bwd_s, a["overlap_grad_reduce"],
                             a["overlap_param_gather"], a["vpp"], wgrad_s)
    return exposed, zero.total_s(z, m, t_ar, t_rs, t_ag), nonexp, exp, groups


def _peak_memory(model: Transformer, cl: Cluster, a, all_stages: bool):
    """(largest rank's memory by component, every stage's or {}): the largest is the first or the
    last stage; all stages are costed for one scalar plan."""
    pp = a["pp"]
    if all_stages:
        by_stage = stage_memory_arrays(model, cl, a, np.arange(int(pp)))
        worst = int(np.argmax(np.broadcast_to(by_stage["total_bytes"], (int(pp),))))
        return {k: np.broadcast_to(v, (int(pp),))[worst] for k, v in by_stage.items()}, by_stage
    m_first = stage_memory_arrays(model, cl, a, 0)
    m_last = stage_memory_arrays(model, cl, a, pp - 1)
    last_bigger = m_last["total_bytes"] > m_first["total_bytes"]
    return {k: np.where(last_bigger, m_last[k], m_first[k]) for k in m_first}, {}


def estimate_arrays(model: Transformer, cl: Cluster, dtype: str = "bf16", all_stages: bool = False, **a):
    """Evaluate plans given as arrays (or scalars) of PLAN_FIELDS; returns a dict of arrays.

    ``all_stages`` (one scalar plan only) also returns memory for every pipeline stage under
    ``memory_by_stage/<component>`` keys; otherwise only the first and last stage are costed.
    """
    a = {k: np.asarray(v) for k, v in a.items()}
    km = kernels(cl, dtype)
    bpe = mem.activation_bytes_per_elem(DTYPE_BYTES[dtype], dtype)
    dp, tp, pp, cp, vpp = a["dp"], a["tp"], a["pp"], a["cp"], a["vpp"]
    mb, gb, s = a["micro_batch_size"], a["global_batch_size"], model.seq_len
    m = gb // (mb * dp)

    # ---- compute per layer, per micro-batch (dense and MoE layers averaged)
    times = layer_times(model, km, a)
    fwd, bwd, rcmp, gemms_fwd, _ = times
    # ---- rank placement: how far apart the members of each group sit (which share a node)
    strides = placement_strides(a.get("placement", 0), tp, cp, dp, pp)
    tp_layer, cp_layer, ep_layer, tp_edge = layer_comm_s(model, cl, a, km, strides, times, bpe)

    # ---- stages: the heaviest has ceil(L/pp) layers; the last adds the logits and loss
    layers_max = -(-model.num_layers // pp)
    logits_mb = logits_time_s(model, km, mb * s / cp, tp)
    compute_layer = fwd + bwd + rcmp
    comm_layer = tp_layer + cp_layer + ep_layer
    t_mb_compute_max = np.maximum(layers_max * compute_layer, model.num_layers // pp * compute_layer + logits_mb)
    t_mb_mean = (model.num_layers * (compute_layer + comm_layer) + logits_mb) / pp

    # ---- pipeline: bubble and blocking p2p sends
    bubble = pipeline.bubble_ratio(pp, m, vpp, a["schedule"]) * m * t_mb_mean
    pp_bw, pp_spans = group_bandwidth(cl, pp, strides[3])
    p2p = coll.collective_time_s("send_recv", pipeline.p2p_bytes_per_microbatch(mb, s, model.hidden, tp, cp, True, bpe),
                                 pp, pp_bw, pp_spans, measured_collective(cl, "send_recv"))
    pp_comm = pipeline.num_p2p_on_critical_path(pp, m, vpp) * p2p

    # ---- data parallel / ZeRO, then the optimizer step (memory-bound over this rank's share)
    # overlap windows: one micro-batch's forward and gradient-producing pass (ZB-H1's W) on the
    # heaviest stage, with the output layer when it is the only stage (as the simulator runs them)
    logits_fwd, logits_bwd = (np.where(pp == 1, x, 0.0) for x in (LOGITS_FWD_SHARE * logits_mb,
                                                                   (1 - LOGITS_FWD_SHARE) * logits_mb))
    wgrad = np.where(a["schedule"] == 3, layers_max * gemms_fwd, 0.0)   # ZB-H1 runs it apart as W
    dp_comm, dp_total, nonexp, exp, groups = dp_comm_s(model, cl, a, strides, layers_max, layers_max * fwd + logits_fwd,
                                                       layers_max * (bwd + rcmp) + logits_bwd - wgrad, wgrad)
    opt_params = zero.optimizer_params(nonexp, exp, groups[0][0], groups[1][0], a["zero_stage"])
    t_opt = optimizer_step_s(km, opt_params)

    compute = m * t_mb_compute_max + t_opt
    exposed_mb_comm = m * (layers_max * comm_layer + tp_edge)
    step = compute + exposed_mb_comm + bubble + pp_comm + dp_comm
    n_gpus = dp * tp * pp * cp
    peak = km.peak_flops_per_s
    model_flops = fl.model_flops_per_iteration(model, gb)
    hw_flops = fl.hardware_flops_per_iteration(model, gb, a["recompute"])
    memory, by_stage = _peak_memory(model, cl, a, all_stages)
    peak_mem = memory["total_bytes"]
    return {
        "step_time_s": step, "compute_s": compute,
        "exposed_comm_s": exposed_mb_comm + pp_comm + dp_comm, "bubble_s": bubble,
        "exposed_tp_comm_s": m * (layers_max * tp_layer + tp_edge), "exposed_cp_comm_s": m * layers_max * cp_layer,
        "exposed_ep_comm_s": m * layers_max * ep_layer, "exposed_pp_comm_s": pp_comm,
        "exposed_dp_comm_s": dp_comm, "optimizer_s": t_opt, "dp_comm_total_s": dp_total,
        "tokens_per_s": gb * s / step, "tflops_per_gpu": model_flops / step / n_gpus / 1e12,
        "mfu": model_flops / (step * n_gpus * peak), "hfu": hw_flops / (step * n_gpus * peak),
        "peak_memory_bytes": peak_mem, "fits": peak_mem <= cl.gpu.hbm_bytes,
        "num_microbatches": m, "num_gpus": n_gpus, "model_flops": model_flops + 0 * step,
        **{f"memory/{k}": v for k, v in memory.items()},
        **{f"memory_by_stage/{k}": v for k, v in by_stage.items()},
    }


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    other_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes + self.other_bytes

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class StepEstimate:
    plan: Plan
    step_time_s: float
    compute_s: float
    exposed_comm_s: float
    bubble_s: float
    exposed_comm_by_kind_s: dict      # tp, cp, ep, pp, dp -> seconds
    optimizer_s: float
    tokens_per_s: float
    tflops_per_gpu: float
    mfu: float
    hfu: float
    peak_memory_bytes: float
    hbm_bytes: float
    fits: bool
    memory: MemoryBreakdown           # the largest rank's
    memory_by_stage: tuple            # one MemoryBreakdown per pipeline stage
    num_microbatches: int
    num_gpus: int
    warnings: tuple = field(default_factory=tuple)

    def as_dict(self) -> dict:
        """The JSON keys of ``clustersim estimate --json``."""
        return {
            "plan_id": self.plan.plan_id, "step_time_s": self.step_time_s, "tokens_per_s": self.tokens_per_s,
            "tflops_per_gpu": self.tflops_per_gpu, "mfu": self.mfu, "hfu": self.hfu,
            "peak_memory_bytes": self.peak_memory_bytes, "hbm_bytes": self.hbm_bytes, "fits": self.fits,
            "compute_s": self.compute_s, "exposed_comm_s": self.exposed_comm_s, "bubble_s": self.bubble_s,
            "optimizer_s": self.optimizer_s, "exposed_comm_by_kind_s": dict(self.exposed_comm_by_kind_s),
            "memory": self.memory.as_dict(),
            "memory_by_stage": [m.as_dict() | {"total_bytes": m.total_bytes} for m in self.memory_by_stage],
            "num_microbatches": self.num_microbatches, "num_gpus": self.num_gpus, "warnings": list(self.warnings),
        }


class PlanError(ValueError):
    """A plan that cannot run the model on the cluster; ``errors`` lists why."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def plan_arrays(plan: Plan) -> dict:
    d = {k: getattr(plan, k) for k in PLAN_FIELDS if hasattr(plan, k)}
    d["zero_stage"], d["recompute"], d["schedule"] = int(plan.zero_stage), int(plan.recompute), int(plan.schedule)
    d["flash"] = plan.attention in ("flash", "flash1")
    d["flash1"] = plan.attention == "flash1"
    d["placement"] = PLACEMENTS.index(plan.placement)
    return d


def _mb(d: dict) -> MemoryBreakdown:
    return MemoryBreakdown(*(float(d[k]) for k in ("params_bytes", "grads_bytes", "optimizer_bytes",
                                                   "activations_bytes", "other_bytes")))


def estimate(model: Transformer, cluster: Cluster, plan: Plan) -> StepEstimate:
    """Analytical estimate of one training iteration; raises PlanError when the plan is invalid."""
    errors = check_plan(plan, model, cluster)
    if errors:
        raise PlanError(errors)
    a = plan_arrays(plan)
    r = estimate_arrays(model, cluster, plan.dtype, all_stages=True, **a)
    cols = [np.broadcast_to(r.pop(f"memory_by_stage/{k}"), (plan.pp,)).tolist() for k in
            ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "other_bytes")]
    r.pop("memory_by_stage/total_bytes")
    stages = tuple(MemoryBreakdown(*row) for row in zip(*cols))
    f = {k: float(v) for k, v in r.items()}
    est = StepEstimate(
        plan=plan, step_time_s=f["step_time_s"], compute_s=f["compute_s"], exposed_comm_s=f["exposed_comm_s"],
        bubble_s=f["bubble_s"], optimizer_s=f["optimizer_s"],
        exposed_comm_by_kind_s={k: f[f"exposed_{k}_comm_s"] for k in ("tp", "cp", "ep", "pp", "dp")},
        tokens_per_s=f["tokens_per_s"], tflops_per_gpu=f["tflops_per_gpu"], mfu=f["mfu"], hfu=f["hfu"],
        peak_memory_bytes=f["peak_memory_bytes"], hbm_bytes=cluster.gpu.hbm_bytes, fits=bool(r["fits"]),
        memory=_mb({k.split("/")[1]: v for k, v in f.items() if k.startswith("memory/")}),
        memory_by_stage=stages, num_microbatches=plan.num_microbatches, num_gpus=plan.world_size)
    return dataclasses.replace(est, warnings=tuple(_warnings(model, cluster, plan, est, f)))


def _warnings(model, cluster, plan, est: StepEstimate, f) -> list[str]:
    w = []
    if not est.fits:
        w.append(f"OOM: peak {est.peak_memory_bytes / 2**30:.1f} GiB exceeds {cluster.gpu.name} HBM "
                 f"{cluster.gpu.hbm_bytes / 2**30:.0f} GiB; try recompute, ZeRO, more tp/pp, or a smaller micro-batch")
    elif est.peak_memory_bytes > 0.9 * cluster.gpu.hbm_bytes:
        w.append("memory: peak above 90% of HBM; fragmentation may cause OOM in practice")
    s_tp = int(placement_strides(PLACEMENTS.index(plan.placement), plan.tp, plan.cp, plan.dp, plan.pp)[0])
    if plan.tp > 1 and plan.tp * s_tp > cluster.node.nvlink_domain_gpus:
        w.append(f"tp: the tp={plan.tp} group (placement {plan.placement}) spans more than one NVLink domain "
                 f"({cluster.node.nvlink_domain_gpus} GPUs): TP traffic crosses the network")
    if model.num_layers % (plan.pp * plan.vpp):
        w.append(f"pp: {model.num_layers} layers do not split evenly over pp*vpp={plan.pp * plan.vpp}; "
                 "early stages get one more layer")
    if plan.pp > 1 and plan.num_microbatches < plan.pp:
        w.append(f"pp: only {plan.num_microbatches} micro-batches for {plan.pp} stages: the pipeline never fills")
    if est.bubble_s > 0.2 * est.step_time_s:
        w.append(f"bubble: {est.bubble_s / est.step_time_s:.0%} of the step is pipeline bubble; more micro-batches or vpp help")
    if est.exposed_comm_s > 0.3 * est.step_time_s:
        w.append(f"communication: {est.exposed_comm_s / est.step_time_s:.0%} of the step is exposed communication")
    if plan.sp and plan.tp == 1:
        w.append("sp: sequence parallelism has no effect with tp=1")
    if model.note:
        w.append(f"model: {model.note}")
    return w
