"""Failures, checkpoints and restarts of a synchronous training job (pure, array-friendly).

Failure process. Every component fails as an independent Poisson process, so the job (which
stops when any GPU or node stops: a synchronous job) fails at the summed rate
    lambda_job = num_gpus * lambda_gpu + num_nodes * lambda_node + lambda_job_extra,
    MTBF = 1 / lambda_job.
Default rates come from the Llama 3 paper (Dubey et al. 2024, "The Llama 3 Herd of Models",
Sec. 3.3.4 and Table 5): 419 unexpected interruptions in a 54-day snapshot of pre-training
on 16,384 H100 GPUs (2,048 Grand Teton servers of 8); the table's categories are split here
into per-GPU and per-node causes (``LLAMA3_TABLE5``).

Checkpoints. Every ``tau`` seconds of compute the job saves its state (cost ``C`` seconds of
blocking time); a failure rolls back to the last checkpoint, and the job pays a restart
``R`` (detection + re-scheduling + initialisation + reading the checkpoint).
- Young 1974 ("A first order approximation to the optimum checkpoint interval", CACM 17(9)):
    tau_opt = sqrt(2 C M).
- Daly 2006 ("A higher order estimate of the optimum checkpoint interval for restart
  dumps", FGCS 22(3)), eq. 20: tau_opt = sqrt(2CM) [1 + sqrt(C/(2M))/3 + C/(18M)] - C for C < 2M,
  else M; and eq. 13, the exact expected wall time of a segment of ``w`` seconds of work
  under exponential failures (restarts may fail too):
    T(w) = M exp(R/M) (exp((w + C)/M) - 1).
- The exact optimum of T(tau)/tau (minimise the expected wall time per unit of work):
  d/dtau = 0 gives exp((tau + C)/M)(1 - tau/M) = 1, i.e.
    tau_opt = M (1 + W0(-exp(-(1 + C/M)))),
  W0 the principal branch of Lambert's W (Bougeret et al. 2011, "Checkpointing strategies
  for parallel jobs", SC'11, Sec. 3.1, derive the same for the expected makespan).
Checkpoint size (ZeRO paper accounting, Rajbhandari et al. 2020, Sec. 3.1): the unique
model state is 2 bytes of bf16 weights + K = 12 bytes of fp32 master weights and Adam
moments per parameter = 14 bytes/parameter; gradients are not saved.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from models.units import GB, HOUR_S

# Llama 3 paper, Table 5: root causes of the 419 unexpected interruptions in 54 days on
# 16,384 H100 GPUs. (The paper's percentage column does not match its counts, e.g. 148/419 is
# 35.3% not 30.1%; the counts sum to 419 and are used.) Scope: which population each
# category's rate is spread over. "gpu" scope for software/unknown causes is an assumption:
# NCCL hangs and software bugs grow with the number of ranks.
LLAMA3_TABLE5 = {
    "faulty_gpu": (148, "gpu"), "gpu_hbm3_memory": (72, "gpu"), "software_bug": (54, "gpu"),
    "network_switch_cable": (35, "node"), "host_maintenance_unplanned": (32, "node"), "gpu_sram_memory": (19, "gpu"),
    "gpu_system_processor": (17, "gpu"), "nic": (7, "node"), "nccl_watchdog_timeout": (7, "gpu"),
    "silent_data_corruption": (6, "gpu"), "gpu_thermal_interface_sensor": (6, "gpu"), "ssd": (3, "node"),
    "power_supply": (3, "node"), "server_chassis": (2, "node"), "io_expansion_board": (2, "node"),
    "dependency": (2, "gpu"), "cpu": (2, "node"), "system_memory": (2, "node"),
}
LLAMA3_DAYS = 54.0
LLAMA3_GPUS = 16384
LLAMA3_NODES = 2048                      # Grand Teton: 8 GPUs per server (paper Sec. 3.3.1)
LLAMA3_INTERRUPTIONS = sum(c for c, _ in LLAMA3_TABLE5.values())   # 419


def _llama3_rate(scope: str, population: int) -> float:
    count = sum(c for c, s in LLAMA3_TABLE5.values() if s == scope)
    return count / (LLAMA3_DAYS * 24.0 * population)


LLAMA3_GPU_FAILURES_PER_GPU_HOUR = _llama3_rate("gpu", LLAMA3_GPUS)      # 331 / (1296 h x 16384)
LLAMA3_NODE_FAILURES_PER_NODE_HOUR = _llama3_rate("node", LLAMA3_NODES)  # 88 / (1296 h x 2048)

BYTES_PER_PARAM_CHECKPOINT = 14          # bf16 weights 2 + fp32 master 4 + Adam m 4 + v 4 (ZeRO paper K=12)


@dataclass(frozen=True, slots=True)
class ReliabilitySpec:
    """Failure, checkpoint and restart parameters; every default names its source."""
    gpu_failures_per_gpu_hour: float = LLAMA3_GPU_FAILURES_PER_GPU_HOUR
    # Llama 3 Table 5, GPU + software categories (331 of 419) / (54 d x 16,384 GPUs)
    node_failures_per_node_hour: float = LLAMA3_NODE_FAILURES_PER_NODE_HOUR
    # Llama 3 Table 5, host + network + unplanned maintenance (88 of 419) / (54 d x 2,048 servers)
    job_failures_per_hour: float = 0.0      # extra whole-job rate (user code, scheduler); none assumed
    detect_s: float = 300.0
    # assumed: crashes (Xid, process exit) are seen in seconds, hangs only at the NCCL watchdog
    # (PyTorch default process-group timeout 10 min); 5 min is taken as a middle value
    restart_s: float = 600.0
    # assumed: re-queue, swap in a spare node, start 10^4 processes and NCCL communicators; not
    # published by Meta (Llama 3 Sec. 3.3.4 only says job start-up time was reduced)
    fs_write_bytes_per_s: float = 2e12
    # Llama 3 Sec. 3.3.1: Tectonic sustains 2 TB/s (peaks at 7 TB/s); reads taken equal
    node_write_bytes_per_s: float = 5 * GB
    # assumed: one storage client per node (a 100-200 Gb/s front-end NIC) sustaining ~5 GB/s
    d2h_bytes_per_s: float = 25 * GB
    # assumed: GPU->pinned host copy for an async snapshot, ~40% of PCIe Gen5 x16 (64 GB/s one
    # way) as 8 GPUs share the host memory; used only with async checkpoints
    async_checkpoint: bool = False        # blocking by default (Megatron-LM's default save)
    bytes_per_param: float = BYTES_PER_PARAM_CHECKPOINT

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "async_checkpoint" and (not np.isfinite(v) or v < 0):
                raise ValueError(f"reliability.{f.name}: must be a finite number >= 0, got {v!r}")
        for name in ("fs_write_bytes_per_s", "node_write_bytes_per_s", "d2h_bytes_per_s", "bytes_per_param"):
            if getattr(self, name) <= 0:
                raise ValueError(f"reliability.{name}: must be > 0")


# --- failure rates -------------------------------------------------------------------------

def job_failure_rate_per_s(num_gpus, num_nodes, gpu_per_hour, node_per_hour, job_per_hour=0.0):
    """Failures per second of a synchronous job: sum of independent Poisson rates.

    Llama 3 (Table 5): 419 interruptions in 54 days on 16,384 GPUs / 2,048 nodes:
    >>> round(54 * 86400 * float(job_failure_rate_per_s(16384, 2048, LLAMA3_GPU_FAILURES_PER_GPU_HOUR,
    ...                                                   LLAMA3_NODE_FAILURES_PER_NODE_HOUR)))
    419
    """
    return (np.asarray(num_gpus) * gpu_per_hour + np.asarray(num_nodes) * node_per_hour + job_per_hour) / HOUR_S


def mtbf_s(rate_per_s):
    """Mean time between job failures in seconds (inf for a zero rate)."""
    r = np.asarray(rate_per_s, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(r > 0, 1.0 / np.where(r > 0, r, 1.0), np.inf)


# --- checkpoint size and time --------------------------------------------------------------

def checkpoint_bytes(num_params, bytes_per_param=BYTES_PER_PARAM_CHECKPOINT):
    """Unique model + optimizer state saved by one checkpoint, bytes (ZeRO paper, Sec. 3.1).

    >>> round(float(checkpoint_bytes(405e9)) / 1e12, 2)  # Llama 3 405B, TB
    5.67
    """
    return np.asarray(num_params, dtype=float) * bytes_per_param


def checkpoint_writer_gpus(tp, pp, dp, cp, zero_stage):
    """GPUs that write a distinct shard: one model replica (tp*pp) unless the optimizer state is
    sharded over the data-parallel ranks (ZeRO >= 1 / distributed optimizer over dp*cp), when
    every rank writes its own shard (Megatron-LM distributed checkpointing)."""
    return np.asarray(tp) * pp * np.where(np.asarray(zero_stage) >= 1, np.asarray(dp) * cp, 1)


def checkpoint_write_s(ckpt_bytes, writer_gpus, gpus_per_node, node_bytes_per_s, fs_bytes_per_s):
    """Seconds to write a checkpoint: bytes / min(writer nodes x per-node rate, file-system rate).

    >>> float(checkpoint_write_s(5.67e12, 16384, 8, 5e9, 2e12))  # Llama 3: Tectonic-bound
    2.835
    """
    nodes = np.ceil(np.asarray(writer_gpus) / gpus_per_node)
    return np.asarray(ckpt_bytes) / np.minimum(nodes * node_bytes_per_s, fs_bytes_per_s)


def snapshot_s(ckpt_bytes, writer_gpus, d2h_bytes_per_s):
    """Blocking seconds of an async checkpoint: copy each writer's shard to host memory."""
    return np.asarray(ckpt_bytes) / np.asarray(writer_gpus) / d2h_bytes_per_s


