"""Time to train, GPU-hours, dollars and energy of a run (failure-free core; array-friendly).

The reliability model (failures, checkpoints, restarts, goodput) builds on these.
GPU power at load: P = P_idle + (TDP - P_idle) * utilisation, a linear power model
(Fan, Weber, Barroso 2007, "Power provisioning for a warehouse-sized computer", Sec. 4);
idle taken as 25% of TDP (an assumption: NVIDIA does not publish idle power; nvidia-smi
shows ~60-100 W idle for 400-700 W parts). Node overhead and PUE come from the cluster spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import reliability as rel
from models.units import HOUR_S, KWH_J

IDLE_POWER_FRACTION = 0.25


def iterations_to_train(tokens, global_batch_size, seq_len):
    """Iterations needed to see ``tokens`` tokens (rounded up).

    >>> int(iterations_to_train(1e9, 512, 2048))
    954
    """
    return np.ceil(np.asarray(tokens, dtype=float) / (np.asarray(global_batch_size) * seq_len))


def time_to_train_s(step_time_s, tokens, global_batch_size, seq_len):
    """Failure-free wall-clock seconds to train ``tokens`` tokens."""
    return iterations_to_train(tokens, global_batch_size, seq_len) * step_time_s


def gpu_hours(time_s, num_gpus):
    return np.asarray(time_s) * num_gpus / HOUR_S


def cost_usd(time_s, num_gpus, price_usd_per_gpu_hour):
    """Dollars for ``num_gpus`` GPUs held for ``time_s`` seconds."""
    return gpu_hours(time_s, num_gpus) * price_usd_per_gpu_hour


def gpu_power_w(tdp_w, utilisation):
    """Board power at a utilisation in [0, 1] (linear model, see module docstring)."""
    u = np.clip(utilisation, 0.0, 1.0)
    return tdp_w * (IDLE_POWER_FRACTION + (1 - IDLE_POWER_FRACTION) * u)


def energy_j(time_s, num_gpus, tdp_w, utilisation, gpus_per_node, node_overhead_w, pue):
    """Facility energy in joules: (GPU power + node overhead) x PUE x time.

    >>> round(float(energy_j(3600, 8, 700, 1.0, 8, 4600, 1.0)) / 3.6e6, 2)  # one DGX H100 hour, kWh
    10.2
    """
    nodes = np.ceil(np.asarray(num_gpus) / gpus_per_node)
    it_power = num_gpus * gpu_power_w(tdp_w, utilisation) + nodes * node_overhead_w
    return it_power * pue * np.asarray(time_s)


def run_figures(cluster, step_time_s, num_gpus, tokens, global_batch_size, seq_len, utilisation):
    """Failure-free run totals as a dict of arrays: time_to_train_s, gpu_hours, cost_usd, energy_kwh."""
    t = time_to_train_s(step_time_s, tokens, global_batch_size, seq_len)
    e = energy_j(t, num_gpus, cluster.gpu.tdp_w, utilisation, cluster.gpus_per_node,
                 cluster.node.node_overhead_w, cluster.pue)
    return {"time_to_train_s": t, "gpu_hours": gpu_hours(t, num_gpus),
            "cost_usd": cost_usd(t, num_gpus, cluster.price_per_gpu_hour_usd), "energy_kwh": e / KWH_J}


# --- with failures, checkpoints and restarts (issue 7) ------------------------------------------
# The expected wall time is the exact renewal-reward expectation of an exponential failure
# process (Daly 2006 eq. 13, see models/reliability.py), summed over checkpoint segments;
# it splits exactly into useful + checkpoint + lost work + restart seconds.

CHINCHILLA_TOKENS_PER_PARAM = 20      # Hoffmann et al. 2022 ("Chinchilla"), Table 3: ~20 tokens/parameter
# A fine-tuning run's default budget: one epoch of Stanford Alpaca's 52,002 instruction-following examples
# (Taori et al. 2023, tatsu-lab/stanford_alpaca alpaca_data.json), each padded or packed into one training
# sequence of the run's length. Fine-tuning data has nothing to do with the model's size: 20 tokens per
# parameter would put a 70B LoRA run on 1.4 T tokens, pre-training scale.
FINETUNE_DEFAULT_SEQUENCES = 52_002
FINETUNE_OPTIMIZERS = ("lomo", "adalomo")   # full fine-tuning optimizers (Lv et al. 2023): a fine-tuning run


def is_finetuning(finetune="none", optimizer="adamw") -> bool:
    """A fine-tuning run: a PEFT method (LoRA/QLoRA/DoRA) or a fine-tuning optimizer (LOMO, AdaLomo)."""
    return str(finetune) not in ("none", "0") or str(optimizer) in FINETUNE_OPTIMIZERS


def default_token_budget(model, tokens=None, finetuning: bool = False) -> tuple[float, str]:
    """(tokens to train, how that budget was chosen): ``tokens`` when given; a fine-tuning run: one epoch of
    FINETUNE_DEFAULT_SEQUENCES sequences of the model's sequence length; pre-training: Chinchilla's 20 tokens
    per parameter.

    >>> from models.transformer import get_model
    >>> t, rule = default_token_budget(get_model("llama3-70b"), finetuning=True)
    >>> t / 1e6, rule[:40]                    # 52,002 x 8,192
    (426.000384, 'fine-tuning: one epoch of 52,002 sequenc')
    """
    if tokens:
        return float(tokens), "given (--tokens / training.tokens)"
    if finetuning:
        return (float(FINETUNE_DEFAULT_SEQUENCES * model.seq_len),
                f"fine-tuning: one epoch of {FINETUNE_DEFAULT_SEQUENCES:,} sequences of {model.seq_len:,} tokens "
                "(Stanford Alpaca's 52,002 examples, one sequence each; Taori et al. 2023)")
    return (float(CHINCHILLA_TOKENS_PER_PARAM * model.num_params),
            f"Chinchilla, {CHINCHILLA_TOKENS_PER_PARAM} tokens per parameter (Hoffmann et al. 2022)")


def segment_plan(iterations, iters_per_checkpoint):
    """(segments, iterations in the last segment): a checkpoint after every k iterations, none at the end."""
    it = np.asarray(iterations, dtype=float)
    k = np.clip(np.asarray(iters_per_checkpoint, dtype=float), 1.0, np.maximum(it, 1.0))
    nseg = np.ceil(it / k)
    return nseg, it - (nseg - 1) * k


def expected_run(step_time_s, iterations, iters_per_checkpoint, checkpoint_s, restart_s, mtbf):
    """Expected seconds of a run with failures, split exactly (arrays in, dict of arrays out).

    Keys: time_s, useful_s, checkpoint_s, lost_work_s, restart_s, failures, checkpoints, goodput.
    With an infinite MTBF and no checkpoints the time is exactly iterations x step time:
    >>> float(expected_run(2.0, 1000, 1000, 30.0, 600.0, np.inf)["time_s"])
    2000.0
    """
    nseg, last = segment_plan(iterations, iters_per_checkpoint)
    k = np.clip(np.asarray(iters_per_checkpoint, dtype=float), 1.0, None)
    full_s, last_s = k * step_time_s, last * step_time_s
    time_s = (nseg - 1) * rel.expected_segment_s(full_s, checkpoint_s, restart_s, mtbf) \
        + rel.expected_segment_s(last_s, 0.0, restart_s, mtbf)
    fail_full = rel.expected_failures_in_segment(full_s, checkpoint_s, mtbf)
    fail_last = rel.expected_failures_in_segment(last_s, 0.0, mtbf)
    failures = (nseg - 1) * fail_full + fail_last
    lost = (nseg - 1) * fail_full * rel.expected_lost_work_s(full_s + checkpoint_s, mtbf) \
        + fail_last * rel.expected_lost_work_s(last_s, mtbf)
    useful = np.asarray(iterations, dtype=float) * step_time_s
    ckpt = (nseg - 1) * checkpoint_s
    return {"time_s": time_s, "useful_s": useful, "checkpoint_s": ckpt, "lost_work_s": lost,
            "restart_s": failures * rel.expected_restart_phase_s(restart_s, mtbf), "failures": failures,
            "checkpoints": nseg - 1, "goodput": useful / time_s}


def best_iters_per_checkpoint(step_time_s, iterations, checkpoint_s, restart_s, mtbf, write_s=0.0,
                              snapshot=None):
    """Checkpoint every k iterations, k the integer nearest the exact optimum (reliability.exact_interval_s)
    that minimises the expected run time (floor or ceil). Async checkpoints (``snapshot`` = blocking
    snapshot seconds, ``write_s`` the background write) also try k = ceil(write/step), and the snapshot
    waits for the previous write when k x step < write. Returns (k, blocking checkpoint seconds)."""
    step = np.asarray(step_time_s, dtype=float)
    it = np.asarray(iterations, dtype=float)
    c0 = np.asarray(checkpoint_s if snapshot is None else snapshot, dtype=float)
    tau = rel.exact_interval_s(c0, mtbf)
    k_opt = np.where(np.isfinite(tau), tau / step, it)
    cands = [np.floor(k_opt), np.ceil(k_opt), np.ceil(np.asarray(write_s) / step)]
    best_k, best_c, best_t = None, None, None
    for k in cands:
        k = np.clip(k, 1.0, np.maximum(it, 1.0))
        c = c0 if snapshot is None else c0 + np.maximum(0.0, np.asarray(write_s) - k * step)
        t = expected_run(step, it, k, c, restart_s, mtbf)["time_s"]
        if best_t is None:
            best_k, best_c, best_t = k, c + 0 * t, t
        else:
            better = t < best_t
            best_k, best_c, best_t = np.where(better, k, best_k), np.where(better, c, best_c), np.minimum(t, best_t)
    return best_k, best_c


def run_energy_j(cluster, num_gpus, busy_s, idle_s, utilisation):
    """Facility joules: busy seconds (training, incl. lost work) at ``utilisation``, idle seconds
    (checkpoint waits, restarts) at idle power; node overhead and PUE as in energy_j."""
    busy = energy_j(busy_s, num_gpus, cluster.gpu.tdp_w, utilisation, cluster.gpus_per_node,
                    cluster.node.node_overhead_w, cluster.pue)
    idle = energy_j(idle_s, num_gpus, cluster.gpu.tdp_w, 0.0, cluster.gpus_per_node,
                    cluster.node.node_overhead_w, cluster.pue)
    return busy + idle


def checkpoint_state(model, plan, spec=None) -> tuple[float, float, float]:
    """(parameters one checkpoint saves, bytes per saved parameter, frozen bytes a restart reads besides).

    Full training saves every parameter with its optimizer state: the 16-bit weight + the optimizer's
    state and fp32 master (models.optimizers), 14 bytes for AdamW (the ReliabilitySpec default, which
    stands), 2 for LOMO (Lv et al. 2023 Sec. 3.3: no state, no master). LoRA / QLoRA / DoRA save only
    the adapters and their optimizer state (PEFT ``save_pretrained`` writes ``get_peft_model_state_dict``,
    the adapter keys only, peft/utils/save_and_load.py; the Trainer's optimizer.pt holds the state of
    the trainable parameters only); a restart also reads the frozen base (16-bit, or NF4 for QLoRA).

    >>> from models.plan import Plan
    >>> from models.transformer import get_model
    >>> m = get_model("llama2-7b")
    >>> checkpoint_state(m, Plan(finetune="lora", lora_rank=8, lora_targets="q_proj,v_proj"))[:2]   # PEFT: 4,194,304
    (4194304.0, 14.0)
    >>> checkpoint_state(m, Plan(optimizer="lomo"))[1]
    2.0
    """
    from models import finetune, optimizers
    spec = spec or rel.ReliabilitySpec()
    master = str(plan.master_weights) == "fp32"
    bpp = (spec.bytes_per_param if plan.optimizer == "adamw" and master else
           2.0 + float(optimizers.state_bytes_per_param(optimizers.code(plan.optimizer), master)))
    if plan.finetune == "none":
        return float(model.num_params), float(bpp), 0.0
    trainable = finetune.trainable_params(model, plan.finetune, plan.lora_rank, plan.lora_targets)
    quant = model.num_layers * finetune.quantized_params_per_layer(model)
    base = finetune.frozen_weight_bytes(model.num_params, quant, finetune.method_code(plan.finetune))
    return float(trainable), float(bpp), float(base)


def checkpoint_costs(cluster, num_params, tp, pp, dp, cp, zero_stage, spec=None, bytes_per_param=None,
                     restart_extra_bytes=0.0):
    """Checkpoint bytes and seconds for a plan: dict of arrays (bytes, write_s, read_s, blocking_s,
    lag_s). Blocking: blocking = write. Async: blocking = snapshot to host; the write runs behind
    and the checkpoint is durable ``lag_s`` = write seconds later (charged to each restart, first order).
    ``bytes_per_param`` (default the spec's) and ``restart_extra_bytes`` (what a restart reads besides the
    checkpoint: a fine-tuning run's frozen base) come from :func:`checkpoint_state`."""
    spec = spec or rel.ReliabilitySpec()
    nbytes = rel.checkpoint_bytes(num_params, spec.bytes_per_param if bytes_per_param is None else bytes_per_param)
    writers = rel.checkpoint_writer_gpus(tp, pp, dp, cp, zero_stage)
    gpn = cluster.gpus_per_node
    write = rel.checkpoint_write_s(nbytes, writers, gpn, spec.node_write_bytes_per_s, spec.fs_write_bytes_per_s)
    replicas = np.where(np.asarray(zero_stage) >= 1, 1, np.asarray(dp) * cp)   # every replica reads its copy
    n_all = np.asarray(tp) * pp * dp * cp
    read = rel.checkpoint_write_s((nbytes + restart_extra_bytes) * replicas, n_all, gpn, spec.node_write_bytes_per_s,
                                  spec.fs_write_bytes_per_s)
    snap = rel.snapshot_s(nbytes, writers, spec.d2h_bytes_per_s)
    blocking = snap if spec.async_checkpoint else write
    return {"bytes": nbytes, "writer_gpus": writers, "write_s": write, "read_s": read, "snapshot_s": snap,
            "blocking_s": blocking, "lag_s": write if spec.async_checkpoint else 0.0 * write}


def run_figures_with_failures(cluster, step_time_s, num_gpus, tokens, global_batch_size, seq_len, utilisation,
                              ckpt, spec=None, interval_s=None):
    """Run totals with failures (arrays ok): run_figures' keys for the expected run plus the split,
    the MTBF, the checkpoint interval and goodput. ``ckpt`` is checkpoint_costs(...); ``interval_s``
    None picks the optimum, else the compute seconds between checkpoints (rounded to iterations)."""
    spec = spec or rel.ReliabilitySpec()
    num_nodes = np.ceil(np.asarray(num_gpus) / cluster.gpus_per_node)
    mtbf = rel.mtbf_s(rel.job_failure_rate_per_s(num_gpus, num_nodes, spec.gpu_failures_per_gpu_hour,
                                                 spec.node_failures_per_node_hour, spec.job_failures_per_hour))
    iters = iterations_to_train(tokens, global_batch_size, seq_len)
    restart = spec.detect_s + spec.restart_s + ckpt["read_s"] + ckpt["lag_s"]
    step = np.asarray(step_time_s, dtype=float)
    if interval_s is None:
        k, c = best_iters_per_checkpoint(step, iters, ckpt["blocking_s"], restart, mtbf, ckpt["write_s"],
                                         ckpt["snapshot_s"] if spec.async_checkpoint else None)
    else:
        k = np.clip(np.round(np.asarray(interval_s, dtype=float) / step), 1.0, np.maximum(iters, 1.0))
        c = ckpt["blocking_s"] + (np.maximum(0.0, ckpt["write_s"] - k * step) if spec.async_checkpoint else 0.0)
    r = expected_run(step, iters, k, c, restart, mtbf)
    busy, idle = r["useful_s"] + r["lost_work_s"], r["checkpoint_s"] + r["restart_s"]
    e = run_energy_j(cluster, num_gpus, busy, idle, utilisation)
    price = cluster.price_per_gpu_hour_usd
    return {"time_to_train_s": r["time_s"], "gpu_hours": gpu_hours(r["time_s"], num_gpus),
            "cost_usd": cost_usd(r["time_s"], num_gpus, price), "energy_kwh": e / KWH_J,
            "failure_free_s": r["useful_s"], "useful_s": r["useful_s"], "checkpoint_s": r["checkpoint_s"],
            "lost_work_s": r["lost_work_s"], "restart_s": r["restart_s"], "expected_failures": r["failures"],
            "num_checkpoints": r["checkpoints"], "goodput": r["goodput"], "mtbf_s": mtbf, "iterations": iters,
            "iters_per_checkpoint": k, "checkpoint_interval_s": k * step, "checkpoint_blocking_s": c,
            "restart_total_s": restart + 0 * step,
            "young_interval_s": rel.young_interval_s(ckpt["blocking_s"], mtbf),
            "daly_interval_s": rel.daly_interval_s(ckpt["blocking_s"], mtbf),
            "exact_interval_s": rel.exact_interval_s(ckpt["blocking_s"], mtbf)}


def _f(x) -> float:
    return float(np.asarray(x))


@dataclass(frozen=True, slots=True)
class TrainingRun:
    """Expected time, cost and energy to train ``tokens`` tokens with failures (issue 7)."""
    tokens: float
    iterations: int
    step_time_s: float                # failure-free iteration time
    num_gpus: int
    utilisation: float                # GPU busy fraction of a step (compute / step time), for power
    mtbf_s: float                     # mean time between job failures
    checkpoint_bytes: float           # unique model + optimizer state (LoRA/QLoRA/DoRA: the adapters')
    checkpoint_write_s: float         # write to storage
    checkpoint_blocking_s: float      # training stalls this long per checkpoint
    restart_s: float                  # detection + restart + checkpoint read (+ async lag)
    iters_per_checkpoint: int
    checkpoint_interval_s: float      # compute seconds between checkpoints (the chosen interval)
    young_interval_s: float           # Young 1974 sqrt(2CM)
    daly_interval_s: float            # Daly 2006 eq. 20
    exact_interval_s: float           # exact optimum of Daly eq. 13 (Lambert W)
    failure_free_s: float             # iterations x step time, no failures and no checkpoints
    time_to_train_s: float            # expected wall time with failures
    checkpoint_s: float               # of which: checkpoint stalls
    lost_work_s: float                # of which: work redone after failures
    restart_total_s: float            # of which: detection and restarts
    expected_failures: float
    goodput: float                    # failure_free_s / time_to_train_s
    gpu_hours: float
    cost_usd: float
    energy_kwh: float
    failure_free_cost_usd: float
    failure_free_energy_kwh: float
    async_checkpoint: bool = False

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def time_to_train(model, cluster, plan, tokens: float, est=None, spec=None,
                  checkpoint_interval_s: float | None = None) -> TrainingRun:
    """Expected time, GPU-hours, dollars and energy to train ``tokens`` tokens on ``plan``, with
    failures, checkpoints and restarts. ``est`` is models.estimate.estimate(...) (computed when None);
    ``checkpoint_interval_s`` None means the optimal interval."""
    if not np.isfinite(tokens) or tokens <= 0:
        raise ValueError(f"tokens: must be a positive number, got {tokens!r}")
    if checkpoint_interval_s is not None and not checkpoint_interval_s > 0:
        raise ValueError(f"checkpoint_interval: must be > 0 seconds, got {checkpoint_interval_s!r}")
    if est is None:
        from models.estimate import estimate
        est = estimate(model, cluster, plan)
    spec = spec or rel.ReliabilitySpec()
    util = est.compute_s / est.step_time_s
    saved, bpp, base = checkpoint_state(model, plan, spec)     # fine-tuning: the adapters, not the model
    ckpt = checkpoint_costs(cluster, saved, plan.tp, plan.pp, plan.dp, plan.cp, int(plan.zero_stage), spec, bpp, base)
    r = run_figures_with_failures(cluster, est.step_time_s, plan.world_size, tokens, plan.global_batch_size,
                                  model.seq_len, util, ckpt, spec, checkpoint_interval_s)
    ff = run_figures(cluster, est.step_time_s, plan.world_size, tokens, plan.global_batch_size, model.seq_len, util)
    return TrainingRun(
        tokens=float(tokens), iterations=int(_f(r["iterations"])), step_time_s=est.step_time_s,
        num_gpus=plan.world_size, utilisation=float(util), mtbf_s=_f(r["mtbf_s"]),
        checkpoint_bytes=_f(ckpt["bytes"]), checkpoint_write_s=_f(ckpt["write_s"]),
        checkpoint_blocking_s=_f(r["checkpoint_blocking_s"]), restart_s=_f(r["restart_total_s"]),
        iters_per_checkpoint=int(_f(r["iters_per_checkpoint"])), checkpoint_interval_s=_f(r["checkpoint_interval_s"]),
        young_interval_s=_f(r["young_interval_s"]), daly_interval_s=_f(r["daly_interval_s"]),
        exact_interval_s=_f(r["exact_interval_s"]), failure_free_s=_f(ff["time_to_train_s"]),
        time_to_train_s=_f(r["time_to_train_s"]), checkpoint_s=_f(r["checkpoint_s"]),
        lost_work_s=_f(r["lost_work_s"]), restart_total_s=_f(r["restart_s"]),
        expected_failures=_f(r["expected_failures"]), goodput=_f(r["goodput"]), gpu_hours=_f(r["gpu_hours"]),
        cost_usd=_f(r["cost_usd"]), energy_kwh=_f(r["energy_kwh"]), failure_free_cost_usd=_f(ff["cost_usd"]),
        failure_free_energy_kwh=_f(ff["energy_kwh"]), async_checkpoint=spec.async_checkpoint)


def estimate_extras(model, cluster, plan, est, tokens: float | None = None) -> tuple[dict, TrainingRun]:
    """The "cost" figures of `clustersim estimate --json` (per-iteration GPU-hours, dollars, energy;
    reliability figures; time to train ``tokens``, by default a Chinchilla budget of 20
    tokens/parameter, or for a fine-tuning plan one epoch of a stated dataset (default_token_budget),
    with failures) and the TrainingRun behind them. Never raises for a valid estimate."""
    n = plan.world_size
    util = est.compute_s / est.step_time_s if est.step_time_s > 0 else 0.0
    tokens_per_iter = plan.global_batch_size * model.seq_len
    e_it = energy_j(est.step_time_s, n, cluster.gpu.tdp_w, util, cluster.gpus_per_node,
                    cluster.node.node_overhead_w, cluster.pue)
    cost_it = _f(cost_usd(est.step_time_s, n, cluster.price_per_gpu_hour_usd))
    if tokens or not is_finetuning(plan.finetune, plan.optimizer):   # pre-training: as it always was
        rule = "given (--tokens)" if tokens else "Chinchilla, 20 tokens per parameter (Hoffmann 2022)"
        tokens = tokens or CHINCHILLA_TOKENS_PER_PARAM * model.num_params
    else:
        tokens, rule = default_token_budget(model, None, True)
    run = time_to_train(model, cluster, plan, tokens, est=est)
    out = {"gpu_hours_per_iteration": _f(gpu_hours(est.step_time_s, n)), "cost_usd_per_iteration": cost_it,
           "energy_kwh_per_iteration": _f(e_it) / KWH_J, "cost_usd_per_million_tokens": cost_it / tokens_per_iter * 1e6,
           "price_usd_per_gpu_hour": cluster.price_per_gpu_hour_usd, "utilisation": util,
           "default_tokens": tokens, "default_tokens_rule": rule,
           "time_to_train_s": run.time_to_train_s, "failure_free_time_to_train_s": run.failure_free_s,
           "gpu_hours": run.gpu_hours, "cost_usd": run.cost_usd, "energy_kwh": run.energy_kwh,
           "goodput": run.goodput, "mtbf_s": run.mtbf_s, "expected_failures": run.expected_failures,
           "checkpoint_bytes": run.checkpoint_bytes, "checkpoint_write_s": run.checkpoint_write_s,
           "checkpoint_interval_s": run.checkpoint_interval_s, "iters_per_checkpoint": run.iters_per_checkpoint,
           "young_interval_s": run.young_interval_s}
    return out, run
