"""A measured hardware profile (from ``clustersim calibrate``) and the kernel-time model that
uses it in place of datasheet defaults.

Without a profile, kernel times come from models.kernel_tables (GEMMs by shape from measured
matmul sweeps with wave quantisation, attention by kernel), models.efficiency (HBM roofline; MAMF x
wave quantisation for parts without a GEMM table). With one, GEMM efficiency
is interpolated from the measured table by GEMM size (log2 FLOPs), attention and
memory-bound rates are the measured ones, and so are each collective's latency (alpha) and bus
bandwidth (models.estimate passes them to models.collectives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models import collectives as coll
from models import efficiency as eff
from models import kernel_tables as kt
from models import numeric as num


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    device: str                               # e.g. "NVIDIA H100 80GB HBM3" or "cpu: AMD EPYC ..."
    source: str                               # provenance: driver, torch version, date, host
    dtype: str = "bf16"                       # dtype the GEMM table was measured in
    peak_flops_per_s: float = 0.0             # the peak the efficiencies are relative to
    gemm_log2_flops: tuple = ()               # log2(2mnk) of measured GEMMs, ascending
    gemm_efficiency: tuple = ()               # achieved / peak at those sizes
    attn_fwd_efficiency: float | None = None  # achieved / peak, causal SDPA forward
    attn_bwd_efficiency: float | None = None  # achieved / peak, causal SDPA backward (2.5x fwd FLOPs)
    memory_bytes_per_s: float | None = None   # achieved streaming bandwidth of elementwise ops
    kernel_overhead_s: float | None = None    # smallest kernel's time
    allreduce_alpha_s: float | None = None    # fitted per-collective latency
    allreduce_busbw_bytes_per_s: float | None = None  # fitted bus bandwidth (this device's group)
    collective_busbw_bytes_per_s: tuple = ()  # ((kind, fitted bus bytes/s), ...) for each measured kind
    collective_alpha_s: tuple = ()            # ((kind, fitted latency s), ...) for each measured kind
    collective_world: int = 0                 # ranks (of one node) the collectives were measured over
    collective_points: tuple = ()             # ((kind, ((bytes, seconds), ...)), ...) measured single collectives

    def busbw_ratio(self, kind: str) -> float:
        """Measured bus bandwidth of ``kind`` over that of all-reduce (1 when either is unmeasured)."""
        table = dict(self.collective_busbw_bytes_per_s)
        ref = table.get("all_reduce") or self.allreduce_busbw_bytes_per_s
        return table[kind] / ref if ref and table.get(kind) else 1.0

    def latency_s(self, kind: str) -> float | None:
        """Measured latency of one collective of ``kind`` (the alpha of the fit); None when unmeasured.

        >>> HardwareProfile("cpu", "test", collective_alpha_s=(("all_gather", 7e-4),)).latency_s("all_gather")
        0.0007
        >>> HardwareProfile("cpu", "test", allreduce_alpha_s=3e-3).latency_s("all_reduce")
        0.003
        """
        table = dict(self.collective_alpha_s)
        if kind in table:
            return table[kind]
        return self.allreduce_alpha_s if kind == "all_reduce" else None

    def collective(self, kind: str) -> coll.Measured | None:
        """What was measured of ``kind`` (latency and timed sizes) for models.collectives; None if nothing."""
        alpha = self.latency_s(kind)
        pts = sorted(dict(self.collective_points).get(kind, ()))
        if alpha is None and len(pts) < 2:
            return None
        xs = tuple(float(np.log2(b)) for b, _ in pts) if len(pts) >= 2 else ()
        ys = tuple(float(np.log2(t)) for _, t in pts) if len(pts) >= 2 else ()
        return coll.Measured(alpha, self.collective_world, xs, ys)

    def __post_init__(self) -> None:
        if len(self.gemm_log2_flops) != len(self.gemm_efficiency):
            raise ValueError("profile: gemm_log2_flops and gemm_efficiency must have the same length")
        if any(e <= 0 for e in self.gemm_efficiency):
            raise ValueError("profile: gemm_efficiency values must be > 0")


@dataclass(frozen=True, slots=True)
class KernelModel:
    """Kernel durations for one GPU (and optional measured profile); accepts numpy arrays."""
    peak_flops_per_s: float
    gemm_efficiency: float
    num_sms: int
    hbm_bytes_per_s: float
    attn_fwd_efficiency: float
    attn_bwd_efficiency: float
    profile: HardwareProfile | None = None
    attn_peak_flops_per_s: float = 0.0       # attention runs in 16-bit even when GEMMs run in fp8
    cast_bytes_per_elem: float = 0.0         # fp8: quantising each GEMM input (read 2 B, write 1 B)
    clock_ratio: float = 1.0                 # sustained / burst tensor-core clock (GpuSpec.sustained_clock_ratio)
    arch: str = ""                           # GPU architecture (models.kernel_tables.gpu_arch)
    attn_flat: bool = True                   # attn_*_efficiency cap every kernel (a profile / explicit values)
    gemm_table: tuple | None = None          # (arch, dtype) of the measured GEMM table (models.kernel_tables)
    gemm_table_scale: float = 1.0            # clock ratio x (fp8 MAMF / bf16 MAMF) applied to that table

    def attention_efficiency(self, kernel: str, head_dim, seq_len, causal: bool, pss: str):
        """Fraction of ``attn_peak_flops_per_s`` an attention kernel sustains on blocks of ``seq_len``
        tokens (models.kernel_tables, at the sustained clock); the flat attn_*_efficiency when measured
        or given (a calibration profile), capped at flash1's fraction for flash1."""
        if type(seq_len) in num.NUMBER_TYPES and type(head_dim) in num.NUMBER_TYPES:   # one kernel: cached
            cache, key = _kernel_times(self), ("attn", kernel, head_dim, seq_len, causal, pss)
            e = cache.get(key)
            if e is None:
                e = _bounded(cache)[key] = self._attention_efficiency(kernel, head_dim, seq_len, causal, pss)
            return e
        return self._attention_efficiency(kernel, head_dim, seq_len, causal, pss)

    def _attention_efficiency(self, kernel: str, head_dim, seq_len, causal: bool, pss: str):
        flat = self.attn_fwd_efficiency if pss == "fwd" else self.attn_bwd_efficiency
        if self.attn_flat:
            if kernel == "flash1":
                return num.minimum(flat, kt.FLASH1_FRACTION[pss] * self.clock_ratio) + 0 * num.arr(seq_len)
            return flat + 0 * num.as_float(seq_len)
        return kt.attention_efficiency(kernel, self.arch, head_dim, seq_len, causal, pss) * self.clock_ratio

    def gemm(self, m, n, k):
        """Seconds of an (m x k) @ (k x n) GEMM (arrays ok). One GEMM's time is a pure function of its shape
        and cached per KernelModel: an estimate asks for the same few shapes again and again."""
        if type(m) in num.NUMBER_TYPES and type(n) in num.NUMBER_TYPES and type(k) in num.NUMBER_TYPES:
            cache, key = _kernel_times(self), (m, n, k)
            t = cache.get(key)
            if t is None:
                t = _bounded(cache)[key] = self._gemm(m, n, k)
            return t
        return self._gemm(m, n, k)

    def _gemm(self, m, n, k):
        p = self.profile
        if p is not None and p.gemm_efficiency:
            flops = 2.0 * m * n * k
            e = np.interp(np.log2(np.maximum(flops, 1.0)), p.gemm_log2_flops, p.gemm_efficiency)
            return flops / (self.peak_flops_per_s * e) + (p.kernel_overhead_s or 0.0)
        bpe = 2 if self.cast_bytes_per_elem == 0 else 1
        if self.gemm_table is not None:
            rate = self.peak_flops_per_s * self.gemm_table_scale * kt.gemm_efficiency(m, n, k, self.gemm_table,
                                                                                      self.num_sms)
            # never above the part's best measured matmul rate at this clock (MAMF, or MSMF where measured,
            # mamf-finder.py): the table's per-wave correction can otherwise lift a shape past any measurement
            rate = num.minimum(rate, self.peak_flops_per_s * self.gemm_efficiency)
            t = eff.gemm_time_at_s(m, n, k, rate, self.hbm_bytes_per_s, bpe)
        else:
            t = eff.gemm_time_s(m, n, k, self.peak_flops_per_s, self.gemm_efficiency, self.num_sms,
                                self.hbm_bytes_per_s, bpe)
        if self.cast_bytes_per_elem:
            t = t + eff.memory_bound_time_s(self.cast_bytes_per_elem * m * k, self.hbm_bytes_per_s)
        return t

    def memory_bound(self, num_bytes, num_kernels=1):
        p = self.profile
        if p is not None and p.memory_bytes_per_s:
            return num_bytes / p.memory_bytes_per_s + num_kernels * (p.kernel_overhead_s or 0.0)
        return eff.memory_bound_time_s(num_bytes, self.hbm_bytes_per_s, num_kernels)


