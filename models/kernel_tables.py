"""Published kernel measurements the kernel model interpolates: attention throughput by (kernel,
GPU architecture, head dim, sequence length, causal, forward/backward), and the GEMM size sweep.

Attention rates are TFLOP/s as the benchmarks count them (flash-attention's
``benchmarks/benchmark_flash_attention.py`` convention, used by the FA3 paper too): forward
4 b s^2 h d, halved when causal; backward 2.5x the forward. A table is read at its measured points
and interpolated linearly in log2(sequence length) and log2(head dim), clamped at the ends. The
benchmarks run seconds-long loops at the burst clock; models.profile scales them to the sustained
clock like every other tensor-core rate.

Sources (values read off the bar labels of the figures):
  FA3  Shah et al. 2024, "FlashAttention-3", arXiv 2407.08608, Fig. 5 (forward, FP16/BF16, H100 80GB
       SXM5, batch x seqlen = 16k tokens, 2048 hidden; CUDA 12.3, cuDNN 9.1.1.17, FA2 2.5.8) and
       Fig. 6 (backward, non-causal only).
  FA2  Dao 2023, "FlashAttention-2", arXiv 2307.08691, Sec. 4.1: forward up to 73% of A100 peak.
  FA4  Dao-AILab/flash-attention PR #2280 (2026-02-27), B200, hdim 128, seqlen 8192, batch 4 x 16
       heads: fwd 1534.8 / bwd 1247.5 TFLOP/s non-causal, fwd 1418.1 / bwd 1117.9 causal.
"""

from __future__ import annotations

import bisect
import functools
import math

import numpy as np

from models import numeric as num

TFLOPS = 1e12

# ---------------------------------------------------------------- attention
SEQ_POINTS = (512, 1024, 2048, 4096, 8192, 16384)
ATTENTION_KERNELS = ("flash1", "flash2", "flash3", "cudnn", "unfused")
# Peak dense 16-bit TFLOP/s of the GPU each table was measured on (datasheets, models/hardware.py).
MEASURED_PEAK_TFLOPS = {"ampere": 312.0, "hopper": 989.0, "blackwell": 2250.0}
MEASURED_SMS = {"ampere": 108, "hopper": 132, "blackwell": 148}

# (kernel, arch, head_dim, causal, pass) -> TFLOP/s at SEQ_POINTS, measured (FA3 paper, H100 SXM5).
_FA3 = "Shah et al. 2024 (FlashAttention-3), H100 SXM5"
ATTENTION_TFLOPS = {
    # Fig. 5a-f forward
    ("flash2", "hopper", 64, False, "fwd"): (282, 306, 318, 321, 322, 324),
    ("cudnn", "hopper", 64, False, "fwd"): (335, 373, 395, 408, 412, 413),
    ("flash3", "hopper", 64, False, "fwd"): (333, 392, 460, 476, 496, 497),
    ("flash2", "hopper", 64, True, "fwd"): (180, 229, 262, 284, 295, 299),
    ("cudnn", "hopper", 64, True, "fwd"): (225, 288, 334, 363, 379, 388),
    ("flash3", "hopper", 64, True, "fwd"): (197, 265, 371, 420, 460, 473),
    ("flash2", "hopper", 128, False, "fwd"): (309, 350, 362, 368, 370, 370),
    ("cudnn", "hopper", 128, False, "fwd"): (497, 574, 617, 609, 600, 595),
    ("flash3", "hopper", 128, False, "fwd"): (467, 565, 625, 638, 646, 648),
    ("flash2", "hopper", 128, True, "fwd"): (191, 260, 298, 319, 333, 335),
    ("cudnn", "hopper", 128, True, "fwd"): (315, 410, 484, 518, 529, 539),
    ("flash3", "hopper", 128, True, "fwd"): (292, 423, 521, 579, 602, 616),
    ("flash2", "hopper", 256, True, "fwd"): (208, 251, 278, 293, 297, 298),
    ("cudnn", "hopper", 256, True, "fwd"): (308, 391, 450, 483, 497, 509),
    ("flash3", "hopper", 256, True, "fwd"): (286, 427, 537, 612, 628, 642),
    # Fig. 6a-b backward (the paper gives no causal backward)
    ("flash2", "hopper", 64, False, "bwd"): (198, 238, 264, 279, 287, 291),
    ("cudnn", "hopper", 64, False, "bwd"): (266, 348, 395, 417, 432, 433),
    ("flash3", "hopper", 64, False, "bwd"): (272, 363, 422, 453, 472, 474),
    ("flash2", "hopper", 128, False, "bwd"): (214, 260, 291, 310, 318, 322),
    ("cudnn", "hopper", 128, False, "bwd"): (305, 408, 465, 499, 518, 516),
    ("flash3", "hopper", 128, False, "bwd"): (316, 424, 501, 542, 559, 561),
}
ATTENTION_SOURCES = {k: _FA3 + (" Fig. 5" if k[4] == "fwd" else " Fig. 6") for k in ATTENTION_TFLOPS}

