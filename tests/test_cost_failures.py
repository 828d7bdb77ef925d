"""models/cost.py with failures: zero rate gives the failure-free time exactly, arrays, estimate extras, CLI."""

import dataclasses
import json

import numpy as np
import pytest

from models import cost
from models.estimate import estimate
from models.hardware import make_cluster
from models.plan import Plan
from models.reliability import ReliabilitySpec
from models.transformer import get_model
from simulator.cli import main

NO_FAILURES = ReliabilitySpec(gpu_failures_per_gpu_hour=0.0, node_failures_per_node_hour=0.0)


@pytest.fixture(scope="module")
def small():
    model = get_model("gpt-tiny")
    cluster = make_cluster("a100", 1)
    plan = Plan(dp=8, global_batch_size=64)
    return model, cluster, plan, estimate(model, cluster, plan)


def test_zero_failure_rate_gives_exactly_the_failure_free_time(small):
    model, cluster, plan, est = small
    run = cost.time_to_train(model, cluster, plan, 5e9, est=est, spec=NO_FAILURES)
    ff = cost.run_figures(cluster, est.step_time_s, plan.world_size, 5e9, plan.global_batch_size, model.seq_len,
                          run.utilisation)
    assert run.time_to_train_s == float(ff["time_to_train_s"]) == run.iterations * est.step_time_s
    assert run.cost_usd == pytest.approx(float(ff["cost_usd"]), rel=1e-12)
    assert run.energy_kwh == pytest.approx(float(ff["energy_kwh"]), rel=1e-12)
    assert run.expected_failures == 0 and run.goodput == 1.0 and run.mtbf_s == float("inf")


def test_expected_run_parts_sum_to_the_total_and_match_daly():
    r = cost.expected_run(2.0, 10_000, 300, 20.0, 600.0, 5 * 3600.0)
    parts = r["useful_s"] + r["checkpoint_s"] + r["lost_work_s"] + r["restart_s"]
    assert float(parts) == pytest.approx(float(r["time_s"]), rel=1e-12)
    # 33 segments of 300 iterations (600 s) + a 20 s checkpoint, then 100 iterations (200 s), no checkpoint
    m, rr = 5 * 3600.0, 600.0
    daly = 33 * m * np.exp(rr / m) * np.expm1(620 / m) + m * np.exp(rr / m) * np.expm1(200 / m)
    assert float(r["time_s"]) == pytest.approx(daly, rel=1e-12)
    assert float(r["checkpoints"]) == 33


def test_optimal_interval_is_near_the_exact_optimum_and_beats_neighbours():
    step, it, c, r, m = 5.0, 100_000, 3.0, 900.0, 11130.0
    k, cb = cost.best_iters_per_checkpoint(step, it, c, r, m)
    tau = cost.rel.exact_interval_s(c, m)
    assert abs(float(k) * step - float(tau)) <= step
    t = lambda kk: float(cost.expected_run(step, it, kk, c, r, m)["time_s"])  # noqa: E731
    assert t(float(k)) <= min(t(float(k) - 5), t(float(k) + 5))


def test_failures_cost_time_money_and_energy(small):
    model, cluster, plan, est = small
    base = cost.time_to_train(model, cluster, plan, 5e11, est=est)
    worse = cost.time_to_train(model, cluster, plan, 5e11, est=est,
                               spec=dataclasses.replace(ReliabilitySpec(), job_failures_per_hour=1.0))
    assert worse.time_to_train_s > base.time_to_train_s > base.failure_free_s
    assert worse.cost_usd > base.cost_usd > base.failure_free_cost_usd
    assert worse.energy_kwh > base.energy_kwh > base.failure_free_energy_kwh
    assert worse.goodput < base.goodput < 1
    assert worse.checkpoint_interval_s < base.checkpoint_interval_s  # fail more often, checkpoint more often


def test_fixed_interval_rounds_to_iterations(small):
    model, cluster, plan, est = small
    run = cost.time_to_train(model, cluster, plan, 5e11, est=est, checkpoint_interval_s=100 * est.step_time_s)
    assert run.iters_per_checkpoint == 100
    with pytest.raises(ValueError, match="checkpoint_interval"):
        cost.time_to_train(model, cluster, plan, 5e11, est=est, checkpoint_interval_s=-1)
    with pytest.raises(ValueError, match="tokens"):
        cost.time_to_train(model, cluster, plan, -5, est=est)


