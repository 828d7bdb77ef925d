"""Time to train, GPU-hours, dollars and energy of a run (failure-free core; array-friendly).

The reliability model (failures, checkpoints, restarts, goodput) builds on these.
GPU power at load: P = P_idle + (TDP - P_idle) * utilisation, a linear power model
(Fan, Weber, Barroso 2007, "Power provisioning for a warehouse-sized computer", Sec. 4);
idle taken as 25% of TDP (an assumption: NVIDIA does not publish idle power; nvidia-smi
shows ~60-100 W idle for 400-700 W parts). Node overhead and PUE come from the cluster spec.
"""

from __future__ import annotations

import numpy as np

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