# Blackwell: one measured point per (causal, pass), FA4 (flash-attention PR #2280, B200, hdim 128, 8k).
FA4_B200_TFLOPS = {(False, "fwd"): 1534.8, (False, "bwd"): 1247.5, (True, "fwd"): 1418.1, (True, "bwd"): 1117.9}
# Ampere FlashAttention-2: forward up to 73% of A100 peak at the longest, non-causal hdim-128 point
# (Dao 2023, Sec. 4.1); backward 0.55 of peak (the kernel model's value before the table, "backward lower"
# in the paper's figure 6; not re-read from the figure).
FA2_A100_BEST_FRACTION = {"fwd": 0.73, "bwd": 0.55}
# FlashAttention v1 "only reaches 25-40% of the theoretical maximum FLOPs/s (e.g. up to 124 TFLOPs/s on
# A100)" (Dao 2023, Sec. 1): forward 0.40, backward 0.30 of peak, flat in sequence length.
FLASH1_FRACTION = {"fwd": 0.40, "bwd": 0.30}


def gpu_arch(gpu_name: str) -> str:
    """GPU architecture of a catalog part, by its name: ampere, hopper, blackwell (others: their family).

    >>> gpu_arch("h100-sxm-80gb"), gpu_arch("a100-sxm-40gb"), gpu_arch("gb200")
    ('hopper', 'ampere', 'blackwell')
    """
    n = gpu_name.lower()
    for prefix, arch in (("a100", "ampere"), ("a800", "ampere"), ("a10", "ampere"), ("h100", "hopper"),
                         ("h800", "hopper"), ("h200", "hopper"), ("h20", "hopper"), ("gh200", "hopper"),
                         ("b200", "blackwell"), ("b300", "blackwell"), ("gb200", "blackwell"),
                         ("gb300", "blackwell"), ("v100", "volta"), ("mi", "cdna")):
        if n.startswith(prefix):
            return arch
    return "other"


def resolve_kernel(kernel: str, arch: str) -> str:
    """The kernel a plan's ``attention`` runs on ``arch``. ``flash`` is the best FlashAttention the usual
    stack runs there: flash2 on Ampere (FA3 is Hopper-only; Megatron/TE run FA2 on sm80), cudnn on Hopper
    and later (Transformer Engine's get_attention_backend: "Disabling FlashAttention to give FusedAttention
    preference on Hopper+ for performance reasons"). flash3/cudnn on Ampere run as flash2 (FA3 needs sm90;
    no Ampere cuDNN measurement in hand).

    >>> resolve_kernel("flash", "ampere"), resolve_kernel("flash", "hopper"), resolve_kernel("flash3", "ampere")
    ('flash2', 'cudnn', 'flash2')
    """
    if kernel == "flash":
        return "flash2" if arch in ("ampere", "volta", "other", "cdna") else "cudnn"
    if kernel in ("flash3", "cudnn") and arch not in ("hopper", "blackwell"):
        return "flash2"
    return kernel


def _interp_hd(curves: dict, head_dim: float) -> np.ndarray:
    """Curve at SEQ_POINTS for ``head_dim`` from {head_dim: curve}, linear in log2(head dim), clamped."""
    dims = sorted(curves)
    ys = np.array([curves[d] for d in dims], dtype=float)
    x = np.clip(np.log2(head_dim), np.log2(dims[0]), np.log2(dims[-1]))
    return np.array([np.interp(x, np.log2(dims), ys[:, j]) for j in range(ys.shape[1])])


