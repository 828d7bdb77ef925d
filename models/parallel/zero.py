"""ZeRO / sharded data parallelism: model-state memory per rank, gather buffers, DP traffic and overlap.

Memory (Rajbhandari et al. 2020, "ZeRO", Sec. 5.1-5.3 and Fig. 1), per parameter Psi held by a
rank before sharding over N_d data-parallel ranks, mixed-precision Adam (K = 12 bytes of fp32
master weights, momentum and variance):
    stage 0 (DDP)        (2 + 2 + K) Psi
    stage 1 (P_os)       2 Psi + 2 Psi + K Psi / N_d
    stage 2 (P_os+g)     2 Psi + (2 + K) Psi / N_d
    stage 3 (P_os+g+p)   (2 + 2 + K) Psi / N_d
plus, at stage 3, the gathered 16-bit weights of the layer being computed (and of the next one
when its gather is prefetched: FSDP / DeepSpeed prefetch, Sec. 5.3 "bucketization").

Communication per step (Sec. 7.2): DDP all-reduces the gradients (2 Psi per rank on the wire);
stages 1-2 reduce-scatter them and all-gather the updated weights (the same 2 Psi); stage 2
reduce-scatters at every micro-batch (DeepSpeed's gradient partitioning); stage 3 all-gathers every
layer's weights in forward and again in backward and reduce-scatters its gradients, per
micro-batch: 3 Psi, 1.5x DDP (Sec. 7.2.2).

Overlap (what :func:`exposed_s` charges; the simulator runs the same collectives on one DP
stream per rank and must reproduce it where nothing contends):
  - n equal gradient buckets released evenly over a backward of w seconds and run one after
    another leave max(t / n, t - w (1 - 1/n)) exposed (:func:`overlapped_tail_s`); without
    overlap_grad_reduce the whole t is exposed after the backward.
  - the updated-weight all-gather of stages 1-2 hides behind the next forward (overlap_param_gather).
  - stage 3 gathers a chunk's first layer before it computes; the other layers' gathers run beside
    the compute (overlap_param_gather) or before it; the backward returns when its reduce-scatters
    are done (FSDP's post-backward wait).

At hundreds to thousands of ranks (Zhao et al. 2023, "PyTorch FSDP", VLDB, Sec. 3.3-3.4): one all-gather
per module (a transformer layer: the FSDP / FSDP2 unit, DeepSpeed's sub-module fetch) per forward, again in
backward and again for a recomputed forward (:func:`gathers_per_microbatch`), one reduce-scatter per module;
each collective pays NCCL's latency, which grows linearly with the ring (models.collectives), and can hide
only behind one layer's compute (:func:`layer_stream_exposed_s`: the prefetch depth the frameworks use).

Hybrid sharding (FSDP HYBRID_SHARD / HSDP, Zhao et al. Sec. 3.2.2; ZeRO++ hpZ, Wang et al. 2023): the
model states are sharded over a group of ``shard`` ranks (the plan's shard_group, :func:`shard_size`) and
replicated over the dp*cp / shard groups. Memory: ``dp`` in :func:`model_state_bytes` becomes ``shard``.
Traffic: gathers and reduce-scatters inside the group, plus an all-reduce of each gradient shard (1/shard
of the gradients) across the replicas (:func:`replica_size`). (ZeRO++ hpZ keeps the optimizer states
sharded over all ranks and only the secondary weight copy inside a node; the HSDP accounting here shards
every state over the group.)

Offload (ZeRO-Offload, ZeRO-Infinity) is models.parallel.offload's: models.estimate moves the
offloaded states off the GPU and adds the PCIe / CPU-step time it cannot hide.
"""

from __future__ import annotations

from models import numeric as num

BYTES_WEIGHT = 2          # bf16/fp16 working weights
BYTES_GRAD = 2            # bf16/fp16 gradients (ZeRO paper accounting)
BYTES_OPTIMIZER = 12      # fp32 master weights + Adam m + v (ZeRO paper K = 12)

# Adam step touches fp32 master weight (r/w 8 B), m and v (r/w 16 B), the gradient (2 B),
# writes the 16-bit weight (2 B) and reads the gradient again for the norm clip (2 B),
# in about 10 elementwise kernels (PyTorch's multi-tensor Adam and the clip).
OPTIMIZER_BYTES_PER_PARAM = 30
OPTIMIZER_KERNELS = 10
# Megatron/PyTorch DDP gradient bucket (Megatron-Core default 40M elements; torch DDP 25 MB):
# the last bucket's reduction cannot overlap with backward.
DP_BUCKET_BYTES = 40e6 * 2