# --- optimal interval ------------------------------------------------------------------------

def young_interval_s(checkpoint_s, mtbf):
    """Young 1974 first-order optimum compute time between checkpoints: sqrt(2 C M), seconds.

    >>> round(float(young_interval_s(60, 24 * 3600)), 1)  # C = 1 min, M = 1 day
    3219.9
    """
    return np.sqrt(2.0 * np.asarray(checkpoint_s) * mtbf)


def daly_interval_s(checkpoint_s, mtbf):
    """Daly 2006 eq. 20 higher-order optimum: sqrt(2CM)[1 + sqrt(C/2M)/3 + C/(18M)] - C (C < 2M), else M."""
    c, m = np.asarray(checkpoint_s, dtype=float), np.asarray(mtbf, dtype=float)
    x = c / (2.0 * m)
    tau = np.sqrt(2.0 * c * m) * (1.0 + np.sqrt(x) / 3.0 + x / 9.0) - c
    return np.where(c < 2.0 * m, tau, m)


def lambert_w0(z):
    """Principal branch of Lambert's W for z in [-1/e, inf) (vectorised): ``scipy.special.lambertw``, k=0.

    >>> round(float(lambert_w0(1.0)), 10)  # the omega constant
    0.5671432904
    """
    z = np.asarray(z, dtype=float)
    from scipy.special import lambertw  # imported on first use (scipy.special costs ~0.2 s at start-up)
    return np.where(z <= -1.0 / np.e, -1.0, lambertw(np.maximum(z, -1.0 / np.e), 0).real)