def _hopper_curve(kernel: str, head_dim: float, causal: bool, pss: str) -> np.ndarray:
    """Measured H100 TFLOP/s at SEQ_POINTS. The causal backward (not measured) is the non-causal
    backward times the forward's causal / non-causal ratio at the same length (assumed)."""
    def curves(c, p):
        return {k[2]: v for k, v in ATTENTION_TFLOPS.items() if k[0] == kernel and k[3] == c and k[4] == p}
    if pss == "bwd" and causal:
        fwd_c, fwd_n = curves(True, "fwd"), curves(False, "fwd")
        common = {d: fwd_c[d] for d in fwd_c if d in fwd_n}
        ratio = _interp_hd(common, head_dim) / _interp_hd({d: fwd_n[d] for d in common}, head_dim)
        return _interp_hd(curves(False, "bwd"), head_dim) * ratio
    return _interp_hd(curves(causal, pss), head_dim)


def attention_fraction_curve(kernel: str, arch: str, head_dim: float, causal: bool, pss: str) -> np.ndarray:
    """The curve of :func:`_attention_fraction_curve`, computed once per (kernel, arch, head dim, causal,
    pass): an estimate reads four of them, and building one interpolates every table column (read-only)."""
    try:
        return _cached_fraction_curve(kernel, arch, head_dim, causal, pss)
    except TypeError:   # an unhashable head_dim (an array)
        return _attention_fraction_curve(kernel, arch, head_dim, causal, pss)


@functools.lru_cache(maxsize=1024)
def _cached_fraction_curve(kernel, arch, head_dim, causal, pss):
    curve = _attention_fraction_curve(kernel, arch, head_dim, causal, pss)
    curve.flags.writeable = False
    return curve


def _attention_fraction_curve(kernel: str, arch: str, head_dim: float, causal: bool, pss: str) -> np.ndarray:
    """Fraction of the measuring GPU's 16-bit peak that ``kernel`` reaches at SEQ_POINTS (burst clock).

    Hopper: the FA3 paper's figures. Ampere FA2: the paper's best forward fraction (73%) and the model's
    0.55 backward, shaped over length / causal / head dim like FA2's measured H100 curves (the same kernel
    and tiling; assumed). Blackwell: the FA4 B200 point at 8k, shaped like FA3's H100 curve (assumed).
    A kernel older than the architecture (FA2 on Blackwell) runs at its newest measured absolute rate
    scaled by SM count (flash-attention #1589: FA2 on B200, hdim 64, 16k: 379 TFLOP/s fwd, vs 324 on H100).

    >>> round(float(attention_fraction_curve("flash3", "hopper", 128, True, "fwd")[-1] * 989), 1)
    616.0
    """
    if kernel == "flash1":
        return np.full(len(SEQ_POINTS), FLASH1_FRACTION[pss])
    if arch == "hopper":
        return _hopper_curve(kernel, head_dim, causal, pss) / MEASURED_PEAK_TFLOPS["hopper"]
    if arch == "blackwell" and kernel in ("flash3", "cudnn"):
        shape = _hopper_curve("flash3", head_dim, causal, pss)
        shape = shape / _hopper_curve("flash3", 128, causal, pss)[SEQ_POINTS.index(8192)]
        return FA4_B200_TFLOPS[(causal, pss)] * shape / MEASURED_PEAK_TFLOPS["blackwell"]
    if arch == "blackwell":   # FA2 (sm80 code) on Blackwell: H100 absolute rate x SM ratio
        h = _hopper_curve("flash2", head_dim, causal, pss)
        return h * MEASURED_SMS["blackwell"] / MEASURED_SMS["hopper"] / MEASURED_PEAK_TFLOPS["blackwell"]
    # Ampere (and parts without a table): FA2 shaped like its H100 measurement
    shape = _hopper_curve("flash2", head_dim, causal, pss) / ATTENTION_TFLOPS[("flash2", "hopper", 128, False, pss)][-1]
    return FA2_A100_BEST_FRACTION[pss] * shape