def shard_size(dpcp, shard_group):
    """Ranks the model states are sharded over: ``shard_group`` (HSDP) when it is > 0 and divides the dp*cp
    ranks ``dpcp``, else all of them (0, the default: full sharding). Arrays ok; models.plan.check_plan
    rejects a shard group that does not divide dp*cp, a planner grid point with one equals full sharding.

    >>> [int(x) for x in shard_size(64, [0, 8, 12, 128])]
    [64, 8, 64, 64]
    """
    dpcp, sg = num.arr(dpcp), num.arr(shard_group)
    ok = (sg > 0) & (sg < dpcp) & (dpcp % num.maximum(sg, 1) == 0)
    return num.where(ok, sg, dpcp)


def replica_size(dpcp, shard_group):
    """Replicas of each shard under hybrid sharding (dp*cp / shard; 1 under full sharding).

    >>> int(replica_size(64, 8))
    8
    """
    return num.arr(dpcp) // shard_size(dpcp, shard_group)


def model_state_bytes(num_params, dp, zero_stage, optimizer_bytes=BYTES_OPTIMIZER, weight_bytes=BYTES_WEIGHT):
    """(weights, grads, optimizer) bytes per rank for ``num_params`` trainable parameters held by the
    rank before ZeRO sharding over ``dp`` ranks (arrays ok); ``optimizer_bytes`` per parameter is the
    optimizer's figure (models.optimizers; default K = 12, Adam with an fp32 master); ``weight_bytes``:
    bytes of a working weight and of its gradient (2, or 4 in fp32 training: models.plan.WEIGHT_BYTES).

    ZeRO paper Fig. 1, 7.5B parameters, N_d = 64: 120 / 31.4 / 16.6 / 1.9 GB for stages 0-3.
    >>> [round(float(sum(model_state_bytes(7.5e9, 64, z))) / 1e9, 1) for z in range(4)]
    [120.0, 31.4, 16.6, 1.9]
    """
    zero_stage = num.arr(zero_stage)
    weights = weight_bytes * num_params / num.where(zero_stage >= 3, dp, 1)
    grads = BYTES_GRAD * weight_bytes / BYTES_WEIGHT * num_params / num.where(zero_stage >= 2, dp, 1)
    optimizer = optimizer_bytes * num_params / num.where(zero_stage >= 1, dp, 1)
    return weights, grads, optimizer


def gather_buffer_bytes(layer_params, prefetch, weight_bytes=BYTES_WEIGHT):
    """16-bit weights of gathered layers a ZeRO-3 rank holds at once, bytes: the current layer of
    ``layer_params`` parameters (already divided by tp), plus the next one when its all-gather is
    prefetched (overlapped with compute).

    >>> float(gather_buffer_bytes(1e6, prefetch=True))
    4000000.0
    """
    return (1 + num.as_float(prefetch)) * weight_bytes * layer_params


def optimizer_params(nonexpert_params, expert_params, dp, edp, zero_stage):
    """Parameters whose optimizer step a rank runs: its share under ZeRO >= 1 (non-expert weights
    sharded over ``dp`` ranks, expert weights over the ``edp`` expert-data-parallel ranks).

    >>> float(optimizer_params(8e9, 0.0, 8, 1, zero_stage=1))
    1000000000.0
    """
    z = num.arr(zero_stage)
    return nonexpert_params / num.where(z >= 1, dp, 1) + expert_params / num.where(z >= 1, edp, 1)


def optimizer_step_bytes(params):
    """HBM bytes the Adam step and the gradient-norm clip stream for ``params`` parameters.

    >>> optimizer_step_bytes(1e9)
    30000000000.0
    """
    return OPTIMIZER_BYTES_PER_PARAM * params


def grad_sync_bytes(params_per_rank, bytes_per_grad=BYTES_GRAD):
    """Gradient bytes each rank contributes to the DP reduction (the full buffer of one collective)."""
    return bytes_per_grad * params_per_rank


def grad_reduce_kind(zero_stage) -> str:
    """The gradient collective: all-reduce for DDP, reduce-scatter once the gradients are sharded."""
    return "all_reduce" if int(zero_stage) == 0 else "reduce_scatter"


def num_buckets(grad_bytes):
    """Gradient buckets of a DDP / distributed-optimizer reduction (>= 1), each one collective.

    >>> int(num_buckets(16e9))
    200
    """
    return num.maximum(1, num.ceil(num.as_float(grad_bytes) / DP_BUCKET_BYTES))


def num_grad_collectives(zero_stage, grad_bytes, num_layers):
    """Gradient (and, at stage 3, weight) collectives per reduction: one per bucket, or one per
    layer at stage 3 (FSDP / ZeRO-3 gather and reduce each layer's weights)."""
    return num.where(num.arr(zero_stage) >= 3, num.maximum(num_layers, 1), num_buckets(grad_bytes))


