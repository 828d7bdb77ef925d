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


@app.command("model")
def model_cmd(model: Annotated[str, typer.Argument(help="preset name, config.json, a Hugging Face snapshot folder or "
                                                        "cache, or a cached Hub id (org/name)")],
              seq_len: Annotated[int | None, typer.Option("--seq-len", help="training sequence length [tokens]")] = None,
              json_out: Json = False) -> None:
    """What a model is: what was read from its config and what was ignored, the architecture,
    parameters (total / active / embedding, per component) and bytes per dtype."""
    from models.describe import describe_model
    rep = describe_model(model, seq_len=seq_len)
    if json_out:
        typer.echo(json.dumps(rep.as_dict(), indent=2, default=str))
        return
    model_report(rep.as_dict())


def model_report(d: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console(width=120)
    con.print(f"[bold]{d['name']}[/bold] ({d['source']}): {d['params']:,} parameters, {d['active_params']:,} active "
              f"per token, {d['embedding_params']:,} in the embedding; sequence {d['seq_len']:,} tokens "
              f"(limit {d['max_seq_len']:,})")
    arch = Table(title="architecture", show_header=False)
    for k, v in d["architecture"].items():
        arch.add_row(k, str(v))
    comp = Table(title="parameters by component")
    comp.add_column("component")
    comp.add_column("parameters", justify="right")
    comp.add_column("share", justify="right")
    for k, v in d["params_by_component"].items():
        if v:
            comp.add_row(k, f"{v:,}", f"{v / d['params']:.1%}")
    mem = Table(title="memory (GB, 1e9 bytes)")
    for col in ("dtype", "weights", "largest layer", "training, Adam"):
        mem.add_column(col, justify="left" if col == "dtype" else "right")
    for k, v in d["bytes_by_dtype"].items():
        train = v.get("training_adam_bytes")
        mem.add_row(k, f"{v['weights_bytes'] / 1e9:,.2f}", f"{v['largest_layer_bytes'] / 1e9:,.2f}",
                    "-" if train is None else f"{train / 1e9:,.1f}")
    for table in (arch, comp, mem):
        con.print(table)
    if d.get("read"):
        con.print("read: " + ", ".join(map(str, d["read"])))
    if d.get("ignored"):
        con.print("ignored: " + ", ".join(map(str, d["ignored"])))
    for w in d.get("warnings", []):
        con.print(f"warning: {w}")
    for n in d.get("notes", []):
        con.print(f"note: {n}")