def attention_efficiency(kernel: str, arch: str, head_dim: float, seq_len, causal: bool, pss: str):
    """Fraction of the 16-bit peak (burst clock) an attention kernel sustains on blocks of ``seq_len``
    query and key tokens (arrays ok): the table interpolated in log2(seq_len), clamped at 512 / 16k.

    >>> round(float(attention_efficiency("cudnn", "hopper", 128, 4096, False, "bwd")) * 989, 1)
    499.0
    >>> round(float(attention_efficiency("flash2", "hopper", 128, 3000, True, "fwd")) * 989, 1)
    309.6
    """
    kernel = resolve_kernel(kernel, arch)
    if num.is_num(seq_len):   # one block length: np.interp's formula in floats on the cached curve
        try:
            xs, ys = _curve_points(kernel, arch, head_dim, causal, pss)
        except TypeError:     # an unhashable head_dim
            xs, ys = _LOG2_SEQ_POINTS, tuple(_attention_fraction_curve(kernel, arch, head_dim, causal, pss).tolist())
        return interp1(math.log2(max(float(seq_len), 1.0)), xs, ys)
    curve = attention_fraction_curve(kernel, arch, head_dim, causal, pss)
    x = np.log2(np.maximum(np.asarray(seq_len, dtype=float), 1.0))
    return np.interp(x, _LOG2_SEQ_POINTS, curve)


_LOG2_SEQ_POINTS = tuple(np.log2(SEQ_POINTS).tolist())


@functools.lru_cache(maxsize=1024)
def _curve_points(kernel, arch, head_dim, causal, pss):
    """(log2 SEQ_POINTS, fractions) of a curve as float tuples, for :func:`interp1`."""
    return _LOG2_SEQ_POINTS, tuple(attention_fraction_curve(kernel, arch, head_dim, causal, pss).tolist())


def interp1(x: float, xs: tuple, ys: tuple) -> float:
    """np.interp(x, xs, ys) for one point, in floats (numpy's compiled formula: the ends held, a point
    on a knot takes its value, else slope of the bracketing segment times the distance from its left
    knot plus its left value).

    >>> interp1(1.5, (1.0, 2.0, 4.0), (10.0, 20.0, 40.0)), float(np.interp(1.5, (1.0, 2.0, 4.0), (10.0, 20.0, 40.0)))
    (15.0, 15.0)
    """
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    j = bisect.bisect_right(xs, x) - 1
    if xs[j] == x:
        return ys[j]
    return (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]) * (x - xs[j]) + ys[j]


# ---------------------------------------------------------------- GEMM
# Measured dense matmul throughput by shape, TFLOP/s as the benchmark counts them (2 m n k / time), per
# (architecture, dtype): (M, N, K, TFLOP/s) points and the GPU they were measured on. The kernel model
# reads a GEMM's rate off these tables (gemm_efficiency below); nothing else sets a GEMM's speed.
#   H100  zzc0721/torch-performance-test-data issue #79: NVIDIA H100 80GB HBM3 (SXM), PyTorch 2.7.0+cu128,
#         square torch.matmul N x N x N, bf16 / fp16 / tf32 (hardware_measured.yaml gemm_efficiency_measured).
#   B200  pytorch/ao PR #2427 (2025-06-23), benchmarks/float8/bench_matmul.py on an NVIDIA B200, torch.bfloat16
#         square M = K = N rows ("tops/sec").
#   A100  stas00/ml-engineering compute/accelerator/README.md MAMF table: A100 SXM bf16 271.2 TFLOP/s at its best
#         shape 1024x10240x5120 (torch 2.6.0+cu126); no published A100 SXM sweep by shape was found, so the
#         Ampere table is that one point (the rate is flat in size, wave quantisation aside).
H100_SQUARE_BF16_TFLOPS = {1024: 176.62, 2048: 676.59, 4096: 788.72, 8192: 797.51, 10240: 719.72}
H100_SQUARE_FP16_TFLOPS = {1024: 179.13, 2048: 645.12, 4096: 760.04, 8192: 736.19, 10240: 668.42}
H100_SQUARE_TF32_TFLOPS = {1024: 119.60, 2048: 334.99, 4096: 402.15, 8192: 372.05, 10240: 376.66}
# FP32 on the CUDA cores (torch.backends.cuda.matmul.allow_tf32 False, PyTorch's default since 1.12): what
# fp32 training (dtype fp32) runs. H100: the same issue #79 run. A100: zzc0721/torch-performance-test-data
# issue #108, NVIDIA A100-PCIE-40GB, PyTorch 2.8.0+cu128 (no A100 SXM sweep in that set; same GA100 with 108
# SMs and the same 19.5 TFLOP/s fp32 peak, at a 250 W board limit).
H100_SQUARE_FP32_TFLOPS = {1024: 37.39, 2048: 49.58, 4096: 51.88, 8192: 51.81, 10240: 49.61}
A100_PCIE_SQUARE_FP32_TFLOPS = {1024: 8.99, 2048: 9.69, 4096: 15.52, 8192: 17.56, 10240: 16.67}
B200_SQUARE_BF16_TFLOPS = {1024: 423.0, 1536: 921.0, 2048: 1130.0, 3072: 1510.0, 4096: 1410.0, 6144: 1450.0,
                           8192: 1420.0}