def overlapped_tail_s(total_s, n, window_s):
    """Seconds left after a compute window of ``window_s`` by ``n`` equal collectives of ``total_s``
    in all, the k-th released at (k+1)/n of the window and run one after another on one stream:
    max over k of (release + the rest) minus the window = max(t/n, t - w (1 - 1/n)).

    >>> float(overlapped_tail_s(1.0, 4, 2.0))   # short: only the last bucket sticks out
    0.25
    >>> float(overlapped_tail_s(4.0, 4, 2.0))   # long: the stream is the bottleneck
    2.5
    """
    n = num.maximum(n, 1)
    return num.maximum(total_s / n, total_s - window_s * (1 - 1 / n))


def gathers_per_microbatch(recompute_full):
    """All-gathers of each module's (layer's) weights per micro-batch at ZeRO-3: one in forward, one in
    backward, and one more for the recomputed forward under full recompute (DeepSpeed stage 3 re-fetches
    a checkpointed module's parameters in its pre-forward hook; deepspeed/runtime/zero/
    partitioned_param_coordinator.py fetch_sub_module). Arrays ok.

    >>> [float(x) for x in gathers_per_microbatch([False, True])]
    [2.0, 3.0]
    """
    return 2.0 + num.as_float(recompute_full)


def layer_stream_exposed_s(first_s, per_layer_stream_s, per_layer_compute_s, num_layers):
    """Seconds a chain of ``num_layers`` layers waits for its DP stream when each layer's collectives
    (``per_layer_stream_s``: the next layer's gather, and in backward the finished layer's reduce-scatter)
    can run only beside one layer's compute (``per_layer_compute_s``): the framework prefetches one module
    ahead (FSDP BACKWARD_PRE / forward prefetch with limit_all_gathers, torch/distributed/fsdp@v2.1.0;
    DeepSpeed stage3_prefetch_bucket_size 5e7 parameters, about one layer of a 7B+ model), so layer k
    cannot start before its gather is done and a gather cannot run ahead of the compute it feeds:
    first + (L - 1) max(0, stream - compute). Deeper prefetch does not change it for equal layers.

    >>> round(float(layer_stream_exposed_s(1.1, 1.1, 1.0, 10)), 6)   # gathers 10% slower than compute: 2 s waited
    2.0
    >>> float(layer_stream_exposed_s(0.5, 0.5, 1.0, 10))   # hidden but the first
    0.5
    """
    return first_s + num.maximum(num_layers - 1, 0) * num.maximum(0.0, per_layer_stream_s - per_layer_compute_s)


def zero3_exposed_per_op_s(t_ag_s, t_rs_s, num_layers, fwd_s, bwd_s, overlap_grad_reduce, overlap_param_gather,
                           wgrad_s=0.0, bwd_gathers=1.0):
    """(forward, backward) exposed seconds of one ZeRO-3 micro-batch over ``num_layers`` layers whose
    weights gather in ``t_ag_s`` per pass (one collective per layer) and whose gradients reduce-scatter
    in ``t_rs_s`` (one per layer); ``bwd_s`` includes a recompute (whose gathers ``t_ag_s`` then counts:
    gathers_per_microbatch); ``wgrad_s`` > 0: the weight gradients run as a separate op of that length
    after the backward (ZB-H1's W), which then carries the reduce-scatters; ``bwd_gathers``: gathers of
    each layer in the backward op (2 when the recompute re-gathers, :func:`gathers_per_microbatch`).

    Forward: the first layer's gather blocks, the others run one layer ahead of the compute
    (:func:`layer_stream_exposed_s`); without overlap_param_gather every gather blocks. Backward: each
    layer's gather and the previous layer's reduce-scatter share the DP stream beside one layer's
    backward; the op returns when its last reduce-scatter is done (FSDP's post-backward wait).

    >>> [round(float(x), 3) for x in zero3_exposed_per_op_s(1.0, 1.0, 4, 2.0, 4.0, True, True)]
    [0.25, 0.5]
    >>> [round(float(x), 3) for x in zero3_exposed_per_op_s(1.0, 1.0, 4, 2.0, 4.0, True, True, wgrad_s=2.0)]
    [0.25, 0.5]
    """
    L = num.maximum(num_layers, 1)
    g, r = t_ag_s / L, t_rs_s / L
    split = num.arr(wgrad_s) > 0
    tail = num.where(overlap_grad_reduce, overlapped_tail_s(t_rs_s, L, num.where(split, wgrad_s, bwd_s)), t_rs_s)
    fwd = num.where(overlap_param_gather, layer_stream_exposed_s(g, g, fwd_s / L, L), t_ag_s)
    gb = bwd_gathers * g
    gather_bwd = num.where(overlap_param_gather, layer_stream_exposed_s(gb, gb, bwd_s / L, L), L * gb)
    joint = num.where(num.as_bool(overlap_param_gather) & num.as_bool(overlap_grad_reduce),
                      layer_stream_exposed_s(gb, gb + r, bwd_s / L, L) + r, gather_bwd + tail)
    return fwd, num.where(split, gather_bwd + tail, joint)


