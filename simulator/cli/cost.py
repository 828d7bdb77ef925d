"""CLI command `train-time`: time to train N tokens with failures, checkpoints and stragglers;
GPU-hours, dollars, energy, the optimal checkpoint interval, goodput and a Monte Carlo spread."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

from simulator.cli.app import Force, Json, Option, app, echo, inputs_from_flags, output_format, output_option, with_plan_options
from simulator.files import check_output_path, input_files, output_json, strict_json, write_output

Interval = Annotated[str, Option(
    "--checkpoint-interval", help="compute seconds between checkpoints, or optimal | young | daly")]
AsyncCkpt = Annotated[bool, Option("--async-checkpoint/--blocking-checkpoint",
                                         help="async: stall only for the host snapshot; the write runs behind")]
GpuRate = Annotated[float | None, Option(
    "--gpu-failure-rate", help="failures per GPU-hour (default: Llama 3 Table 5, 1.56e-5)")]
NodeRate = Annotated[float | None, Option(
    "--node-failure-rate", help="failures per node-hour (default: Llama 3 Table 5, 3.3e-5)")]
JobRate = Annotated[float | None, Option("--job-failure-rate", help="extra whole-job failures per hour")]
Mtbf = Annotated[float | None, Option(
    "--mtbf-hours", help="job MTBF in hours (replaces the per-GPU/node rates; 'inf' for none)")]
Detect = Annotated[float | None, Option("--detect-s", help="seconds to detect a failure (default 300)")]
Restart = Annotated[float | None, Option(
    "--restart-s", help="seconds to restart, checkpoint read excluded (default 600)")]
Storage = Annotated[float | None, Option(
    "--storage-gb-per-s", help="file-system write bandwidth, GB/s (default 2000, Llama 3 Tectonic)")]
NodeStorage = Annotated[float | None, Option(
    "--node-storage-gb-per-s", help="write bandwidth of one node's storage client, GB/s (default 5)")]
MonteCarlo = Annotated[int, Option("--monte-carlo", help="Monte Carlo trials (0: off)")]
Seed = Annotated[int, Option("--seed", help="Monte Carlo seed")]
Stragglers = Annotated[str, Option("--stragglers", help="none | typical (assumed values, see README.md, Time to train)")]
SpeedCv = Annotated[float | None, Option("--gpu-speed-cv", help="persistent per-GPU speed spread")]
JitterCv = Annotated[float | None, Option("--jitter-cv", help="per-GPU per-iteration time noise")]
ScenarioOpt = Annotated[Path | None, Option(
    "--scenario", help="take model, cluster, plan and tokens from a scenario YAML (its first plan)")]
PlanIndex = Annotated[int, Option("--plan-index", help="which plan of --scenario")]
StepTime = Annotated[float | None, Option(
    "--step-time-s", help="use this measured iteration time instead of the analytical estimate")]


def reliability_spec(gpu_failure_rate=None, node_failure_rate=None, job_failure_rate=None, mtbf_hours=None,
                     detect_s=None, restart_s=None, storage_gb_per_s=None, node_storage_gb_per_s=None,
                     async_checkpoint=False):
    """A models.reliability.ReliabilitySpec from CLI-style overrides (None keeps the default)."""
    from models.reliability import ReliabilitySpec
    over = {"async_checkpoint": async_checkpoint}
    if mtbf_hours is not None:
        if not mtbf_hours > 0:
            raise ValueError(f"mtbf-hours: must be > 0 (or inf), got {mtbf_hours}")
        over |= {"gpu_failures_per_gpu_hour": 0.0, "node_failures_per_node_hour": 0.0,
                 "job_failures_per_hour": 0.0 if mtbf_hours == float("inf") else 1.0 / mtbf_hours}
    for key, v in (("gpu_failures_per_gpu_hour", gpu_failure_rate), ("node_failures_per_node_hour", node_failure_rate),
                   ("job_failures_per_hour", job_failure_rate), ("detect_s", detect_s), ("restart_s", restart_s)):
        if v is not None:
            over[key] = v
    if storage_gb_per_s is not None:
        over["fs_write_bytes_per_s"] = storage_gb_per_s * 1e9
    if node_storage_gb_per_s is not None:
        over["node_write_bytes_per_s"] = node_storage_gb_per_s * 1e9
    return ReliabilitySpec(**over)


def straggler_spec(name: str, gpu_speed_cv=None, jitter_cv=None):
    from simulator.planning.montecarlo import TYPICAL_STRAGGLERS, StragglerSpec
    table = {"none": StragglerSpec(), "typical": TYPICAL_STRAGGLERS}
    if name.lower() not in table:
        raise ValueError(f"stragglers: {name!r} unknown; choose one of {', '.join(table)}")
    st = table[name.lower()]
    over = {k: v for k, v in (("gpu_speed_cv", gpu_speed_cv), ("iteration_jitter_cv", jitter_cv)) if v is not None}
    return dataclasses.replace(st, **over) if over else st


def _scenario_inputs(path: Path, index: int):
    """(model, cluster, plan, tokens) of plan ``index`` of a scenario file (simulator.planning.scenario)."""
    from simulator.planning.scenario import build_cluster_spec, build_model, load_scenario, plan_from_spec, plan_rows
    scn = load_scenario(path)
    rows = plan_rows(scn)
    if not 0 <= index < len(rows):
        raise ValueError(f"plan-index: {path} has {len(rows)} listed plans/sweep points; got {index}")
    model, cluster = build_model(scn), build_cluster_spec(scn)
    spec = {k: v for k, v in rows[index][2].items() if k != "name"}
    return model, cluster, plan_from_spec(spec, model, cluster, scn.training), scn.training.tokens


def _interval(text: str, run_default):
    """None (optimal) or seconds; 'young' / 'daly' are resolved after a first evaluation."""
    t = text.strip().lower()
    if t in ("optimal", "exact", "young", "daly"):
        return t
    try:
        v = float(t)
    except ValueError:
        raise ValueError(f"checkpoint-interval: expected seconds or optimal | young | daly, got {text!r}") from None
    if not v > 0:
        raise ValueError(f"checkpoint-interval: must be > 0 seconds, got {text!r}")
    return v


def with_step_time(est, step_time_s):
    """``est`` with its iteration time replaced by a measured one; the parts scale in proportion."""
    if step_time_s is None:
        return est
    if not (math.isfinite(step_time_s) and step_time_s > 0):
        raise ValueError(f"step-time-s: must be a finite number > 0 seconds, got {step_time_s}")
    f = step_time_s / est.step_time_s
    return dataclasses.replace(est, step_time_s=step_time_s, compute_s=est.compute_s * f,
                               exposed_comm_s=est.exposed_comm_s * f, bubble_s=est.bubble_s * f,
                               tokens_per_s=est.tokens_per_s / f, tflops_per_gpu=est.tflops_per_gpu / f,
                               mfu=est.mfu / f, hfu=est.hfu / f)


def train_time(model, cluster, plan, tokens, spec, interval="optimal", est=None):
    """models.cost.time_to_train with the interval given as seconds or optimal | young | daly."""
    from models.cost import time_to_train
    from models.estimate import estimate
    est = est or estimate(model, cluster, plan)
    run = time_to_train(model, cluster, plan, tokens, est=est, spec=spec)
    if isinstance(interval, float):
        run = time_to_train(model, cluster, plan, tokens, est=est, spec=spec, checkpoint_interval_s=interval)
    elif interval in ("young", "daly"):
        tau = run.young_interval_s if interval == "young" else run.daly_interval_s
        if tau != float("inf"):
            run = time_to_train(model, cluster, plan, tokens, est=est, spec=spec, checkpoint_interval_s=tau)
    return run, est


@app.command("train-time")
@with_plan_options("train-time")
def train_time_cmd(flags: dict, checkpoint_interval: Interval = "optimal",
                   async_checkpoint: AsyncCkpt = False, gpu_failure_rate: GpuRate = None,
                   node_failure_rate: NodeRate = None, job_failure_rate: JobRate = None, mtbf_hours: Mtbf = None,
                   detect_s: Detect = None, restart_s: Restart = None, storage_gb_per_s: Storage = None,
                   node_storage_gb_per_s: NodeStorage = None, monte_carlo: MonteCarlo = 0, seed: Seed = 0,
                   stragglers: Stragglers = "none", gpu_speed_cv: SpeedCv = None, jitter_cv: JitterCv = None,
                   scenario: ScenarioOpt = None, plan_index: PlanIndex = 0, step_time_s: StepTime = None,
                   json_out: Json = False, output: output_option(".json") = None, force: Force = False) -> None:
    """Time to train N tokens with failures, checkpoints and restarts: wall time, GPU-hours, dollars,
    energy, the optimal checkpoint interval, goodput, and (--monte-carlo N) its distribution."""
    from models.cost import CHINCHILLA_TOKENS_PER_PARAM, default_token_budget, is_finetuning
    from models.estimate import estimate
    from simulator.cli.report import run_report_lines
    from simulator.planning.montecarlo import check_trials, monte_carlo_run
    if monte_carlo < 0:
        raise ValueError(f"monte-carlo: trials must be >= 0, got {monte_carlo}")
    if monte_carlo:
        check_trials(monte_carlo, "monte-carlo")
    if step_time_s is not None and not (math.isfinite(step_time_s) and step_time_s > 0):
        raise ValueError(f"step-time-s: must be a finite number > 0 seconds, got {step_time_s}")
    inputs = input_files(flags["model"], flags.get("profile"), scenario)
    if output is not None:
        output_format(output, (".json",))
        check_output_path(output, "train-time", inputs, force)  # before the work
    tokens = flags["tokens"]
    if scenario is not None:
        m, cl, plan, scn_tokens = _scenario_inputs(scenario, plan_index)
        if flags["price_per_gpu_hour"] is not None:
            cl = dataclasses.replace(cl, price_usd_per_gpu_hour=flags["price_per_gpu_hour"])
        tokens = tokens or scn_tokens
    else:
        inp = inputs_from_flags(**flags)
        m, cl, plan = inp.model, inp.cluster, inp.plan
    finetuning, given = is_finetuning(plan.finetune, plan.optimizer), bool(tokens)   # fine-tuning: a dataset's budget
    tokens = tokens or (default_token_budget(m, None, True)[0] if finetuning else CHINCHILLA_TOKENS_PER_PARAM * m.num_params)
    spec = reliability_spec(gpu_failure_rate, node_failure_rate, job_failure_rate, mtbf_hours, detect_s,
                            restart_s, storage_gb_per_s, node_storage_gb_per_s, async_checkpoint)
    st = straggler_spec(stragglers, gpu_speed_cv, jitter_cv)
    est = with_step_time(estimate(m, cl, plan), step_time_s)
    run, est = train_time(m, cl, plan, tokens, spec, _interval(checkpoint_interval, None), est)
    out = {"model": m.name, "gpu": cl.gpu.name, "num_gpus": plan.world_size, "plan_id": plan.plan_id,
           "price_usd_per_gpu_hour": cl.price_per_gpu_hour_usd, **run.as_dict(),
           "reliability": dataclasses.asdict(spec)}
    mc = None
    if monte_carlo:
        mc = monte_carlo_run(run, monte_carlo, seed, est.exposed_comm_s, st)
        out["monte_carlo"] = mc.as_dict() | {"stragglers": dataclasses.asdict(st)}
    if output is not None:
        write_output(output, output_json(out, "train-time"), "train-time", inputs, force)
    if json_out:
        echo(strict_json(out))
        return
    echo(f"clustersim train-time: {m.name} on {plan.world_size:,} x {cl.gpu.name}, plan {plan.plan_id}, "
               f"iteration {est.step_time_s:.3f} s (MFU {est.mfu:.1%})")
    if not est.fits:
        echo(f"warning: the plan does not fit in memory (peak {est.peak_memory_bytes / 2**30:.1f} GiB)")
    for line in run_report_lines(run):
        echo(line)
    if finetuning and not given:
        echo(f"tokens: {default_token_budget(m, None, True)[1]}; --tokens N for your dataset")
    if mc is not None:
        echo(mc_report_line(mc, stragglers))
    if output is not None:
        echo(f"wrote {output}")


def mc_report_line(mc, stragglers: str = "none") -> str:
    """One line summarising a MonteCarloResult, in the unit that suits its size."""
    unit, div = ("days", 86400.0) if mc.median_s >= 2 * 86400 else ("h", 3600.0) if mc.median_s >= 7200 else ("s", 1.0)
    return (f"Monte Carlo ({mc.trials} trials, seed {mc.seed}, stragglers {stragglers}): median "
            f"{mc.median_s / div:.4g} {unit}, p10 {mc.p10_s / div:.4g}, p90 {mc.p90_s / div:.4g}; mean "
            f"{mc.mean_s / div:.5g} +- {mc.sem_s / div:.2g} {unit} (analytic, no stragglers: {mc.analytic_s / div:.5g}); "
            f"failures p10-p90 {mc.failures_p10:.0f}-{mc.failures_p90:.0f}")