_SQ = lambda table: tuple((n, n, n, t) for n, t in table.items())  # noqa: E731
_H100_79 = "zzc0721/torch-performance-test-data #79, H100 80GB HBM3, PyTorch 2.7.0+cu128, square torch.matmul"
GEMM_TFLOPS = {
    ("hopper", "bf16"): (_SQ(H100_SQUARE_BF16_TFLOPS), _H100_79 + " bf16"),
    ("hopper", "fp16"): (_SQ(H100_SQUARE_FP16_TFLOPS), _H100_79 + " fp16"),
    ("hopper", "tf32"): (_SQ(H100_SQUARE_TF32_TFLOPS), _H100_79 + " tf32"),
    ("hopper", "fp32"): (_SQ(H100_SQUARE_FP32_TFLOPS), _H100_79 + " fp32"),
    ("ampere", "fp32"): (_SQ(A100_PCIE_SQUARE_FP32_TFLOPS), "zzc0721/torch-performance-test-data #108, A100-PCIE-40GB, "
                         "PyTorch 2.8.0+cu128, square torch.matmul fp32"),
    ("blackwell", "bf16"): (_SQ(B200_SQUARE_BF16_TFLOPS), "pytorch/ao PR #2427, B200, torch.bfloat16 square matmul"),
    ("ampere", "bf16"): (((1024, 10240, 5120, 271.2),), "stas00/ml-engineering MAMF table, A100 SXM bf16, torch 2.6.0"),
}
# Peak dense TFLOP/s of each table's GPU for its dtype (datasheets; models/hardware.py), and its SMs.
GEMM_MEASURED_PEAK_TFLOPS = {("hopper", "bf16"): 989.0, ("hopper", "fp16"): 989.0, ("hopper", "tf32"): 494.5,
                             ("hopper", "fp32"): 67.0, ("ampere", "fp32"): 19.5,
                             ("blackwell", "bf16"): 2250.0, ("ampere", "bf16"): 312.0}
# Output tile of cuBLAS's large bf16 kernels on Ampere/Hopper (NVIDIA Matrix Multiplication Background
# User's Guide, "Tile quantization"): 128 x 256 (the wave model of models.efficiency).
GEMM_TILE = (128, 256)


def gemm_wave_utilisation(m, n, num_sms, tile=GEMM_TILE):
    """Fraction of SM time doing useful output tiles for an m x n GEMM output on ``num_sms`` SMs (either
    orientation of the tile, the better one): NVIDIA Matrix Multiplication Background guide, "Wave
    quantization".

    >>> round(float(gemm_wave_utilisation(1024, 1024, 132)), 3)
    0.242
    """
    def util(tm, tn):
        tiles = np.ceil(np.asarray(m) / tm) * np.ceil(np.asarray(n) / tn)
        return tiles / (np.ceil(tiles / num_sms) * num_sms)
    return np.maximum(util(*tile), util(*tile[::-1]))