@num.per_spec
def _kernel_times(km: KernelModel) -> dict:
    """A KernelModel's cache of one kernel's time by shape (GEMMs) and efficiency by block (attention)."""
    return {}


num.plan_cache(_kernel_times.cache)   # (its shapes come from the plans)


def _bounded(cache: dict) -> dict:
    """``cache``, emptied first when it holds many shapes (a long sweep of distinct plans)."""
    if len(cache) >= 8192:
        cache.clear()
    return cache


def kernel_model(cluster, dtype: str, attn_fwd_efficiency: float | None = None,
                 attn_bwd_efficiency: float | None = None) -> KernelModel:
    """Kernel times for ``cluster``'s GPU with GEMMs in ``dtype``.

    Attention runs at the published kernel table's rate (models.kernel_tables) unless a measured profile
    or explicit ``attn_*_efficiency`` values (fractions of the burst peak) give one flat rate.

    fp8 (Micikevicius et al. 2022; Transformer Engine): GEMMs run at the fp8 peak times the
    measured fp8 MAMF efficiency, attention stays 16-bit, and each GEMM input is quantised first.
    GEMMs and attention are slowed by the GPU's sustained/burst clock ratio (the same ratio for
    fp8, whose matmuls draw at least as much power: assumed).
    """
    g = cluster.gpu
    p = getattr(cluster, "profile", None)
    peak = p.peak_flops_per_s if p is not None and p.peak_flops_per_s else g.peak_flops_per_s(dtype)
    half = "bf16" if g.peak_bf16_flops_per_s > 0 else "fp16"
    attn_peak = p.peak_flops_per_s if p is not None and p.peak_flops_per_s else g.peak_flops_per_s(
        half if dtype == "fp8" else dtype)
    # A training step holds the GPU at its power limit, so tensor-core kernels run at the sustained
    # clock (GpuSpec.sustained_clock_ratio); a measured profile already carries its own rates.
    clock = g.sustained_clock_ratio
    gemm_eff = (g.gemm_efficiency_fp8 if dtype == "fp8" and g.gemm_efficiency_fp8 else g.gemm_efficiency) * clock
    # GEMMs by shape from the architecture's measured table (models.kernel_tables), as a fraction of peak
    # (a part of the same architecture with another peak keeps the fraction: assumed); fp8 scales the
    # bf16 table by the part's fp8 / bf16 MAMF (same shape dependence: assumed). No table: MAMF x waves.
    table = None if p is not None and p.gemm_efficiency else kt.gemm_table_key(kt.gpu_arch(g.name), dtype)
    table_scale = clock * (g.gemm_efficiency_fp8 / g.gemm_efficiency if dtype == "fp8" and g.gemm_efficiency_fp8
                           else 1.0)
    measured = p is not None and bool(p.attn_fwd_efficiency)
    flat = measured or attn_fwd_efficiency is not None
    attn_fwd_efficiency = kt.FA2_A100_BEST_FRACTION["fwd"] if attn_fwd_efficiency is None else attn_fwd_efficiency
    attn_bwd_efficiency = kt.FA2_A100_BEST_FRACTION["bwd"] if attn_bwd_efficiency is None else attn_bwd_efficiency
    return KernelModel(
        peak_flops_per_s=peak, gemm_efficiency=gemm_eff, num_sms=g.num_sms, hbm_bytes_per_s=g.hbm_bytes_per_s,
        attn_peak_flops_per_s=attn_peak, cast_bytes_per_elem=3.0 if dtype == "fp8" else 0.0,
        attn_fwd_efficiency=(p.attn_fwd_efficiency if p is not None and p.attn_fwd_efficiency
                             else attn_fwd_efficiency * clock),
        attn_bwd_efficiency=(p.attn_bwd_efficiency if p is not None and p.attn_bwd_efficiency
                             else attn_bwd_efficiency * clock),
        profile=p, clock_ratio=clock, arch=kt.gpu_arch(g.name), attn_flat=flat, gemm_table=table,
        gemm_table_scale=table_scale)
