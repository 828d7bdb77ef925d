"""Monte Carlo time to train: failures, restarts and stragglers sampled from their rates.

A run is ``iterations`` synchronous iterations cut into checkpoint segments of ``k``
iterations (models.cost.segment_plan). Per trial, vectorised over trials with
``numpy.random.Generator(PCG64(seed))`` (deterministic for a seed):

- Failures (exact for an exponential failure process, the model of Daly 2006 eq. 13): a
  segment of S seconds (work + checkpoint) fails before it ends with probability
  1 - exp(-S/M), so the failed attempts of n segments are negative-binomial(n, exp(-S/M));
  each failed attempt loses a time drawn from Exp(1/M) truncated to [0, S); each failure
  costs a restart of R seconds that may itself fail (failed restarts: negative-binomial
  over the failures, each losing Exp(1/M) truncated to [0, R)).
- Stragglers (a synchronous step waits for its slowest GPU, so the step's compute part,
  step - exposed communication, scales with the slowest GPU's slowdown):
  * per-GPU speed spread: persistent speeds 1 + cv Z_g (Z_g standard normal, drawn per
    trial); the job runs at the slowest, max_g over num_gpus, sampled exactly as
    Phi^-1(U^(1/N));
  * per-iteration jitter: each GPU's compute time x (1 + cv eps), eps ~ N(0, 1) per
    iteration; the mean and variance of the per-iteration maximum of N normals are
    integrated numerically and summed over the executed iterations (central limit);
    spread + jitter add (an upper bound on the max of their sum);
  * slow-GPU episodes (thermal throttling, a bad HBM stack before it fails): Poisson per
    GPU-hour; during one the step's compute part runs ``slowdown`` x slower for ``duration``;
  * network hot spots (congested links, Lin et al. OSDI'25 name network congestion a main
    straggler cause): Poisson per job-hour; exposed communication x ``comm_factor`` for
    ``duration``.
  An episode of wall-clock length D at step slowdown m costs D (1 - 1/m) extra seconds.

With no stragglers the trial mean converges to models.cost.expected_run's expectation;
with a zero failure rate and no stragglers every trial is exactly the failure-free time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.random import PCG64, Generator
from scipy.special import ndtri

from models import cost as cost_model
from models.reliability import LLAMA3_GPU_FAILURES_PER_GPU_HOUR
from models.units import HOUR_S

_MAX_SAMPLES_PER_CHUNK = 4_000_000
# Most trials one call may ask for (5,000 trials take ~0.3 s on a 2-core box: 100k ~ 6 s; a percentile
# of a run time needs no more).
MAX_TRIALS = 100_000
# Largest coefficient of variation of a GPU's speed or per-iteration time (a spread of 100% of the mean).
MAX_CV = 1.0
# A GPU's compute time multiplier is at least this (1 + cv z of a normal z would reach 0 at cv z = -1).
MIN_TIME_MULTIPLIER = 0.05


def check_trials(trials, where: str = "monte_carlo") -> int:
    """``trials`` if it is an integer in [1, MAX_TRIALS]; ValueError naming ``where`` otherwise."""
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ValueError(f"{where}: trials must be a positive integer, got {trials!r}")
    if trials > MAX_TRIALS:
        raise ValueError(f"{where}: {int(trials):,} trials; more than the {MAX_TRIALS:,} one run may sample")
    return int(trials)


@dataclass(frozen=True, slots=True)
class StragglerSpec:
    """Straggler model; all off by default. TYPICAL_STRAGGLERS holds assumed values."""
    gpu_speed_cv: float = 0.0               # persistent per-GPU speed spread (std / mean)
    iteration_jitter_cv: float = 0.0        # per-GPU, per-iteration compute-time noise (std / mean)
    slow_gpu_per_gpu_hour: float = 0.0      # slow-GPU episodes per GPU-hour
    slow_gpu_slowdown: float = 1.0          # compute-time multiplier of a slow GPU (>= 1)
    slow_gpu_duration_s: float = 0.0        # until detected and drained
    hotspot_per_hour: float = 0.0           # network hot spots per job-hour
    hotspot_comm_factor: float = 1.0        # exposed-communication multiplier in a hot spot (>= 1)
    hotspot_duration_s: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"stragglers.{f.name}: must be a finite number >= 0, got {v!r}")
        for f in ("gpu_speed_cv", "iteration_jitter_cv"):
            if getattr(self, f) > MAX_CV:
                raise ValueError(f"stragglers.{f}: must be <= {MAX_CV:g} (a coefficient of variation), "
                                 f"got {getattr(self, f)!r}")
        for f in ("slow_gpu_slowdown", "hotspot_comm_factor"):
            if getattr(self, f) < 1:
                raise ValueError(f"stragglers.{f}: must be >= 1 (a slowdown), got {getattr(self, f)}")


# Assumed values, not measurements, for a "what if" run: 1% persistent speed spread and 1%
# per-iteration jitter (nominally equal H100s under power/thermal management differ by a few
# percent; no fleet-wide distribution is published that we could cite); slow-GPU episodes as
# frequent as the Llama 3 per-GPU failure rate (a degrading part is often slow before it
# fails), 2x slower compute for 10 min until straggler detection drains it; one network hot
# spot per day, 3x exposed communication for 10 min. Lin et al. (OSDI'25, ByteDance) report
# stragglers are frequent in LLM training jobs; their numbers are not used here.
TYPICAL_STRAGGLERS = StragglerSpec(gpu_speed_cv=0.01, iteration_jitter_cv=0.01,
                                   slow_gpu_per_gpu_hour=LLAMA3_GPU_FAILURES_PER_GPU_HOUR, slow_gpu_slowdown=2.0,
                                   slow_gpu_duration_s=600.0, hotspot_per_hour=1.0 / 24,
                                   hotspot_comm_factor=3.0, hotspot_duration_s=600.0)


def max_normal_moments(n: int) -> tuple[float, float]:
    """Mean and standard deviation of the maximum of ``n`` iid standard normals (numerical
    integration of the density n phi(x) Phi(x)^(n-1)).

    >>> [round(v, 4) for v in max_normal_moments(2)]  # 1/sqrt(pi), sqrt(1 - 1/pi)
    [0.5642, 0.8256]
    """
    if n <= 1:
        return 0.0, 1.0 if n == 1 else 0.0
    x = np.linspace(-8.0, 9.0, 34001)
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in x]))
    logpdf = math.log(n) - 0.5 * x * x - 0.5 * math.log(2 * math.pi) + (n - 1) * np.log(np.maximum(cdf, 1e-300))
    w = np.exp(logpdf) * (x[1] - x[0])
    mean = float(np.sum(w * x))
    return mean, float(math.sqrt(max(np.sum(w * x * x) - mean * mean, 0.0)))


def sample_max_normal(rng: Generator, n: int, size: int) -> np.ndarray:
    """Samples of the maximum of ``n`` iid standard normals: Phi^-1(U^(1/n)) (exact)."""
    u = rng.random(size)
    q = -np.expm1(np.log(np.maximum(u, 1e-300)) / max(n, 1))    # 1 - U^(1/n), accurately
    return -ndtri(np.clip(q, 1e-300, 1 - 1e-16))


def _truncated_exp_sums(rng, counts, bound_s, mtbf):
    """Per trial, the sum of ``counts`` draws of Exp(1/M) truncated to [0, bound) (inverse CDF)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(counts.shape)
    owner = np.repeat(np.arange(counts.size), counts)
    b = np.broadcast_to(np.asarray(bound_s, dtype=float), counts.shape)[owner]
    m = np.broadcast_to(np.asarray(mtbf, dtype=float), counts.shape)[owner]
    x = -m * np.log1p(rng.random(total) * np.expm1(-b / m))
    return np.bincount(owner, weights=x, minlength=counts.size)


