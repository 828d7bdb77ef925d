"""`clustersim estimate`, `published` and `presets`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from models.cost import estimate_extras
from models.estimate import estimate
from simulator.cli.app import Json, Profile, app, inputs_from_flags, with_plan_options
from simulator.cli.report import cost_report_lines, estimate_report, published_report


@app.command("estimate")
@with_plan_options("estimate")
def estimate_cmd(flags: dict, json_out: Json = False) -> None:
    """Analytical estimate of one iteration: time and its breakdown, MFU, memory per GPU, OOM verdict."""
    inp = inputs_from_flags(**flags)
    est = estimate(inp.model, inp.cluster, inp.plan)
    out = est.as_dict()
    out["cost"], run = estimate_extras(inp.model, inp.cluster, inp.plan, est, tokens=inp.training.tokens)
    if json_out:
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(estimate_report(inp.model, inp.cluster, est))
        for line in cost_report_lines(out["cost"], run, inp.cluster.price_per_gpu_hour_usd):
            typer.echo(line)


@app.command("published")
def published_cmd(file: Annotated[Path, typer.Argument(help="runs YAML in the format of dev_runs.yaml")],
                  json_path: Annotated[Path | None, typer.Option("--json", help="write JSON here")] = None,
                  profile: Profile = None) -> None:
    """Predict published measured runs and compare iteration times (count, MAPE, median, max error)."""
    from simulator.validation.published import predict_runs
    result = predict_runs(file, profile=profile) if profile else predict_runs(file)
    typer.echo(published_report(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str))
        typer.echo(f"wrote {json_path}")


@app.command("presets")
def presets_cmd() -> None:
    """List the model presets, GPUs and node presets."""
    from models.hardware import GPUS, NODES
    from models.transformer import PRESETS
    typer.echo("models: " + ", ".join(PRESETS))
    typer.echo("gpus:   " + ", ".join(GPUS))
    typer.echo("nodes:  " + ", ".join(NODES))