def exposed_s(zero_stage, num_microbatches, t_ar_s, t_rs_s, t_ag_s, n_grad, num_layers, fwd_s, bwd_s,
              overlap_grad_reduce, overlap_param_gather, vpp=1, wgrad_s=0.0, gathers=2.0):
    """Exposed DP/ZeRO communication per iteration on one rank, seconds (arrays ok).

    ``t_ar_s``, ``t_rs_s``, ``t_ag_s``: the rank's gradient all-reduce, reduce-scatter and weight
    all-gather, each over all its weights, in ``n_grad`` collectives (buckets; layers at stage 3);
    ``fwd_s`` / ``bwd_s``: one micro-batch's forward / backward on the rank (the overlap windows);
    ``wgrad_s`` > 0: the weight gradients run apart (ZB-H1's W) and their op is the gradients' window;
    ``gathers``: weight gathers per micro-batch at stage 3 (:func:`gathers_per_microbatch`).
      stage 0: tail(t_ar)                    once, after the last micro-batch's backward
      stage 1: tail(t_rs) + ag               ag = max(0, t_ag - fwd) when prefetched, else t_ag
      stage 2: m tail(t_rs) + ag             reduce-scatter every micro-batch
      stage 3: m v (F + B) per chunk          (:func:`zero3_exposed_per_op_s`)
    tail(t) = overlapped_tail_s(t, n, bwd) with overlap_grad_reduce, else t.

    >>> float(exposed_s(0, 8, 1.0, 0.5, 0.5, 4, 32, 2.0, 4.0, False, True))
    1.0
    >>> float(exposed_s(2, 8, 1.0, 0.5, 0.5, 4, 32, 2.0, 4.0, True, True))
    1.0
    """
    m = num_microbatches
    og, opg = num.as_bool(overlap_grad_reduce), num.as_bool(overlap_param_gather)
    grad_window = num.where(num.arr(wgrad_s) > 0, wgrad_s, bwd_s)
    tail = lambda t: num.where(og, overlapped_tail_s(t, n_grad, grad_window), t)  # noqa: E731
    ag_once = lambda: num.where(opg, num.maximum(0.0, t_ag_s - fwd_s), t_ag_s)  # noqa: E731

    def zero3():
        f3, b3 = zero3_exposed_per_op_s(t_ag_s / vpp, t_rs_s / vpp, num_layers / vpp, fwd_s / vpp, bwd_s / vpp, og,
                                        opg, wgrad_s / vpp, num.arr(gathers) - 1)
        return m * vpp * (f3 + b3)
    return num.by_stage(zero_stage, (lambda: tail(t_ar_s), lambda: tail(t_rs_s) + ag_once(),
                                     lambda: m * tail(t_rs_s) + ag_once(), zero3))


def total_s(zero_stage, num_microbatches, t_ar_s, t_rs_s, t_ag_s, gathers=2.0):
    """DP/ZeRO communication per iteration on one rank, hidden or not, seconds (ZeRO Sec. 7.2); ``gathers``:
    weight all-gathers per micro-batch at stage 3 (:func:`gathers_per_microbatch`).

    >>> [float(total_s(z, 4, 2.0, 1.0, 1.0)) for z in range(4)]
    [2.0, 2.0, 5.0, 12.0]
    """
    m = num_microbatches
    return num.by_stage(zero_stage, (lambda: t_ar_s, lambda: t_rs_s + t_ag_s, lambda: m * t_rs_s + t_ag_s,
                                     lambda: m * (gathers * t_ag_s + t_rs_s)))


def check(zero_stage) -> list[str]:
    """Why a ZeRO setting cannot run (empty when it can); zero_stage > 0 with dp = 1 is legal, only useless.

    >>> check(4)
    ['zero_stage: 4 is not a ZeRO stage; choose 0, 1, 2 or 3']
    """
    errs = []
    if int(zero_stage) not in (0, 1, 2, 3):
        errs.append(f"zero_stage: {zero_stage} is not a ZeRO stage; choose 0, 1, 2 or 3")
    return errs
