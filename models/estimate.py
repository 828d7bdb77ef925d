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
import functools
from dataclasses import dataclass, field

import numpy as np

from models import collectives as coll
from models import finetune, optimizers
from models import flops as fl
from models import memory as mem
from models import numeric as num
from models.comm import (  # noqa: F401  (re-exported: the public cost path)
    busbw_ratio,
    cp_exposed_s,
    cp_ring_s,
    dp_bytes_scale,
    dp_collective_s,
    dp_comm_s,
    dp_groups,
    expert_layout,
    folded_tp_factor,
    group_bandwidth,
    layer_comm_s,
    measured_collective,
    placement_strides,
    replica_group,
)
from models.fields import options
from models.hardware import Cluster
from models.layer import (  # noqa: F401
    ATTN_BWD_EFFICIENCY,
    ATTN_BWD_FLOP_RATIO,
    ATTN_FWD_EFFICIENCY,
    DP_BUCKET_BYTES,
    FLASH1_BWD_EFFICIENCY,
    FLASH1_FWD_EFFICIENCY,
    LOGITS_FWD_SHARE,
    LOSS_BYTES_PER_LOGIT,
    OPTIMIZER_BYTES_PER_PARAM,
    eager_rmsnorm,
    kernels,
    layer_times,
    logits_split_s,
    logits_time_s,
    metric_loss_s,
)
from models.parallel import data, expert, offload, pipeline, zero
from models.plan import ATTENTION_KERNELS, DTYPE_BYTES, PLACEMENTS, WEIGHT_BYTES, Plan, check_plan
from models.transformer import Transformer

# The plan columns estimate_arrays takes: every declared Plan field (models/plan.py; enums as their
# codes, placement as its index), the attention kernel split into the flags the formulas use; dtype
# is estimate_arrays' own argument (one dtype per call).
PLAN_FIELDS = (*(n for n in options(Plan) if n not in ("attention", "dtype")), "flash", "flash1", "attn_kernel")
_layer_times = layer_times  # old name, kept for callers outside models/
# plan_arrays' codes of the plan's names (pure lookups, cached on the name)
_method_code, _target_mask = num.memo(finetune.method_code), num.memo(finetune.target_mask)
_optimizer_code, _offload_mask = num.memo(optimizers.code), num.memo(offload.mask)
# A plan's codes -> bytes per parameter / flags: small table lookups, cached on the code (models.numeric.memo);
# the model's parameter counts once per model (models.numeric.per_spec).
_state_bytes_per_param = num.memo(optimizers.state_bytes_per_param)
_step_bytes_per_param = num.memo(optimizers.step_bytes_per_param)
_fused_update = num.memo(optimizers.fused_update)
_has = num.memo(offload.has)
_quantized_params_per_layer = num.per_spec(finetune.quantized_params_per_layer)
_num_params = num.per_spec(lambda model: model.num_params)
# Pure functions of a few plan integers in other modules, whose numpy formulas cost microseconds on one number.
_stage_layers, _bubble_ratio = num.memo(pipeline.stage_layers), num.memo(pipeline.bubble_ratio)
_num_p2p_on_critical_path, _dp_comm_group = num.memo(pipeline.num_p2p_on_critical_path), num.memo(data.dp_comm_group)
_placement_strides = num.memo(placement_strides)


def stage_params(model: Transformer, a, layers, first, last):
    """(non-expert, expert) parameters held by one rank of a stage (or chunk) with ``layers`` layers."""
    return mem.stage_params(model, a["tp"], a["pp"], a["ep"], layers, first, last,
                            expert.expert_tp(a["tp"], a.get("expert_tp", 0)))


def stage_state_bytes(model: Transformer, a, stage):
    """(weights, grads, optimizer, ZeRO-3 gather buffer) bytes of one rank of pipeline stage ``stage``:
    its weights' model states under ZeRO sharding (models.parallel.zero)."""
    pp = a["pp"]
    layers = _stage_layers(model.num_layers, stage, pp, a["vpp"])
    nonexp, exp = stage_params(model, a, layers, stage == 0, stage == pp - 1)
    st = _stage_states(model, a, layers, nonexp, exp)
    return st["weights"], st["grads"], st["optimizer"], st["buffer"]