def test_run_figures_with_failures_is_vectorised():
    cl = make_cluster("h100", 16)
    steps = np.array([1.0, 2.0, 4.0])
    tp, pp, dp = np.array([1, 2, 8]), np.array([1, 2, 2]), np.array([128, 32, 8])
    ck = cost.checkpoint_costs(cl, 7e9, tp, pp, dp, 1, np.array([1, 0, 3]))
    arr = cost.run_figures_with_failures(cl, steps, 128, 1e11, 512, 4096, 0.8, ck)
    assert arr["time_to_train_s"].shape == (3,)
    for i in range(3):
        ck1 = cost.checkpoint_costs(cl, 7e9, int(tp[i]), int(pp[i]), int(dp[i]), 1, [1, 0, 3][i])
        one = cost.run_figures_with_failures(cl, float(steps[i]), 128, 1e11, 512, 4096, 0.8, ck1)
        for key in ("time_to_train_s", "cost_usd", "energy_kwh", "goodput", "iters_per_checkpoint"):
            assert float(arr[key][i]) == pytest.approx(float(one[key]), rel=1e-12)


def test_llama3_405b_scenario_figures():
    # Llama 3: 16,384 H100, 2,048 x 8,192-token sequences, 15.6T tokens; 419 interruptions / 54 days
    model = get_model("llama3-405b").with_seq_len(8192)
    cl = make_cluster("h100", 2048)
    plan = Plan(dp=128, tp=8, pp=16, vpp=7, schedule="interleaved", sp=True, zero_stage=2, global_batch_size=2048)
    run = cost.time_to_train(model, cl, plan, 15.6e12)
    assert run.iterations == 929_833
    assert run.mtbf_s / 3600 == pytest.approx(3.09, abs=0.01)
    assert run.checkpoint_bytes == pytest.approx(model.num_params * 14)
    # Wald's identity: failures = rate x time exposed (all but restarts), the Llama 3 rate of 419 per 54 days
    exposed_days = (run.time_to_train_s - run.restart_total_s) / 86400
    assert run.expected_failures / exposed_days == pytest.approx(419 / 54, rel=1e-9)
    assert 0.8 < run.goodput < 0.97   # Meta reports > 90% effective training time (not fitted)
    assert run.young_interval_s == pytest.approx(np.sqrt(2 * run.checkpoint_blocking_s * run.mtbf_s))


def test_estimate_extras_keys(small):
    model, cluster, plan, est = small
    c, run = cost.estimate_extras(model, cluster, plan, est)
    assert c["cost_usd_per_iteration"] == pytest.approx(est.step_time_s * 8 / 3600 * cluster.price_per_gpu_hour_usd)
    for key in ("energy_kwh_per_iteration", "gpu_hours_per_iteration", "time_to_train_s", "checkpoint_interval_s",
                "goodput", "mtbf_s"):
        assert key in c and np.isfinite(c[key])
    from simulator.cli.report import cost_report_lines
    assert any("time to train" in line for line in cost_report_lines(c, run, cluster.price_per_gpu_hour_usd))


def test_cli_estimate_json_has_cost(capsys):
    assert main(["estimate", "--model", "gpt-tiny", "--gpu", "a100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost"]["cost_usd_per_iteration"] > 0 and out["cost"]["time_to_train_s"] > 0


def test_cli_train_time(capsys):
    code = main(["train-time", "--model", "gpt-tiny", "--gpu", "a100", "--tokens", "1e11", "--mtbf-hours", "2",
                 "--monte-carlo", "200", "--seed", "3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mtbf_s"] == pytest.approx(7200.0)
    mc = out["monte_carlo"]
    assert mc["trials"] == 200 and mc["p10_s"] <= mc["median_s"] <= mc["p90_s"]
    assert main(["train-time", "--model", "gpt-tiny", "--gpu", "a100", "--checkpoint-interval", "young"]) == 0
    assert "Young" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["--checkpoint-interval", "often"], "checkpoint-interval"),
    (["--detect-s", "-5"], "reliability.detect_s"),
    (["--stragglers", "many"], "stragglers"),
    (["--mtbf-hours", "0"], "mtbf-hours"),
])
def test_cli_train_time_bad_input_one_line(args, needle, capsys):
    assert main(["train-time", "--model", "gpt-tiny", "--gpu", "a100", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_train_time_from_scenario(capsys):
    assert main(["train-time", "--scenario", "scenarios/llama3-405b-16k-h100-failures.yaml", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_gpus"] == 16384 and out["tokens"] == 15.6e12
