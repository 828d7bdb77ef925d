"""models/reliability.py: closed forms (Young 1974, Daly 2006), the exact optimum, Llama 3 rates."""

import math

import numpy as np
import pytest

from models import reliability as rel

trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz


def test_llama3_table5_counts_give_419_interruptions_in_54_days():
    # Llama 3 paper Sec. 3.3.4 / Table 5: 419 unexpected interruptions, 54 days, 16,384 GPUs
    assert rel.LLAMA3_INTERRUPTIONS == 419
    rate = rel.job_failure_rate_per_s(16384, 2048, rel.LLAMA3_GPU_FAILURES_PER_GPU_HOUR,
                                      rel.LLAMA3_NODE_FAILURES_PER_NODE_HOUR)
    assert float(rate) * 54 * 86400 == pytest.approx(419, rel=1e-12)
    # "an average of one failure every three hours"
    assert float(rel.mtbf_s(rate)) / 3600 == pytest.approx(3.09, abs=0.01)


def test_failure_rate_scales_with_gpus_and_nodes():
    g, n = 2e-5, 3e-5
    r1 = rel.job_failure_rate_per_s(8, 1, g, n)
    r2 = rel.job_failure_rate_per_s(16, 2, g, n)
    assert float(r2) == pytest.approx(2 * float(r1))
    assert float(rel.mtbf_s(0.0)) == math.inf


@pytest.mark.parametrize("c,m", [(60.0, 86400.0), (2.8, 11130.0), (1.0, 1e6), (300.0, 3600.0)])
def test_young_is_sqrt_2CM(c, m):
    assert float(rel.young_interval_s(c, m)) == pytest.approx(math.sqrt(2 * c * m), rel=1e-15)


@pytest.mark.parametrize("c,m", [(1.0, 1e6), (60.0, 86400.0), (100.0, 1000.0), (500.0, 1000.0), (5000.0, 1000.0)])
def test_exact_interval_minimises_daly_expected_time_per_work(c, m):
    tau = float(rel.exact_interval_s(c, m))
    grid = np.linspace(tau * 0.2, tau * 3, 200001)
    per_work = rel.expected_segment_s(grid, c, 0.0, m) / grid
    assert grid[np.argmin(per_work)] == pytest.approx(tau, rel=1e-4)
    # it is a stationary point of the exact condition e^{(tau+C)/M} (1 - tau/M) = 1
    assert math.exp((tau + c) / m) * (1 - tau / m) == pytest.approx(1.0, abs=1e-9)


def test_exact_and_daly_tend_to_young_when_checkpoints_are_cheap():
    for x in (1e-10, 1e-8, 1e-6):
        c, m = x * 1e5, 1e5
        young = float(rel.young_interval_s(c, m))
        assert float(rel.exact_interval_s(c, m)) / young == pytest.approx(1.0, abs=2 * math.sqrt(x))
        assert float(rel.daly_interval_s(c, m)) / young == pytest.approx(1.0, abs=2 * math.sqrt(x))


def test_daly_higher_order_is_closer_to_exact_than_young():
    for c in (10.0, 100.0, 500.0):
        m = 3600.0
        exact = float(rel.exact_interval_s(c, m))
        assert abs(float(rel.daly_interval_s(c, m)) - exact) < abs(float(rel.young_interval_s(c, m)) - exact)
    assert float(rel.daly_interval_s(3000.0, 1000.0)) == 1000.0  # Daly eq. 20: C >= 2M gives M


def test_lambert_w0_inverts_w_exp_w():
    z = np.array([-1 / math.e + 1e-9, -0.35, -0.2, -1e-3, 0.0, 0.5, 1.0, 10.0, 1e3])
    w = rel.lambert_w0(z)
    assert np.allclose(w * np.exp(w), z, rtol=1e-9, atol=1e-12)
    assert np.all(w >= -1.0)


def test_expected_lost_work_matches_truncated_exponential_mean():
    s, m = 1800.0, 7200.0
    x = np.linspace(0, s, 2_000_001)
    pdf = np.exp(-x / m)
    numeric = trapezoid(x * pdf, x) / trapezoid(pdf, x)
    assert float(rel.expected_lost_work_s(s, m)) == pytest.approx(numeric, rel=1e-9)
    # first order (Young 1974): half the segment when S << M
    assert float(rel.expected_lost_work_s(10.0, 1e9)) == pytest.approx(5.0, rel=1e-6)
    assert float(rel.expected_lost_work_s(10.0, np.inf)) == 5.0


def test_expected_segment_closed_form_and_decomposition():
    w, c, r, m = 900.0, 30.0, 600.0, 3 * 3600.0
    t = float(rel.expected_segment_s(w, c, r, m))
    assert t == pytest.approx(m * math.exp(r / m) * (math.exp((w + c) / m) - 1), rel=1e-12)  # Daly eq. 13
    nf = float(rel.expected_failures_in_segment(w, c, m))
    parts = w + c + nf * (float(rel.expected_lost_work_s(w + c, m)) + float(rel.expected_restart_phase_s(r, m)))
    assert parts == pytest.approx(t, rel=1e-12)
    assert float(rel.expected_segment_s(w, c, r, np.inf)) == w + c  # no failures: exactly work + checkpoint


def test_first_order_goodput_close_to_exact_when_rare():
    c, r, m = 10.0, 300.0, 1e6
    tau = float(rel.exact_interval_s(c, m))
    exact = tau / float(rel.expected_segment_s(tau, c, r, m))
    assert float(rel.first_order_goodput(tau, c, r, m)) == pytest.approx(exact, abs=1e-4)


def test_checkpoint_size_and_writers():
    assert float(rel.checkpoint_bytes(405e9)) == pytest.approx(405e9 * 14)  # 2 + 12 bytes/param (ZeRO K=12)
    assert int(rel.checkpoint_writer_gpus(8, 16, 128, 1, 0)) == 128          # one replica writes
    assert int(rel.checkpoint_writer_gpus(8, 16, 128, 1, 1)) == 16384        # every rank writes its shard
    # one replica on 16 nodes at 5 GB/s each is node-bound; all 2,048 nodes are file-system bound
    assert float(rel.checkpoint_write_s(5.67e12, 128, 8, 5e9, 2e12)) == pytest.approx(5.67e12 / 80e9)
    assert float(rel.checkpoint_write_s(5.67e12, 16384, 8, 5e9, 2e12)) == pytest.approx(5.67e12 / 2e12)


def test_spec_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="reliability.detect_s"):
        rel.ReliabilitySpec(detect_s=-1)
    with pytest.raises(ValueError, match="reliability.fs_write_bytes_per_s"):
        rel.ReliabilitySpec(fs_write_bytes_per_s=0)


def test_lambert_w0_is_scipys_principal_branch_and_exact_interval_unchanged():
    """lambert_w0 wraps scipy.special.lambertw; known values (omega constant, W(e) = 1, W(-1/e) = -1)."""
    assert float(rel.lambert_w0(np.e)) == pytest.approx(1.0, rel=1e-14)
    assert float(rel.lambert_w0(-1.0 / np.e)) == -1.0
    # C = 1 h, M = 1 day: the value the hand-written Halley iteration gave (to 1e-12)
    assert float(rel.exact_interval_s(3600.0, 86400.0)) == pytest.approx(22601.525643234923, rel=1e-12)