def _stage_states(model: Transformer, a, layers, nonexp, exp):
    """Model states of one rank holding ``nonexp`` / ``exp`` parameters of ``layers`` layers: on the GPU
    (weights, grads, optimizer, buffer) and offloaded (host/...), bytes. The trainable weights are all of
    them, or the adapters over a frozen (16-bit or NF4) base (models.finetune); optimizer bytes per
    trainable parameter from models.optimizers; offload from models.parallel.offload."""
    dpcp, z, tp = _dp_comm_group(a["dp"], a["cp"]), a["zero_stage"], a["tp"]
    method = a.get("finetune", 0)
    peft = num.arr(method) != 0
    tuned = num.any_nonzero(method)   # without fine-tuning the adapter and frozen-base terms are 0: not costed
    opt_b = _state_bytes_per_param(a.get("optimizer", 0), a.get("master_weights", True))
    wb = a.get("weight_bytes", 2.0)   # working weight / gradient bytes (models.plan.WEIGHT_BYTES: 4 in fp32)
    adapters = layers * finetune.adapter_params_per_layer(model, a.get("lora_rank", 8), a.get("lora_targets", 5),
                                                          method) / tp if tuned else 0.0
    shard = zero.shard_size(dpcp, a.get("shard_group", 0))   # hybrid sharding: states sharded over the group only
    w1, g1, o1 = zero.model_state_bytes(num.where(peft, adapters, nonexp), shard, z, optimizer_bytes=opt_b,
                                        weight_bytes=wb)
    # expert states shard over the expert-data-parallel ranks (models.parallel.expert; dp*cp/ep without folding)
    edp = expert.expert_dp_size(tp, a["cp"], a["dp"], a["ep"], expert.expert_tp(tp, a.get("expert_tp", 0)))
    w2, g2, o2 = zero.model_state_bytes(num.where(peft, 0.0, exp), edp, z, optimizer_bytes=opt_b, weight_bytes=wb)
    frozen = 0.0
    if tuned:
        quant = num.minimum(layers * _quantized_params_per_layer(model) / tp, nonexp + exp)
        frozen = num.where(peft, finetune.frozen_weight_bytes(nonexp + exp, quant, method), 0.0) / num.where(
            z >= 3, shard, 1) * (wb / 2.0)   # (an fp32 base: 4 bytes a weight; NF4 is not run under fp32)
    grads = num.where(_fused_update(a.get("optimizer", 0)),   # LOMO: one tensor's gradient at a time
                      wb * max(model.vocab, model.ffn_hidden) * model.hidden / tp, g1 + g2)
    # fp32 gradient accumulation and reduction (Megatron's main_grad buffer under bf16): 4-byte gradients below
    # ZeRO-3 (ZeRO-3 / FSDP2 keep the same 16 bytes a parameter, fp32 sharded weights and gradients)
    r32 = a.get("grad_reduce_fp32", False)
    if not (num.is_num(r32) and not r32):
        grads = grads * num.where(num.arr(r32) & (z < 3) & num.logical_not(_fused_update(a.get("optimizer", 0))),
                                  4.0 / wb, 1.0)
    off = a.get("offload", 0)
    opt_off, grad_off = _has(off, "optimizer"), _has(off, "gradients")
    par_off = _has(off, "params")
    weights, optim = w1 + w2 + frozen, o1 + o2
    # ZeRO-3 (or offloaded weights) keeps the gathered weights of the current (and the prefetched) layer
    gathered = (z >= 3) | par_off
    # FSDP2's root unit (embeddings, output layer) stays gathered through the step: its weights in full, and the
    # output layer then needs no gather of its own
    root = a.get("fsdp_root_unsharded", False)
    live = a.get("zero3_max_live_params", 0.0)
    buf = num.where(gathered, mem.zero3_gather_buffer_bytes(model, tp, a["overlap_param_gather"], live, wb), 0) \
        if num.any_nonzero(gathered) else 0
    if not (num.is_num(root) and not root):
        rooted = mem.zero3_gather_buffer_bytes(model, tp, a["overlap_param_gather"], live, wb, output_layer=False) \
            + mem.fsdp_root_bytes(model, tp, wb)
        buf = num.where(num.arr(root) & (z >= 3), rooted, buf)
    # DeepSpeed's ZeRO-3 optimizer reduces gradients through one contiguous 16-bit bucket of reduce_bucket_size
    # elements (deepspeed/runtime/zero/stage3.py __ipg_bucket_flat_buffer); a fused update (LOMO) has none
    bucket = a.get("zero_bucket_params", 0.0)
    if num.any_nonzero(bucket):
        buf = buf + num.where((z >= 3) & num.logical_not(_fused_update(a.get("optimizer", 0))),
                              wb * bucket, 0.0)
    return {"weights": num.where(par_off, 0.0, weights), "grads": num.where(grad_off, 0.0, grads),
            "optimizer": num.where(opt_off, 0.0, optim), "buffer": buf,
            "host": num.where(opt_off, optim, 0.0) + num.where(opt_off | grad_off, grads, 0.0)
            + num.where(par_off, weights, 0.0),
            "trainable": num.where(peft, adapters, nonexp + exp), "weights_all": weights, "grads_all": grads}