def gemm_table_key(arch: str, dtype: str) -> tuple[str, str] | None:
    """The measured table a GEMM of ``dtype`` on ``arch`` reads: its own, else the architecture's bf16 table
    (fp16 and fp8 run on the same tensor cores; fp8's level is set by its MAMF, models.profile), else None.

    >>> gemm_table_key("hopper", "fp16"), gemm_table_key("ampere", "fp16"), gemm_table_key("cdna", "bf16")
    (('hopper', 'fp16'), ('ampere', 'bf16'), None)
    """
    if (arch, dtype) in GEMM_TFLOPS:
        return arch, dtype
    return (arch, "bf16") if (arch, "bf16") in GEMM_TFLOPS else None


@functools.cache
def gemm_tile_curve(key: tuple[str, str]):
    """(log2 FLOPs, per-wave efficiency) of a measured table: each point's fraction of its GPU's peak divided
    by its own wave utilisation, so the wave quantisation of a looked-up shape is applied once, and a
    measured shape reads back its measured rate. Points in ascending size."""
    points, _ = GEMM_TFLOPS[key]
    sms = MEASURED_SMS[key[0]]
    m, n, k, t = (np.array(c, dtype=float) for c in zip(*points))
    x = np.log2(2 * m * n * k)
    # held at 1 (never above peak): a small point can beat the 128 x 256 tile's wave estimate when its kernel
    # used smaller tiles (FP32 CUDA-core GEMMs at 1024^3: 0.46 of peak on A100 against a 0.30 wave use)
    y = np.minimum(t / GEMM_MEASURED_PEAK_TFLOPS[key] / gemm_wave_utilisation(m, n, sms), 1.0)
    order = np.argsort(x)
    return tuple(x[order]), tuple(y[order])


@functools.cache
def _tile_interpolator(key: tuple[str, str]):
    """Piecewise-linear interpolator in log2(FLOPs) over a table's per-wave efficiencies, held constant
    beyond its ends (scipy.interpolate.interp1d)."""
    x, y = gemm_tile_curve(key)
    if len(x) == 1:
        return lambda q: np.full(np.shape(q), y[0])
    from scipy import interpolate  # imported when a table is first used: it costs ~0.4 s, the CLI's whole start-up
    return interpolate.interp1d(x, y, kind="linear", bounds_error=False, fill_value=(y[0], y[-1]),
                                assume_sorted=True)


def gemm_efficiency(m, n, k, key: tuple[str, str], num_sms):
    """Fraction of the measuring GPU's peak an (m x k) @ (k x n) GEMM reaches (arrays ok): the table's
    per-wave efficiency interpolated in log2(2 m n k) times this shape's wave utilisation on ``num_sms``.
    At a measured shape (on the measuring GPU) it is the measured rate.

    >>> round(float(gemm_efficiency(2048, 2048, 2048, ("hopper", "bf16"), 132)) * 989, 2)
    676.59
    """
    if num.nums(m, n, k) or (np.ndim(m) == 0 and np.ndim(n) == 0 and np.ndim(k) == 0):
        # one GEMM: the same interpolation in floats
        return _gemm_efficiency_scalar(float(m), float(n), float(k), key, num_sms)
    flops = 2.0 * np.asarray(m, dtype=float) * n * k
    e = _tile_interpolator(key)(np.log2(np.maximum(flops, 1.0)))
    return e * gemm_wave_utilisation(m, n, num_sms)


def _gemm_efficiency_scalar(m: float, n: float, k: float, key, num_sms):
    """gemm_efficiency of one GEMM: interp1d's linear formula (slope from the bracketing points, constant
    beyond the ends) and the wave utilisation, in floats."""
    x, y = gemm_tile_curve(key)
    q = math.log2(max(2.0 * m * n * k, 1.0))
    if len(x) == 1 or q <= x[0]:
        e = y[0]
    elif q > x[-1]:
        e = y[-1]
    else:
        hi = max(bisect.bisect_left(x, q), 1)
        lo = hi - 1
        e = (y[hi] - y[lo]) / (x[hi] - x[lo]) * (q - x[lo]) + y[lo]

    def util(tm, tn):
        tiles = math.ceil(m / tm) * math.ceil(n / tn)
        return tiles / (math.ceil(tiles / num_sms) * num_sms)
    return float(e * max(util(*GEMM_TILE), util(*GEMM_TILE[::-1])))
