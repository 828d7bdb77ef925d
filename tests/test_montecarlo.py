"""simulator/planning/montecarlo.py: deterministic per seed, converges to the analytical expectation, stragglers."""

import math
import time

import numpy as np
import pytest
from numpy.random import PCG64, Generator

from models import cost
from simulator.planning.montecarlo import TYPICAL_STRAGGLERS, StragglerSpec, max_normal_moments, monte_carlo, sample_max_normal

# (step s, iterations, iterations per checkpoint, checkpoint s, restart s, MTBF s)
CASES = {
    "frequent-failures": (1.0, 10_000, 100, 10.0, 50.0, 500.0),
    "llama3-405b-like": (5.085, 929_833, 49, 2.84, 903.0, 11_130.0),   # Llama 3 MTBF 3.1 h, README.md, Time to train
    "long-restarts": (2.0, 50_000, 600, 30.0, 3600.0, 7200.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_mean_converges_to_analytical_expectation(name):
    step, it, k, c, r, m = CASES[name]
    res = monte_carlo(step, it, k, c, r, m, trials=4000, seed=12345)
    assert abs(res.mean_s - res.analytic_s) < 3 * res.sem_s      # within the 99.7% confidence interval
    expected_failures = float(cost.expected_run(step, it, k, c, r, m)["failures"])
    assert res.failures_mean == pytest.approx(expected_failures, rel=0.05)
    assert res.p10_s <= res.median_s <= res.p90_s


def test_deterministic_for_a_seed():
    args = CASES["frequent-failures"]
    a, b = monte_carlo(*args, trials=500, seed=7), monte_carlo(*args, trials=500, seed=7)
    assert a == b
    assert monte_carlo(*args, trials=500, seed=8).mean_s != a.mean_s


def test_zero_failure_rate_gives_exactly_the_failure_free_time():
    res = monte_carlo(2.5, 1000, 1000, 30.0, 600.0, math.inf, trials=50, seed=0)
    assert res.p10_s == res.p90_s == res.mean_s == 2500.0 == res.failure_free_s
    assert res.failures_p90 == 0
    # with checkpoints (no failures) the time is the work plus the checkpoint stalls, exactly
    res = monte_carlo(2.5, 1000, 100, 30.0, 600.0, math.inf, trials=50, seed=0)
    assert res.mean_s == res.p90_s == 2500.0 + 9 * 30.0


def test_max_of_normals():
    mean, sd = max_normal_moments(2)
    assert mean == pytest.approx(1 / math.sqrt(math.pi), rel=1e-6)        # E[max of 2] = 1/sqrt(pi)
    assert sd == pytest.approx(math.sqrt(1 - 1 / math.pi), rel=1e-6)
    mean_n, sd_n = max_normal_moments(16384)
    x = sample_max_normal(Generator(PCG64(1)), 16384, 20000)
    assert x.mean() == pytest.approx(mean_n, abs=4 * sd_n / math.sqrt(20000))
    assert 3.8 < mean_n < 4.1


def test_stragglers_slow_the_run():
    step, it, k, c, r, m = CASES["llama3-405b-like"]
    base = monte_carlo(step, it, k, c, r, math.inf, trials=200, seed=1, num_gpus=16384, exposed_comm_s=1.0)
    spread = StragglerSpec(gpu_speed_cv=0.01)
    slow = monte_carlo(step, it, k, c, r, math.inf, trials=2000, seed=1, num_gpus=16384, exposed_comm_s=1.0,
                       stragglers=spread)
    # the slowest of 16,384 GPUs paces a synchronous step: compute x (1 + cv E[max of N normals])
    mean_max, _ = max_normal_moments(16384)
    expect = it * (step + (step - 1.0) * 0.01 * mean_max) + (math.ceil(it / k) - 1) * c
    assert slow.mean_s == pytest.approx(expect, rel=1e-3)
    typical = monte_carlo(step, it, k, c, r, m, trials=500, seed=1, num_gpus=16384, exposed_comm_s=1.0,
                          stragglers=TYPICAL_STRAGGLERS)
    assert typical.median_s > typical.analytic_s > base.mean_s


def test_thousands_of_trials_take_seconds():
    t0 = time.perf_counter()
    monte_carlo(*CASES["llama3-405b-like"], trials=5000, seed=2, num_gpus=16384, exposed_comm_s=1.0,
                stragglers=TYPICAL_STRAGGLERS)
    assert time.perf_counter() - t0 < 10.0   # ~0.3 s on the 2-core dev box


def test_bad_input():
    with pytest.raises(ValueError, match="stragglers.slow_gpu_slowdown"):
        StragglerSpec(slow_gpu_slowdown=0.5)
    with pytest.raises(ValueError, match="trials"):
        monte_carlo(*CASES["frequent-failures"], trials=0)


def test_max_of_normals_matches_the_statistics_inverse_cdf():
    """scipy's ndtri replaced np.vectorize(NormalDist().inv_cdf): the same samples to rounding."""
    from statistics import NormalDist
    u = Generator(PCG64(3)).random(2000)
    q = -np.expm1(np.log(u) / 64)
    expected = -np.array([NormalDist().inv_cdf(v) for v in q])
    np.testing.assert_allclose(sample_max_normal(Generator(PCG64(3)), 64, 2000), expected, rtol=1e-12)
