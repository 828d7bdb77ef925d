"""`clustersim estimate`, `published` and `presets`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from models.cost import estimate_extras
from models.estimate import estimate
from simulator.cli.app import (
    Argument,
    Force,
    Json,
    Option,
    Profile,
    app,
    echo,
    inputs_from_flags,
    output_format,
    output_option,
    with_plan_options,
)
from simulator.cli.report import cost_report_lines, estimate_report, published_report
from simulator.files import check_output_path, input_files, output_json, strict_json, write_output


@app.command("estimate")
@with_plan_options("estimate")
def estimate_cmd(flags: dict, json_out: Json = False, output: output_option(".json") = None,
                 force: Force = False) -> None:
    """Analytical estimate of one iteration: time and its breakdown, MFU, memory per GPU, OOM verdict."""
    inputs = input_files(flags["model"], flags.get("profile"))
    if output is not None:
        output_format(output, (".json",))
    inp = inputs_from_flags(**flags)
    est = estimate(inp.model, inp.cluster, inp.plan)
    out = est.as_dict()
    out["cost"], run = estimate_extras(inp.model, inp.cluster, inp.plan, est, tokens=inp.training.tokens)
    if output is not None:
        write_output(output, output_json(out, "estimate"), "estimate", inputs, force)
    if json_out:
        echo(strict_json(out))
    else:
        echo(estimate_report(inp.model, inp.cluster, est))
        for line in cost_report_lines(out["cost"], run, inp.cluster.price_per_gpu_hour_usd):
            echo(line)
    if output is not None and not json_out:
        echo(f"wrote {output}")


@app.command("published")
def published_cmd(file: Annotated[Path, Argument(help="runs YAML in the format of dev_runs.yaml")],
                  json_out: Json = False,
                  output: output_option(".json, or .csv: one row per record") = None,
                  profile: Profile = None, force: Force = False) -> None:
    """Predict published measured runs and compare iteration times (count, MAPE, median, max error)."""
    from simulator.validation.published import predict_runs
    inputs = input_files(file, profile)
    if output is not None:
        output_format(output, (".json", ".csv"), "output")
        check_output_path(output, "published", inputs, force, "output")  # before the work
    result = predict_runs(file, profile=profile) if profile else predict_runs(file)
    if json_out:
        echo(strict_json(result))
    else:
        echo(published_report(result))
    if output is not None:
        if output.suffix.lower() == ".csv":
            rows = _published_rows(result)
            write_output(output, lambda t, rows=rows: rows.to_csv(t, index=False, lineterminator="\n"), "published",
                         inputs, force, "output")
        else:
            write_output(output, output_json(result, "published"), "published", inputs, force, "output")
        if not json_out:
            echo(f"wrote {output}")


def _published_rows(result: dict):
    """One row per record (id, reliability, group first; the defaults used joined by '; ')."""
    import pandas as pd
    rows = pd.DataFrame([{"id": r.get("id"), "reliability": r.get("reliability"), "group": r.get("group")}
                         | {k: v for k, v in r.items() if k != "defaults"}
                         | {"defaults": "; ".join(map(str, r.get("defaults", [])))} for r in result["records"]])
    return rows


@app.command("presets")
def presets_cmd() -> None:
    """List the model presets, GPUs and node presets."""
    from models.hardware import GPUS, NODES
    from models.transformer import PRESETS
    echo("models: " + ", ".join(PRESETS))
    echo("gpus:   " + ", ".join(GPUS))
    echo("nodes:  " + ", ".join(NODES))


@app.command("model")
def model_cmd(model: Annotated[str, Argument(help="preset name, config.json, a Hugging Face snapshot folder or "
                                                        "cache, or a cached Hub id (org/name)")],
              seq_len: Annotated[int | None, Option("--seq-len", help="training sequence length [tokens]")] = None,
              json_out: Json = False) -> None:
    """What a model is: what was read from its config and what was ignored, the architecture,
    parameters (total / active / embedding, per component) and bytes per dtype."""
    from models.describe import describe_model
    rep = describe_model(model, seq_len=seq_len)
    if json_out:
        echo(strict_json(rep.as_dict()))
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