def _neg_binomial(rng, n, p):
    """Failures before ``n`` successes (success probability ``p``); 0 where n == 0 or p == 1."""
    n = np.asarray(n, dtype=float)
    p = np.asarray(p, dtype=float)
    ok = (n > 0) & (p < 1)
    out = np.zeros(np.broadcast(n, p).shape, dtype=np.int64)
    if ok.any():
        nn, pp = np.broadcast_to(n, out.shape)[ok], np.broadcast_to(p, out.shape)[ok]
        out[ok] = rng.negative_binomial(nn, np.maximum(pp, 1e-300))
    return out


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    trials: int
    seed: int
    mean_s: float
    std_s: float
    sem_s: float                      # standard error of the mean
    p10_s: float
    median_s: float
    p90_s: float
    failures_mean: float
    failures_p10: float
    failures_p90: float
    analytic_s: float                 # models.cost expectation (no stragglers)
    failure_free_s: float

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def sample_times(rng: Generator, trials: int, step_time_s, iterations, iters_per_checkpoint, checkpoint_s,
                 restart_s, mtbf_s, num_gpus: int = 1, exposed_comm_s: float = 0.0,
                 stragglers: StragglerSpec | None = None) -> dict:
    """Sample ``trials`` run times; dict with "time_s" and "failures" arrays (see module docstring)."""
    st = stragglers or StragglerSpec()
    step = float(step_time_s)
    comm = min(max(float(exposed_comm_s), 0.0), step)
    compute = step - comm
    it = float(iterations)
    k = float(np.clip(iters_per_checkpoint, 1, max(it, 1)))
    nseg, last = cost_model.segment_plan(it, k)
    nseg, last = float(nseg), float(last)
    mtbf = float(mtbf_s)

    spread = st.gpu_speed_cv * sample_max_normal(rng, num_gpus, trials) if st.gpu_speed_cv > 0 else np.zeros(trials)
    mu_j, sd_j = max_normal_moments(num_gpus) if st.iteration_jitter_cv > 0 else (0.0, 0.0)
    # per trial; a GPU's time multiplier 1 + cv z is kept >= MIN_TIME_MULTIPLIER (never a negative time)
    step_eff = step + compute * np.maximum(spread + st.iteration_jitter_cv * mu_j, MIN_TIME_MULTIPLIER - 1.0)

    full_s, last_s = k * step_eff + checkpoint_s, last * step_eff
    if math.isfinite(mtbf):
        f_full = _neg_binomial(rng, np.full(trials, nseg - 1), np.exp(-full_s / mtbf))
        f_last = _neg_binomial(rng, np.ones(trials), np.exp(-last_s / mtbf))
        failures = f_full + f_last
        f_restart = _neg_binomial(rng, failures, np.exp(-restart_s / mtbf))
        lost = (_truncated_exp_sums(rng, f_full, full_s, mtbf) + _truncated_exp_sums(rng, f_last, last_s, mtbf)
                + _truncated_exp_sums(rng, f_restart, restart_s, mtbf))
    else:
        failures = np.zeros(trials, dtype=np.int64)
        lost = np.zeros(trials)
    time_s = (nseg - 1) * full_s + last_s + lost + failures * restart_s
    if st.iteration_jitter_cv > 0:       # variance of the per-iteration maxima over the executed iterations
        executed = time_s / step_eff
        noise = rng.standard_normal(trials) * np.sqrt(executed) * st.iteration_jitter_cv * compute * sd_j
        time_s = np.maximum(time_s + noise, MIN_TIME_MULTIPLIER * time_s)
    time_s = time_s + _episodes(rng, st, time_s, num_gpus, step, compute, comm)
    return {"time_s": time_s, "failures": failures}


