"""The ``clustersim simulate`` command (registered into simulator.cli's app)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.app import Json, app, inputs_from_flags, with_plan_options

Trace = Annotated[Path | None, typer.Option("--trace", help="write a Chrome/Perfetto trace JSON here")]
Timeline = Annotated[Path | None, typer.Option("--timeline", help="write the timeline table (.csv or .parquet)")]
Seed = Annotated[int, typer.Option("--seed", help="random seed (per-GPU speed spread)")]
StragglerRank = Annotated[int | None, typer.Option("--straggler-rank", help="global rank of a slow GPU")]
StragglerSlowdown = Annotated[float, typer.Option("--straggler-slowdown",
                                                  help="time multiplier of the straggler's kernels (e.g. 1.2)")]
SpeedCV = Annotated[float, typer.Option("--speed-cv", help="per-GPU speed spread: coefficient of variation "
                                                           "of a lognormal time multiplier (0 = identical GPUs)")]




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
                 json_out: Json = False) -> None:
    """Discrete-event simulation of one iteration: timeline, exposed communication, bubble, trace."""
    from simulator.des.simulate import simulate
    inp = inputs_from_flags(**flags)
    if timeline is not None and timeline.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--timeline: {timeline} must end in .csv or .parquet")
    res = simulate(inp.model, inp.cluster, inp.plan, seed=seed, straggler_rank=straggler_rank,
                   straggler_slowdown=straggler_slowdown if straggler_rank is not None else 1.0,
                   speed_cv=speed_cv)
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(json.dumps(res.chrome_trace()))
    if timeline is not None:
        timeline.parent.mkdir(parents=True, exist_ok=True)
        (res.timeline.to_csv if timeline.suffix == ".csv" else res.timeline.to_parquet)(timeline, index=False)
    if json_out:
        typer.echo(json.dumps(res.as_dict(), indent=2))
        return
    typer.echo(simulate_report(res))
    if trace is not None:
        typer.echo(f"wrote {trace} (open in ui.perfetto.dev)")
    if timeline is not None:
        typer.echo(f"wrote {timeline}")