def exact_interval_s(checkpoint_s, mtbf):
    """Exact optimum of the expected wall time per unit of work under Daly's eq. 13 model:
    tau = M (1 + W0(-exp(-(1 + C/M)))), seconds; inf when M is inf.

    Tends to Young's sqrt(2CM) as C/M -> 0:
    >>> round(float(exact_interval_s(1.0, 1e6)) / float(young_interval_s(1.0, 1e6)), 3)
    1.0
    """
    c, m = np.asarray(checkpoint_s, dtype=float), np.asarray(mtbf, dtype=float)
    finite = np.isfinite(m)
    mm = np.where(finite, m, 1.0)
    x = c / mm
    # 1 + W0(z) near the branch point z = -1/e: series in p = sqrt(2(ez + 1)) = sqrt(-2 expm1(-x))
    # (Corless et al. 1996, "On the Lambert W function", eq. 4.22), scipy's lambertw elsewhere
    p = np.sqrt(-2.0 * np.expm1(-x))
    series = p * (1 - p / 3 + 11 / 72 * p ** 2 - 43 / 540 * p ** 3 + 769 / 17280 * p ** 4 - 221 / 8505 * p ** 5)
    one_plus_w = np.array(series, dtype=float, ndmin=1)
    far = np.broadcast_to(p >= 0.05, one_plus_w.shape)
    if far.any():
        one_plus_w[far] = 1.0 + lambert_w0(-np.exp(-(1.0 + np.broadcast_to(x, far.shape)[far])))
    return np.where(finite, mm * one_plus_w.reshape(np.shape(series)), np.inf)