def optimizer_step_s(km, params):
    """Seconds of the Adam step over ``params`` parameters (memory-bound; models.parallel.zero)."""
    return km.memory_bound(zero.optimizer_step_bytes(params), zero.OPTIMIZER_KERNELS)


def eager_norm_activation_bytes(model: Transformer, a, mb, s, tp, sp, cp, rc):
    """Bytes a layer's eager RMSNorms keep beyond a fused kernel's, per micro-batch (arrays ok; 0 when fused): the
    square and the product save the fp32 upcast x.float() (4 B an element) where a fused kernel saves the 16-bit
    input (2 B, the norm inputs of models.memory's formulas), so +2 B an element a norm; 16-bit training only
    (under fp32 x.float() is x); none under full recompute, which keeps only the layer input."""
    eager = eager_rmsnorm(model, a)
    if not num.any_nonzero(eager):
        return 0.0
    extra = model.norms_per_layer * 2.0 * mb * s / cp * model.hidden / num.where(sp, tp, 1)
    return num.where(eager & (num.arr(rc) < 2) & (num.arr(a.get("act_scale", 1.0)) == 1.0), extra, 0.0)


def stage_memory_arrays(model: Transformer, cl: Cluster, a, stage, layers=None):
    """Memory of one rank of pipeline stage ``stage`` (0-based), by component, bytes: the model states
    (stage_state_bytes) and the activations of the micro-batches its schedule holds at its peak
    (models.memory). ``layers``: the stage's layers when the caller has them (pipeline.stage_layers)."""
    pp, vpp, sched = a["pp"], a["vpp"], a["schedule"]
    last = stage == pp - 1
    if layers is None:
        layers = _stage_layers(model.num_layers, stage, pp, vpp)
    nonexp, exp = stage_params(model, a, layers, stage == 0, last)
    st = _stage_states(model, a, layers, nonexp, exp)
    params, grads, optim, zero3_buf = st["weights"], st["grads"], st["optimizer"], st["buffer"]
    mb, s, tp, sp, cp, flash = a["micro_batch_size"], model.seq_len, a["tp"], a["sp"], a["cp"], a["flash"]
    m = a["global_batch_size"] // (mb * a["dp"])
    rc = a["recompute"]
    layer_act = mem.recompute_share_activation_bytes(model, mb, s, tp, sp, rc, flash, cp,
                                                     a.get("recompute_fraction", 1.0))
    if num.any_nonzero(a.get("finetune", 0)):   # adapters' rank-r intermediates, frozen base's dW inputs
        tokens = mb * s / cp
        delta = (finetune.lora_activation_bytes(model, tokens, a["lora_rank"], a["lora_targets"], tp)
                 - finetune.frozen_activation_savings_bytes(model, tokens, a["lora_targets"], tp, sp, flash))
        layer_act = np.where((np.asarray(a["finetune"]) != 0) & (rc < 2), np.maximum(layer_act + delta, 0.0),
                             layer_act)
    layer_act = layer_act + eager_norm_activation_bytes(model, a, mb, s, tp, sp, cp, rc)
    # ZeRO-R Pa (Rajbhandari et al. 2020 Sec. 6.1): checkpoints partitioned over the TP ranks
    layer_act = num.where(a.get("partition_activations", False) & (rc == 2) & num.logical_not(sp),
                          layer_act / tp, layer_act)
    # fp32 training: every activation element is 4 bytes (the formulas count 16-bit ones)
    act_scale = a.get("act_scale", 1.0)
    if not (num.is_num(act_scale) and act_scale == 1.0):
        layer_act = layer_act * act_scale
    inflight = mem.inflight_microbatches(stage, pp, vpp, m, sched)
    acts = mem.stage_activation_bytes(
        layer_act, layers, inflight,
        mem.output_layer_activation_bytes(model, mb, s, tp, sp, cp, a.get("fused_loss", False)) * act_scale,
        mem.output_layers_inflight(m, sched),
        mem.recompute_backward_transient_bytes(model, mb, s, tp, sp, flash, cp) * act_scale
        if num.any_nonzero(num.arr(rc) == 2) else 0.0, last, rc)   # (read under full recompute only)
    # training metrics after backward (Composer): the micro-batch's activations are freed, its 16-bit logits
    # kept, and each metric's fp32 upcast and log-softmax output live at once (models.memory)
    passes = a.get("train_metric_passes", 0)
    if not (num.is_num(passes) and not passes):
        acts = num.where(last & (num.arr(passes) > 0),
                         num.maximum(acts, mem.metric_loss_transient_bytes(model, mb, s, tp, cp)), acts)
    # activation offload: the checkpoints beyond the current and the prefetched layer live on the host
    act_off = _has(a.get("offload", 0), "activations")
    acts_host = num.where(act_off, num.maximum(0.0, inflight * layers - 2) * layer_act, 0.0) \
        if num.any_nonzero(act_off) else 0.0
    acts = acts - acts_host
    # ZeRO-R CB off: one fp32 fused buffer of the rank's gradients (Sec. 6.3)
    cb = a.get("constant_buffers", True)
    fused = 0.0 if num.is_num(cb) and cb else num.where(cb, 0.0, 2.0 * st["grads_all"])
    states = params + grads + optim
    total = mem.allocated_bytes(states + zero3_buf + acts + fused, a.get("fragmentation", True))
    return {"params_bytes": params, "grads_bytes": grads, "optimizer_bytes": optim,
            "activations_bytes": acts, "other_bytes": total - states - acts, "total_bytes": total,
            "host_bytes": st["host"] + acts_host, "trainable_params": st["trainable"],
            "weights_all_bytes": st["weights_all"], "grads_all_bytes": st["grads_all"], "acts_host_bytes": acts_host}


