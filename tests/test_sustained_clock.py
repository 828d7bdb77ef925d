"""Sustained vs burst matmul rate: a training step holds the GPU at its power limit, where the SM
clock settles below boost. mamf-finder.py (stas00/ml-engineering, compute/accelerator/README.md
MAMF/MSMF tables) measured H200 bf16 at 834 TFLOP/s in a burst (MAMF) and 755 TFLOP/s sustained
(MSMF), and B200 at 1429 TFLOP/s sustained."""

import dataclasses

import numpy as np
import pytest

from models.estimate import ATTN_BWD_EFFICIENCY, ATTN_FWD_EFFICIENCY, _layer_times, plan_arrays
from models.hardware import get_gpu, make_cluster
from models.plan import Plan
from models.profile import kernel_model
from models.transformer import get_model

# one full wave of 128x256 output tiles on H100/H200's 132 SMs: wave quantisation loses nothing
ONE_WAVE_M, ONE_WAVE_N, BIG_K = 128 * 132, 256, 65536


def _km(gpu, dtype="bf16"):
    return kernel_model(make_cluster(gpu), dtype, ATTN_FWD_EFFICIENCY, ATTN_BWD_EFFICIENCY)


def test_h200_large_gemm_runs_at_the_measured_msmf():
    km = _km("h200-sxm-141gb")
    flops = 2.0 * ONE_WAVE_M * ONE_WAVE_N * BIG_K
    tflops = flops / float(km.gemm(ONE_WAVE_M, ONE_WAVE_N, BIG_K)) / 1e12
    assert tflops == pytest.approx(755, rel=0.01)


def test_b200_large_gemm_runs_at_its_measured_table_rate_at_the_sustained_clock():
    """B200 GEMMs follow the measured square sweep (models/kernel_tables.py: pytorch/ao PR #2427, 1420 TFLOP/s
    at 8192^3, held flat beyond it) at the sustained clock (MSMF / MAMF), never above the measured MSMF of
    1429 TFLOP/s (mamf-finder.py). The two sources disagree by ~20% at large sizes; the table's shape rule
    is used, and the MSMF only bounds it."""
    km = _km("b200")
    g = get_gpu("b200")
    m = 128 * g.num_sms
    flops = 2.0 * m * ONE_WAVE_N * BIG_K
    tflops = flops / float(km.gemm(m, ONE_WAVE_N, BIG_K)) / 1e12
    assert tflops == pytest.approx(1420 * g.sustained_clock_ratio, rel=0.05)
    assert tflops <= 1429 * 1.001


def test_sustained_clock_slows_tensor_cores_not_hbm():
    burst = dataclasses.replace(get_gpu("h100-sxm-80gb"), gemm_efficiency_sustained=0.0)
    sustained, fast = _km("h100-sxm-80gb"), _km(burst)
    ratio = get_gpu("h100-sxm-80gb").sustained_clock_ratio
    assert ratio < 1
    t_s, t_b = float(sustained.gemm(8192, 8192, 8192)), float(fast.gemm(8192, 8192, 8192))
    assert t_b / t_s == pytest.approx(ratio, rel=0.01)
    assert sustained.attn_fwd_efficiency == pytest.approx(fast.attn_fwd_efficiency * ratio)
    # the memory clock does not drop at the power limit: streaming kernels keep their time
    assert float(sustained.memory_bound(1e9, 4)) == float(fast.memory_bound(1e9, 4))


def test_a100_sustained_rate_is_the_burst_rate_at_the_power_limited_clock():
    # NVIDIA's A100 HPL Rpeak uses 1305 MHz, the clock held at 400 W, against a 1410 MHz boost
    # (glennklockwood.com/garden/peak-FLOPS). The burst MAMF is 271.2 TFLOP/s (hardware_measured.yaml).
    for name in ("a100-sxm-40gb", "a100-sxm-80gb"):
        assert get_gpu(name).sustained_clock_ratio == pytest.approx(1305 / 1410)
        m = 128 * get_gpu(name).num_sms
        flops = 2.0 * m * ONE_WAVE_N * BIG_K
        assert flops / float(_km(name).gemm(m, ONE_WAVE_N, BIG_K)) / 1e12 == pytest.approx(271.2 * 1305 / 1410, rel=0.01)


