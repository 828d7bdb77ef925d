"""Per-GPU kernel time model: GEMMs with wave quantisation, memory-bound ops at HBM speed.

A GEMM runs at the rate measured for its size on its GPU architecture (models.kernel_tables: a
per-wave efficiency read off measured matmul sweeps times this shape's wave utilisation, NVIDIA
"Matrix Multiplication Background User's Guide", Sec. "Wave quantization"; :func:`gemm_time_at_s`),
or, for a part without a table, at its best achieved matmul rate (MAMF) times the wave
utilisation (:func:`gemm_time_s`); never faster than moving its operands through HBM (roofline,
Williams et al. 2009). Functions accept numpy arrays.
"""

from __future__ import annotations

import numpy as np

from models import numeric as num

# cuBLAS/CUTLASS pick large 128x256 output tiles for big bf16 GEMMs on Ampere/Hopper
# (NVIDIA Matrix Multiplication Background guide, "Tile quantization"). With this tile the
# model gives 193 / 771 / 770 TFLOP/s for N=1024/2048/8192 square bf16 GEMMs on H100 against
# 177 / 677 / 798 measured (hardware_measured.yaml, torch-performance-test-data #79).
TILE_M, TILE_N = 128, 256

# Best achieved HBM bandwidth of a streaming kernel: 1.80 of 2.04 TB/s (88%) on A100 80GB,
# "around 90%" for the best kernels in NVIDIA's GTC talk (NVIDIA developer forum thread 339083).
MEMORY_BOUND_EFFICIENCY = 0.88

# Minimum duration of one kernel (launch + ramp + tail), order of a few microseconds on
# Ampere/Hopper (NVIDIA CUDA C++ Best Practices Guide, "kernel launch overhead").
KERNEL_OVERHEAD_S = 3e-6


def wave_utilisation(m, n, num_sms):
    """Fraction of SM time doing useful tiles for an m x n GEMM output (dimensionless).

    >>> round(float(wave_utilisation(1024, 1024, 132)), 3)
    0.242
    """
    def util(tm, tn):
        tiles = num.ceil(m / tm) * num.ceil(n / tn)
        waves = num.ceil(tiles / num_sms)
        return tiles / (waves * num_sms)
    return num.maximum(util(TILE_M, TILE_N), util(TILE_N, TILE_M))


def gemm_time_s(m, n, k, peak_flops_per_s, gemm_efficiency, num_sms, hbm_bytes_per_s, bytes_per_elem=2):
    """Seconds for one (m x k) @ (k x n) GEMM: max(compute at MAMF x wave use, HBM traffic) + overhead.

    >>> t = gemm_time_s(8192, 8192, 8192, 989e12, 0.803, 132, 3.35e12)
    >>> round(2 * 8192**3 / t / 1e12)
    768
    """
    flops = 2.0 * m * n * k
    t_compute = flops / (peak_flops_per_s * gemm_efficiency * wave_utilisation(m, n, num_sms))
    t_memory = bytes_per_elem * (m * k + k * n + m * n) / (hbm_bytes_per_s * MEMORY_BOUND_EFFICIENCY)
    return num.maximum(t_compute, t_memory) + KERNEL_OVERHEAD_S


def gemm_time_at_s(m, n, k, achieved_flops_per_s, hbm_bytes_per_s, bytes_per_elem=2):
    """Seconds for one (m x k) @ (k x n) GEMM run at ``achieved_flops_per_s`` (its shape's measured rate,
    wave quantisation included), never faster than its HBM traffic, plus the kernel overhead.

    >>> round(float(gemm_time_at_s(8192, 8192, 8192, 797.5e12, 3.35e12)) * 1e3, 3)
    1.382
    """
    t_compute = 2.0 * m * n * k / achieved_flops_per_s
    t_memory = bytes_per_elem * (m * k + k * n + m * n) / (hbm_bytes_per_s * MEMORY_BOUND_EFFICIENCY)
    return num.maximum(t_compute, t_memory) + KERNEL_OVERHEAD_S


def memory_bound_time_s(num_bytes, hbm_bytes_per_s, num_kernels=1):
    """Seconds to stream ``num_bytes`` through HBM in ``num_kernels`` elementwise kernels."""
    return num_bytes / (hbm_bytes_per_s * MEMORY_BOUND_EFFICIENCY) + num_kernels * KERNEL_OVERHEAD_S


# Tensor-core rate against the board power limit. Under a power cap the GPU lowers its SM clock (and its
# voltage with it: dynamic power C V^2 f with V roughly proportional to f in the DVFS range), so the
# sustained rate of a power-bound kernel scales as the cube root of the power limit. Checked against the
# datasheets of one die at two board powers: GH100 with 132 SMs, H100 SXM 989 TFLOP/s dense bf16 at 700 W
# and H100 NVL 835 TFLOP/s at 400 W (NVIDIA H100 datasheet, 2023): (400/700)^(1/3) = 0.830 against
# 835/989 = 0.844 (exponent 0.30). HBM-bound kernels keep their rate (the memory clock is not lowered).
POWER_CLOCK_EXPONENT = 1.0 / 3.0


def power_clock_ratio(power_limit_w, tdp_w):
    """Sustained tensor-core rate at a board power limit of ``power_limit_w`` relative to the rate at the
    part's TDP ``tdp_w``: (limit / TDP)^(1/3), at most 1 (a limit above TDP gains nothing). 0 or no TDP: 1.

    >>> round(float(power_clock_ratio(400, 700)), 3)
    0.83
    >>> float(power_clock_ratio(0, 700)), float(power_clock_ratio(800, 700))
    (1.0, 1.0)
    """
    p, t = np.asarray(power_limit_w, dtype=float), np.asarray(tdp_w, dtype=float)
    ok = (p > 0) & (t > 0)
    return np.where(ok, np.minimum(1.0, np.where(ok, p, 1.0) / np.where(ok, t, 1.0)) ** POWER_CLOCK_EXPONENT, 1.0)