@num.memo
def _layers_of_stages(num_layers: int, pp: int, vpp: int) -> np.ndarray:
    """pipeline.stage_layers of stages 0..pp-1 (read-only), once per (layers, pp, vpp)."""
    layers = pipeline.stage_layers(num_layers, np.arange(pp), pp, vpp)
    layers.flags.writeable = False
    return layers


def _peak_memory(model: Transformer, cl: Cluster, a, all_stages: bool):
    """(largest rank's memory by component, every stage's or {}): the largest is the first or the
    last stage; all stages are costed for one scalar plan."""
    pp = a["pp"]
    if all_stages:
        by_stage = stage_memory_arrays(model, cl, a, np.arange(int(pp)),
                                       _layers_of_stages(model.num_layers, int(pp), int(a["vpp"])))
        total = by_stage["total_bytes"]
        worst = int(np.argmax(total if type(total) is np.ndarray and total.shape == (pp,) else
                              np.broadcast_to(total, (int(pp),))))
        return {k: v[worst] if type(v) is np.ndarray and v.ndim else v for k, v in by_stage.items()}, by_stage
    m_first = stage_memory_arrays(model, cl, a, 0)
    m_last = stage_memory_arrays(model, cl, a, pp - 1)
    last_bigger = m_last["total_bytes"] > m_first["total_bytes"]
    return {k: num.where(last_bigger, m_last[k], m_first[k]) for k in m_first}, {}


def estimate_arrays(model: Transformer, cl: Cluster, dtype: str = "bf16", all_stages: bool = False, **a):
    """Evaluate plans given as arrays (or scalars) of PLAN_FIELDS; returns a dict of arrays.

    ``all_stages`` (one scalar plan only) also returns memory for every pipeline stage under
    ``memory_by_stage/<component>`` keys; otherwise only the first and last stage are costed.
    """
    r, memory, by_stage = _estimate(model, cl, dtype, all_stages, a)
    return {**r, **{f"memory/{k}": v for k, v in memory.items()},
            **{f"memory_by_stage/{k}": v for k, v in by_stage.items()}}


