"""The ``clustersim simulate`` command (registered into simulator.cli's app)."""

import math
from pathlib import Path
from typing import Annotated

from simulator.cli.app import Force, Json, Option, app, echo, inputs_from_flags, output_format, output_option, with_plan_options
from simulator.des.bounds import MAX_SIM_OPS, check_simulation_size, simulation_ops  # noqa: F401
from simulator.files import MARKER, check_output_path, input_files, output_json, strict_json, write_output

Trace = Annotated[Path | None, Option("--trace", help="write a Chrome/Perfetto trace JSON here")]
Timeline = Annotated[Path | None, Option("--timeline", help="write the timeline table (.csv or .parquet)")]
Seed = Annotated[int, Option("--seed", help="random seed (per-GPU speed spread)")]
StragglerRank = Annotated[int | None, Option("--straggler-rank", help="global rank of a slow GPU")]
StragglerSlowdown = Annotated[float, Option("--straggler-slowdown",
                                                  help="time multiplier of the straggler's kernels (e.g. 1.2)")]
SpeedCV = Annotated[float, Option("--speed-cv", help="per-GPU speed spread: coefficient of variation "
                                                           "of a lognormal time multiplier (0 = identical GPUs)")]

# Bounds of the simulation inputs that are not declared fields (checked before any work).
MAX_STRAGGLER_SLOWDOWN = 100.0      # a GPU 100x slower than its peers is a failed GPU, not a straggler
MAX_SPEED_CV = 1.0                  # a spread of GPU speeds of 100% of the mean
def check_straggler_inputs(straggler_slowdown: float, speed_cv: float) -> None:
    """ValueError naming the flag when a straggler input is not finite or outside its range."""
    if not (math.isfinite(straggler_slowdown) and 1.0 <= straggler_slowdown <= MAX_STRAGGLER_SLOWDOWN):
        raise ValueError(f"straggler-slowdown: must be a finite time multiplier in [1, {MAX_STRAGGLER_SLOWDOWN:g}], "
                         f"got {straggler_slowdown!r}")
    if not (math.isfinite(speed_cv) and 0.0 <= speed_cv <= MAX_SPEED_CV):
        raise ValueError(f"speed-cv: must be a finite coefficient of variation in [0, {MAX_SPEED_CV:g}], "
                         f"got {speed_cv!r}")



def simulate_report(res) -> str:
    """The text report: simulated breakdown next to the analytical one."""
    est, plan = res.analytical, res.analytical.plan
    lines = [f"clustersim simulate: plan {plan.plan_id}, {est.num_microbatches} micro-batches on {est.num_gpus} GPUs",
             "", f"{'':26}{'simulated':>12}{'analytical':>12}"]

    def row(label, sim, ana):
        lines.append(f"{label:26}{sim:>10.3f} s{ana:>10.3f} s")
    row("iteration time", res.step_time_s, est.step_time_s)
    row("  compute", res.compute_s, est.compute_s)
    row("  exposed comm", res.exposed_comm_s, est.exposed_comm_s)
    for k, v in res.exposed_comm_by_kind_s.items():
        if v > 0 or est.exposed_comm_by_kind_s.get(k, 0) > 0:
            row(f"    {k}", v, est.exposed_comm_by_kind_s.get(k, 0.0))
    row("  pipeline bubble", res.bubble_s, est.bubble_s)
    lines.append(f"{'  idle':26}{res.idle_s:>10.3f} s{'':>12}")
    diff = res.step_time_s / est.step_time_s - 1
    lines.append(f"simulated vs analytical    {diff:+.1%}")
    lines.append(f"peak memory per GPU        {res.peak_memory_bytes / 2**30:>8.2f} GiB (analytical "
                 f"{est.peak_memory_bytes / 2**30:.2f} GiB, HBM {est.hbm_bytes / 2**30:.0f} GiB)")
    lines.append(f"bottleneck stage {res.critical_stage} (the breakdown above is its timeline); "
                 f"{res.num_events:,} events in {res.wall_s:.2f} s ({res.events_per_s:,.0f} events/s)")
    lines.append(res.critical_path_summary())
    if any(s != 1.0 for s in res.slowdown_by_stage):
        lines.append("stage slowdowns: " + ", ".join(f"{s:.3f}" for s in res.slowdown_by_stage))
    lines += [f"warning: {w}" for w in est.warnings]
    return "\n".join(lines)


@app.command("simulate")
@with_plan_options("simulate")
def simulate_cmd(flags: dict, trace: Trace = None, timeline: Timeline = None, seed: Seed = 0,
                 straggler_rank: StragglerRank = None, straggler_slowdown: StragglerSlowdown = 1.2,
                 speed_cv: SpeedCV = 0.0,
                 json_out: Json = False, output: output_option(".json") = None, force: Force = False) -> None:
    """Discrete-event simulation of one iteration: timeline, exposed communication, bubble, trace."""
    from simulator.des.simulate import simulate
    check_straggler_inputs(straggler_slowdown, speed_cv)
    inputs = input_files(flags["model"], flags.get("profile"))
    if timeline is not None:
        output_format(timeline, (".csv", ".parquet"), "timeline")
    if trace is not None:
        output_format(trace, (".json",), "trace")
    if output is not None:
        output_format(output, (".json",))
    for path, kind, flag in ((trace, "trace", "trace"), (timeline, "timeline", "timeline"),
                             (output, "simulate", "output")):
        if path is not None:
            check_output_path(path, kind, inputs, force, flag)  # before the work
    inp = inputs_from_flags(**flags)
    check_simulation_size(inp.plan)
    res = simulate(inp.model, inp.cluster, inp.plan, seed=seed, straggler_rank=straggler_rank,
                   straggler_slowdown=straggler_slowdown if straggler_rank is not None else 1.0,
                   speed_cv=speed_cv)
    if trace is not None:
        doc = res.chrome_trace()
        doc["otherData"] = {**doc.get("otherData", {}), MARKER: "trace"}
        write_output(trace, strict_json(doc, indent=None), "trace", inputs, force, "trace")
    if timeline is not None:
        if timeline.suffix.lower() == ".csv":
            writer = lambda t: res.timeline.to_csv(t, index=False)
        else:
            writer = lambda t: _to_parquet(res.timeline, t)
        write_output(timeline, writer, "timeline", inputs, force, "timeline")
    if output is not None:
        write_output(output, output_json(res.as_dict(), "simulate"), "simulate", inputs, force)
    if json_out:
        echo(strict_json(res.as_dict()))
        return
    echo(simulate_report(res))
    if trace is not None:
        echo(f"wrote {trace} (open in ui.perfetto.dev)")
    if timeline is not None:
        echo(f"wrote {timeline}")
    if output is not None:
        echo(f"wrote {output}")


def _to_parquet(df, path) -> None:
    try:
        df.to_parquet(path, index=False)
    except ImportError:
        raise ValueError("timeline: .parquet needs pyarrow; pip install 'clustersim[parquet]'") from None