# --- expected time and lost work ---------------------------------------------------------------

def expected_segment_s(work_s, checkpoint_s, restart_s, mtbf):
    """Daly 2006 eq. 13: expected wall seconds to get ``work_s`` of compute plus its checkpoint
    done: M e^{R/M} (e^{(w+C)/M} - 1); exactly w + C when M is inf (no failures).

    >>> float(expected_segment_s(100.0, 10.0, 50.0, np.inf))
    110.0
    """
    s = np.asarray(work_s, dtype=float) + checkpoint_s
    lam = 1.0 / np.asarray(mtbf, dtype=float)
    safe = np.where(lam > 0, lam, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(lam > 0, np.exp(restart_s * safe) * np.expm1(s * safe) / safe, s)


def expected_failures_in_segment(work_s, checkpoint_s, mtbf):
    """Expected failed attempts before a segment of w + C seconds completes: e^{(w+C)/M} - 1."""
    with np.errstate(over="ignore"):
        return np.expm1((np.asarray(work_s, dtype=float) + checkpoint_s) / np.asarray(mtbf, dtype=float))


def expected_lost_work_s(segment_s, mtbf):
    """Expected seconds of a failed attempt (work since the last checkpoint, lost):
    E[x | x < S] for x ~ Exp(1/M) = M - S / (e^{S/M} - 1); first order S/2 (Young 1974).

    >>> round(float(expected_lost_work_s(100.0, 1e9)), 4)  # S << M: half the segment
    50.0
    """
    s, m = np.asarray(segment_s, dtype=float), np.asarray(mtbf, dtype=float)
    x = np.where(np.isfinite(m), s / np.where(np.isfinite(m), m, 1.0), 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = m - s / np.where(np.expm1(x) > 0, np.expm1(x), 1.0)
    return np.where(np.isfinite(m) & (x > 1e-6), exact, s / 2.0 - s * x / 12.0)


def expected_restart_phase_s(restart_s, mtbf):
    """Expected seconds to complete a restart of R seconds that may itself fail: M (e^{R/M} - 1)."""
    m = np.asarray(mtbf, dtype=float)
    finite = np.isfinite(m)
    mm = np.where(finite, m, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(finite, mm * np.expm1(np.where(finite, restart_s / mm, 0.0)), restart_s)


def first_order_goodput(interval_s, checkpoint_s, restart_s, mtbf):
    """Young's first-order useful fraction: 1 - C/(tau + C) - (R + (tau + C)/2)/M (clipped at 0)."""
    tau = np.asarray(interval_s, dtype=float)
    waste = checkpoint_s / (tau + checkpoint_s) + (restart_s + (tau + checkpoint_s) / 2.0) / np.asarray(mtbf)
    return np.clip(1.0 - waste, 0.0, 1.0)