def _estimate(model: Transformer, cl: Cluster, dtype: str, all_stages: bool, a: dict, coded: bool = False):
    """estimate_arrays' columns: (the step's columns, the largest rank's memory by component, every stage's
    memory by component or {}). ``coded``: ``a`` is plan_arrays' (numbers, fields as codes) already."""
    if not coded:
        number = num.NUMBER_TYPES
        a = _coded({k: v if type(v) in number else _column(v) for k, v in a.items()})
    km = kernels(cl, dtype)
    bpe = mem.activation_bytes_per_elem(DTYPE_BYTES[dtype], dtype)
    if WEIGHT_BYTES[dtype] != 2:   # fp32 training: 4-byte weights, gradients and activations (plan_arrays' columns)
        a = {**a, **dtype_columns(dtype)}
    dp, tp, pp, cp, vpp = a["dp"], a["tp"], a["pp"], a["cp"], a["vpp"]
    mb, gb, s = a["micro_batch_size"], a["global_batch_size"], model.seq_len
    m = gb // (mb * dp)

    # ---- compute per layer, per micro-batch (dense and MoE layers averaged)
    times = layer_times(model, km, a)
    fwd, bwd, rcmp, gemms_fwd, _ = times
    # ---- rank placement: how far apart the members of each group sit (which share a node)
    strides = _placement_strides(a.get("placement", 0), tp, cp, dp, pp)
    tp_layer, cp_layer, ep_layer, tp_edge = layer_comm_s(model, cl, a, km, strides, times, bpe)

    # ---- stages: the heaviest has ceil(L/pp) layers; the last adds the logits and loss
    layers_max = -(-model.num_layers // pp)
    logits_full = logits_time_s(model, km, mb * s / cp, tp, a.get("fused_loss", False))
    # training-metric cross-entropies after each backward (Composer); they join the backward
    logits_metric = metric_loss_s(km, mb * s / cp * model.vocab / tp, a.get("train_metric_passes", 0))
    logits_full = logits_full + logits_metric
    logits_mb = logits_full - (finetune.frozen_output_dw_s(model, km, a, mb * s / cp, tp)   # LoRA: lm_head frozen, no dW
                               if num.any_nonzero(a.get("finetune", 0)) else 0.0)
    compute_layer = fwd + bwd + rcmp
    comm_layer = tp_layer + cp_layer + ep_layer
    t_mb_compute_max = num.maximum(layers_max * compute_layer, model.num_layers // pp * compute_layer + logits_mb)
    t_mb_mean = (model.num_layers * (compute_layer + comm_layer) + logits_mb) / pp

    # ---- pipeline: bubble and blocking p2p sends
    bubble = _bubble_ratio(pp, m, vpp, a["schedule"]) * m * t_mb_mean
    pp_bw, pp_spans = group_bandwidth(cl, pp, strides[3])
    p2p = coll.collective_time_s("send_recv", pipeline.p2p_bytes_per_microbatch(mb, s, model.hidden, tp, cp, True, bpe),
                                 pp, pp_bw, pp_spans, measured_collective(cl, "send_recv"))
    pp_comm = _num_p2p_on_critical_path(pp, m, vpp) * p2p

    # ---- data parallel / ZeRO, then the optimizer step (memory-bound over this rank's share)
    # overlap windows: one micro-batch's forward and gradient-producing pass (ZB-H1's W) on the
    # heaviest stage, with the output layer when it is the only stage (as the simulator runs them)
    logits_fwd, logits_bwd = (num.where(pp == 1, x, 0.0) for x in (
        LOGITS_FWD_SHARE * (logits_full - logits_metric), logits_mb - LOGITS_FWD_SHARE * (logits_full - logits_metric)))
    wgrad = num.where(a["schedule"] == 3, layers_max * gemms_fwd, 0.0)   # ZB-H1 runs it apart as W
    dp_comm, dp_total, nonexp, exp, groups = dp_comm_s(model, cl, a, strides, layers_max, layers_max * fwd + logits_fwd,
                                                       layers_max * (bwd + rcmp) + logits_bwd - wgrad, wgrad)
    opt_params = zero.optimizer_params(nonexp, exp, groups[0][0], groups[1][0], a["zero_stage"])
    method = num.arr(a.get("finetune", 0))
    num_params = _num_params(model)
    total_trainable = num.where(method != 0, model.num_layers * finetune.adapter_params_per_layer(
        model, a.get("lora_rank", 8), a.get("lora_targets", 5), method), float(num_params)) \
        if num.any_nonzero(method) else float(num_params)
    opt_params = opt_params * num.where(method != 0, total_trainable / num_params, 1.0)
    step_b = _step_bytes_per_param(a.get("optimizer", 0), a.get("master_weights", True))
    t_opt = km.memory_bound(opt_params * step_b, zero.OPTIMIZER_KERNELS)

    memory, by_stage = _peak_memory(model, cl, a, all_stages)
    gpn = num.minimum(dp * tp * pp * cp, cl.node.gpus_per_node)
    t_offload, pcie_bytes, host_bytes, nvme_bytes = _offload(cl, a, memory, opt_params, m, t_mb_compute_max,
                                                 layers_max * (bwd + rcmp), gpn)
    t_opt = num.where(_has(a.get("offload", 0), "optimizer"), 0.0, t_opt)
    # the DP/ZeRO collectives hidden behind the compute slow it down (models.collectives.stolen_compute_s)
    compute = m * t_mb_compute_max + t_opt + coll.stolen_compute_s(dp_total, dp_comm)
    exposed_mb_comm = m * (layers_max * comm_layer + tp_edge)
    step = compute + exposed_mb_comm + bubble + pp_comm + dp_comm + t_offload
    n_gpus = dp * tp * pp * cp
    peak = km.peak_flops_per_s
    model_flops, hw_flops = fl.iteration_flops(model, gb, a["recompute"], recompute_fraction=a.get("recompute_fraction", 1.0))
    if num.any_nonzero(method):   # frozen base: no weight-gradient FLOPs (models.flops.finetune_flops_per_iteration)
        model_flops, hw_flops = fl.finetune_flops_per_iteration(
            model, gb, method, a.get("lora_rank", 8), a.get("lora_targets", 5), a["recompute"], gb // mb)
    peak_mem = memory["total_bytes"]
    # host memory beyond the node's CPU memory does not fit either (0: not stated, not judged)
    host_fits = (host_bytes <= cl.node.host_memory_bytes) | (cl.node.host_memory_bytes <= 0)
    return {
        "step_time_s": step, "compute_s": compute,
        "exposed_comm_s": exposed_mb_comm + pp_comm + dp_comm, "bubble_s": bubble,
        "exposed_tp_comm_s": m * (layers_max * tp_layer + tp_edge), "exposed_cp_comm_s": m * layers_max * cp_layer,
        "exposed_ep_comm_s": m * layers_max * ep_layer, "exposed_pp_comm_s": pp_comm,
        "exposed_dp_comm_s": dp_comm, "optimizer_s": t_opt, "dp_comm_total_s": dp_total,
        "tokens_per_s": gb * s / step, "tflops_per_gpu": model_flops / step / n_gpus / 1e12,
        "mfu": model_flops / (step * n_gpus * peak), "hfu": hw_flops / (step * n_gpus * peak),
        "peak_memory_bytes": peak_mem, "fits": (peak_mem <= cl.gpu.hbm_bytes) & host_fits,
        "host_fits": host_fits + 0 * step > 0,
        "num_microbatches": m, "num_gpus": n_gpus, "model_flops": model_flops + 0 * step,
        "params": num_params + 0 * step, "trainable_params": total_trainable + 0 * step,
        "host_memory_bytes": host_bytes + 0 * step, "offload_s": t_offload + 0 * step,
        "pcie_bytes_per_step": pcie_bytes + 0 * step, "nvme_bytes_per_step": nvme_bytes + 0 * step,
    }, memory, by_stage


# Fine-tuning columns the planner may give by name (search axes): name -> code (as plan_arrays gives them).
_CODES = {"finetune": finetune.method_code, "lora_targets": finetune.target_mask, "optimizer": optimizers.code,
          "master_weights": lambda v: v == "fp32", "offload": offload.mask, "offload_to": lambda v: v == "nvme"}


def _column(v):
    """A plan column as the formulas take it: one number as a Python (or numpy) scalar, which takes their
    float branch (models.numeric), anything else as an array."""
    if type(v) in num.NUMBER_TYPES or type(v) is str:
        return v
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v


def _coded(a: dict) -> dict:
    """``a`` with the fine-tuning columns given as names (a planner axis of strings) turned into codes,
    vectorised over the distinct names."""
    for k, fn in _CODES.items():
        v = a.get(k)
        if type(v) is str:
            a[k] = fn(v)
        elif v is not None and type(v) is np.ndarray and v.dtype.kind in "UO":
            names, inv = np.unique(v, return_inverse=True)
            a[k] = np.asarray([fn(str(n)) for n in names])[inv].reshape(v.shape)
    return a


def _offload(cl: Cluster, a, memory, opt_params, m, mb_compute_s, bwd_s, gpn):
    """(exposed offload seconds, PCIe bytes per step per GPU, host bytes per node) of the largest rank
    (models.parallel.offload); zeros without offload."""
    off = num.arr(a.get("offload", 0))
    host = memory["host_bytes"] * gpn
    if not num.any_nonzero(off):
        return 0.0, 0.0, host, 0.0
    node = cl.node
    inflight_layers = np.maximum(memory["acts_host_bytes"], 0.0) / np.maximum(np.minimum(m, a["pp"]), 1)
    per_mb, per_step = offload.traffic_bytes(off, memory["weights_all_bytes"], memory["grads_all_bytes"], opt_params,
                                             inflight_layers, m, a["recompute"] == 2)
    cpu_s = np.where(offload.has(off, "optimizer"), offload.cpu_adam_s(opt_params * gpn, node.cpu_adam_params_per_s), 0.0)
    nvme_b = offload.nvme_bytes(off, a.get("offload_to", False), memory["weights_all_bytes"],
                                memory["host_bytes"], inflight_layers, m, gpn)
    nvme_s = nvme_b / node.nvme_bytes_per_s if node.nvme_bytes_per_s > 0 else 0.0 * nvme_b
    pcie = offload.pcie_bytes_per_s(node.pcie_gen, node.pcie_lanes_per_gpu)
    t = offload.exposed_s(per_mb, per_step, m, mb_compute_s, bwd_s, pcie, cpu_s, nvme_s)
    return np.where(off != 0, t, 0.0), m * per_mb + per_step, host, nvme_b


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
    params: float = 0.0               # parameters of the model
    trainable_params: float = 0.0     # parameters the optimizer updates (all, or the adapters)
    host_memory_bytes: float = 0.0    # host memory per node the offload needs
    pcie_bytes_per_step: float = 0.0  # host<->GPU bytes per GPU per iteration (offload)
    offload_s: float = 0.0            # offload time the iteration waits for
    nvme_bytes_per_step: float = 0.0  # NVMe bytes per node per iteration (offload_to nvme)

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
            "params": self.params, "trainable_params": self.trainable_params,
            "host_memory_bytes": self.host_memory_bytes,
        }


class PlanError(ValueError):
    """A plan that cannot run the model on the cluster; ``errors`` lists why."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def plan_arrays(plan: Plan) -> dict:
    """The plan as the scalar columns of :func:`estimate_arrays` (derived from the declared fields)."""
    names = _plan_fields(Plan) if type(plan) is Plan else [k for k in PLAN_FIELDS if hasattr(plan, k)]
    d = {k: getattr(plan, k) for k in names}
    d["zero_stage"], d["recompute"], d["schedule"] = int(plan.zero_stage), int(plan.recompute), int(plan.schedule)
    d["flash"] = plan.attention != "unfused"
    d["flash1"] = plan.attention == "flash1"
    d["attn_kernel"] = ATTENTION_KERNELS.index(plan.attention)
    d["placement"] = PLACEMENTS.index(plan.placement)
    d["finetune"] = _method_code(plan.finetune)          # fine-tuning fields as numeric codes
    d["lora_targets"] = _target_mask(plan.lora_targets)
    d["optimizer"] = _optimizer_code(plan.optimizer)
    d["master_weights"] = plan.master_weights == "fp32"
    d["offload"] = _offload_mask(plan.offload)
    d["offload_to"] = plan.offload_to == "nvme"
    d.update(dtype_columns(plan.dtype))
    return d


def dtype_columns(dtype: str) -> dict:
    """The columns a dtype fixes: bytes of a working weight and of its gradient (models.plan.WEIGHT_BYTES) and
    activation bytes over the 16-bit ones the memory formulas count (4 / 2 in fp32 training)."""
    return {"weight_bytes": float(WEIGHT_BYTES[dtype]),
            "act_scale": mem.activation_bytes_per_elem(DTYPE_BYTES[dtype], dtype) / 2.0}


_BREAKDOWN = ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "other_bytes")


@functools.cache
def _plan_fields(cls) -> tuple:
    """The PLAN_FIELDS a plan class has (plan_arrays reads them off each plan)."""
    return tuple(k for k in PLAN_FIELDS if hasattr(cls, k))


def _mb(d: dict) -> MemoryBreakdown:
    return MemoryBreakdown(*(float(d[k]) for k in _BREAKDOWN))


def _per_stage(v, pp: int) -> list:
    """One float per stage of a by-stage column (a stage-independent one is a scalar)."""
    if type(v) is np.ndarray and v.ndim:
        return v.tolist()
    return [float(v)] * pp


def estimate(model: Transformer, cluster: Cluster, plan: Plan) -> StepEstimate:
    """Analytical estimate of one training iteration; raises PlanError when the plan is invalid."""
    errors = check_plan(plan, model, cluster)
    if errors:
        raise PlanError(errors)
    r, memory, by_stage = _estimate(model, cluster, plan.dtype, True, plan_arrays(plan), coded=True)
    pp = plan.pp
    stages = tuple(MemoryBreakdown(*row) for row in zip(*(_per_stage(by_stage[k], pp) for k in _BREAKDOWN)))
    f = {k: float(v) for k, v in r.items()}
    fields = dict(
        plan=plan, step_time_s=f["step_time_s"], compute_s=f["compute_s"], exposed_comm_s=f["exposed_comm_s"],
        bubble_s=f["bubble_s"], optimizer_s=f["optimizer_s"],
        exposed_comm_by_kind_s={k: f[f"exposed_{k}_comm_s"] for k in ("tp", "cp", "ep", "pp", "dp")},
        tokens_per_s=f["tokens_per_s"], tflops_per_gpu=f["tflops_per_gpu"], mfu=f["mfu"], hfu=f["hfu"],
        peak_memory_bytes=f["peak_memory_bytes"], hbm_bytes=cluster.gpu.hbm_bytes, fits=bool(r["fits"]),
        memory=_mb(memory),
        memory_by_stage=stages, num_microbatches=plan.num_microbatches, num_gpus=plan.world_size,
        params=f["params"], trainable_params=f["trainable_params"], host_memory_bytes=f["host_memory_bytes"],
        pcie_bytes_per_step=f["pcie_bytes_per_step"], offload_s=f["offload_s"],
        nvme_bytes_per_step=f["nvme_bytes_per_step"])
    est = StepEstimate(**fields)
    # the warnings read the estimate: set on the new (frozen) object, as its __post_init__ would
    object.__setattr__(est, "warnings", tuple(_warnings(model, cluster, plan, est, f)))
    return est


def _warnings(model, cluster, plan, est: StepEstimate, f) -> list[str]:
    w = []
    if not f.get("host_fits", True):
        w.append(f"host memory: the offload needs {est.host_memory_bytes / 2**30:.0f} GiB per node but "
                 f"{cluster.node.name} has {cluster.node.host_memory_bytes / 2**30:.0f} GiB of CPU memory: does not "
                 "fit; offload less, or use more nodes")
    if est.peak_memory_bytes > cluster.gpu.hbm_bytes:
        w.append(f"OOM: peak {est.peak_memory_bytes / 2**30:.1f} GiB exceeds {cluster.gpu.name} HBM "
                 f"{cluster.gpu.hbm_bytes / 2**30:.0f} GiB; try recompute, ZeRO, more tp/pp, or a smaller micro-batch")
    elif est.peak_memory_bytes > 0.9 * cluster.gpu.hbm_bytes:
        w.append("memory: peak above 90% of HBM; fragmentation may cause OOM in practice")
    s_tp = int(_placement_strides(PLACEMENTS.index(plan.placement), plan.tp, plan.cp, plan.dp, plan.pp)[0])
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