def test_a100_8192_cubed_matches_a_power_limited_measurement():
    # H. He, "Strangely, Matrix Multiplications on GPUs Run Faster When Given Predictable Data"
    # (thonking.ai, 2024): cuBLAS 8192^3 bf16 on an A100 at 400 W, 257 TFLOP/s on randn inputs
    # (295 on zeros, which draw less power). The model must land near the randn figure, not the burst one.
    n = 8192
    tflops = 2.0 * n**3 / float(_km("a100-sxm-80gb").gemm(n, n, n)) / 1e12
    assert tflops == pytest.approx(257, rel=0.05)
    assert tflops < 271.2 * 0.98


def test_parts_without_a_sustained_measurement_keep_the_burst_rate():
    for name in ("gb200", "mi300x"):
        gpu = get_gpu(name)
        assert gpu.gemm_efficiency_sustained == 0.0 and gpu.sustained_clock_ratio == 1.0
        assert _km(name).gemm_efficiency == gpu.gemm_efficiency


@pytest.mark.parametrize("bad", [-0.1, 0.9])
def test_sustained_efficiency_is_validated(bad):
    # never negative, never above the burst rate measured for the same part (0.803 on H100)
    with pytest.raises(ValueError, match="gemm_efficiency_sustained"):
        dataclasses.replace(get_gpu("h100-sxm-80gb"), gemm_efficiency_sustained=bad)


@pytest.mark.torch
def test_soak_reports_the_rate_at_the_end_and_the_summary_prints_it():
    pytest.importorskip("torch")
    from simulator.cli.calibrate import profile_summary
    from simulator.validation.calibrate import microbench as mb
    soak = mb.soak_gemm(0.4, 128, "fp32", "cpu")
    # on a busy machine one batch of GEMMs may outlast the whole soak: the soak then runs on until
    # its tail holds a timed batch, so the rate is always measured, over a window inside the soak
    assert soak["seconds"] == 0.4 and soak["elapsed_s"] >= 0.4
    assert 0 < soak["tail_s"] <= soak["elapsed_s"] - 0.75 * 0.4      # the tail starts after 3/4 of the soak
    assert soak["sustained_flops_per_s"] > 0
    tail_calls = soak["sustained_flops_per_s"] * soak["tail_s"] / (2.0 * 128 ** 3)
    assert tail_calls == pytest.approx(round(tail_calls)) and round(tail_calls) % 10 == 0 and tail_calls >= 10
    prof = {"device": {"kind": "cpu", "name": "cpu", "num_threads": 1, "memory_bytes": 1 << 30},
            "dtype": "fp32", "peak_flops_per_s": {"fp32": 1e11},
            "gemm": [{"m": 128, "n": 128, "k": 128, "time_s": 1e-4, "flops_per_s": 4.2e10, "dtype": "fp32"}],
            "soak": soak}
    assert any(line.startswith("sustained GEMM after a 0.4 s soak") for line in profile_summary(prof))


@pytest.mark.torch
def test_soak_times_its_tail_when_one_batch_outlasts_the_soak(monkeypatch):
    """A loaded machine, made exact with a clock that moves 1 s per batch of GEMMs (the soak is
    0.4 s): the window arithmetic must use the reading taken after each batch, not the one from
    before it, or the loop ends with no batch timed and no rate."""
    from types import SimpleNamespace

    pytest.importorskip("torch")
    from simulator.validation.calibrate import microbench as mb
    clock = [0.0]
    monkeypatch.setattr(mb, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(mb, "sync", lambda device: clock.__setitem__(0, clock[0] + 1.0))
    soak = mb.soak_gemm(0.4, 8, "fp32", "cpu")
    # batch 1 ends at 1 s, past 3/4 of the soak: the tail starts there; batch 2 (10 GEMMs) ends at 2 s
    assert soak["elapsed_s"] == 2.0 and soak["tail_s"] == 1.0
    assert soak["sustained_flops_per_s"] == 2.0 * 8 ** 3 * 10 / 1.0


def test_flashattention_v1_runs_at_the_sustained_clock_too():
    # FlashAttention v1's 40% / 30% of peak (Dao 2023, FlashAttention-2 Sec. 1) are benchmark rates like
    # FA2's, so on a power-limited A100 both are scaled by the same sustained/burst clock ratio.
    model = dataclasses.replace(get_model("gpt3-175b"), seq_len=8192)
    a = {k: np.asarray(v) for k, v in plan_arrays(Plan(dp=1, tp=8, attention="flash1")).items()}
    burst = dataclasses.replace(get_gpu("a100-sxm-80gb"), gemm_efficiency_sustained=0.0)
    attn_fwd = [float(_layer_times(model, _km(g), a, moe=False)[4]) for g in ("a100-sxm-80gb", burst)]
    assert attn_fwd[1] / attn_fwd[0] == pytest.approx(1305 / 1410, rel=1e-3)