def _episodes(rng, st: StragglerSpec, time_s, num_gpus, step, compute, comm):
    """Extra seconds from slow-GPU episodes and network hot spots: D (1 - 1/m) each."""
    extra = np.zeros_like(time_s)
    if st.slow_gpu_per_gpu_hour > 0 and st.slow_gpu_duration_s > 0:
        n = rng.poisson(st.slow_gpu_per_gpu_hour * num_gpus * time_s / HOUR_S)
        m = (compute * st.slow_gpu_slowdown + comm) / step
        extra += n * st.slow_gpu_duration_s * (1 - 1 / m)
    if st.hotspot_per_hour > 0 and st.hotspot_duration_s > 0:
        n = rng.poisson(st.hotspot_per_hour * time_s / HOUR_S)
        m = (compute + comm * st.hotspot_comm_factor) / step
        extra += n * st.hotspot_duration_s * (1 - 1 / m)
    return extra


def monte_carlo(step_time_s, iterations, iters_per_checkpoint, checkpoint_s, restart_s, mtbf_s, trials: int = 1000,
                seed: int = 0, num_gpus: int = 1, exposed_comm_s: float = 0.0,
                stragglers: StragglerSpec | None = None) -> MonteCarloResult:
    """Distribution of the time to train over ``trials`` sampled runs (deterministic for ``seed``)."""
    trials = check_trials(trials)
    rng = Generator(PCG64(seed))
    analytic = cost_model.expected_run(step_time_s, iterations, iters_per_checkpoint, checkpoint_s, restart_s, mtbf_s)
    # chunk the trials so that the per-failure samples stay bounded in memory
    per_trial = max(1.0, float(analytic["failures"]) * 2 + 10)
    chunk = int(max(1, min(trials, _MAX_SAMPLES_PER_CHUNK // per_trial)))
    times, fails = [], []
    for start in range(0, trials, chunk):
        r = sample_times(rng, min(chunk, trials - start), step_time_s, iterations, iters_per_checkpoint,
                         checkpoint_s, restart_s, mtbf_s, num_gpus, exposed_comm_s, stragglers)
        times.append(r["time_s"])
        fails.append(r["failures"])
    t, f = np.concatenate(times), np.concatenate(fails)
    return MonteCarloResult(
        trials=trials, seed=seed, mean_s=float(t.mean()), std_s=float(t.std(ddof=1)) if trials > 1 else 0.0,
        sem_s=float(t.std(ddof=1) / math.sqrt(trials)) if trials > 1 else 0.0,
        p10_s=float(np.percentile(t, 10)), median_s=float(np.median(t)), p90_s=float(np.percentile(t, 90)),
        failures_mean=float(f.mean()), failures_p10=float(np.percentile(f, 10)),
        failures_p90=float(np.percentile(f, 90)), analytic_s=float(analytic["time_s"]),
        failure_free_s=float(np.asarray(iterations, dtype=float) * step_time_s))


def monte_carlo_run(run, trials: int = 1000, seed: int = 0, exposed_comm_s: float = 0.0,
                    stragglers: StragglerSpec | None = None) -> MonteCarloResult:
    """Monte Carlo for a models.cost.TrainingRun (its interval, checkpoint, restart and MTBF)."""
    return monte_carlo(run.step_time_s, run.iterations, run.iters_per_checkpoint, run.checkpoint_blocking_s,
                       run.restart_s, run.mtbf_s, trials, seed, run.num_gpus, exposed_comm_s, stragglers)
