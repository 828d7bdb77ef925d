"""The ``clustersim`` command line (typer). Bad input prints one line naming the field and
the reason and exits with status 2; no tracebacks."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from models.estimate import PlanError, estimate
from simulator.inputs import build_inputs
from simulator.report import estimate_report, published_report

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cluster-scale LLM training simulator and cost model.")

# Options shared by estimate, simulate and search (reuse these in other commands).
Model = Annotated[str, typer.Option("--model", help="preset name (see `clustersim presets`) or path to a HF config.json")]
Gpu = Annotated[str, typer.Option("--gpu", help="GPU from the catalog, e.g. h100-sxm-80gb")]
Nodes = Annotated[int, typer.Option("--nodes", help="number of nodes")]
Node = Annotated[str | None, typer.Option("--node", help="node preset (default: the GPU's usual server)")]
GpusPerNode = Annotated[int | None, typer.Option("--gpus-per-node", help="override GPUs per node")]
TP = Annotated[int, typer.Option("--tp", help="tensor-parallel degree")]
PP = Annotated[int, typer.Option("--pp", help="pipeline-parallel degree")]
DP = Annotated[int | None, typer.Option("--dp", help="data-parallel degree (default: fill the cluster)")]
CP = Annotated[int, typer.Option("--cp", help="context-parallel degree")]
EP = Annotated[int, typer.Option("--ep", help="expert-parallel degree")]
VPP = Annotated[int, typer.Option("--vpp", help="virtual pipeline stages per rank (interleaved)")]
MicroBatch = Annotated[int, typer.Option("--micro-batch", help="sequences per micro-batch")]
GlobalBatch = Annotated[int | None, typer.Option("--global-batch", help="sequences per iteration")]
SeqLen = Annotated[int | None, typer.Option("--seq-len", help="override the model's sequence length")]
SP = Annotated[bool, typer.Option("--sp/--no-sp", help="Megatron sequence parallelism")]
Recompute = Annotated[str, typer.Option("--recompute", help="none | selective | full")]
Zero = Annotated[int, typer.Option("--zero", help="ZeRO stage 0-3")]
Sched = Annotated[str | None, typer.Option("--schedule", help="gpipe | 1f1b | interleaved | zb-h1")]
Dtype = Annotated[str, typer.Option("--dtype", help="bf16 | fp16 | fp8")]
Attention = Annotated[str, typer.Option("--attention", help="flash | unfused")]
OverlapGrad = Annotated[bool, typer.Option("--overlap-grad-reduce/--no-overlap-grad-reduce")]
OverlapParam = Annotated[bool, typer.Option("--overlap-param-gather/--no-overlap-param-gather")]
OverlapTP = Annotated[bool, typer.Option("--overlap-tp-comm/--no-overlap-tp-comm")]
OverlapEP = Annotated[bool, typer.Option("--overlap-ep-comm/--no-overlap-ep-comm",
                                         help="hide MoE all-to-alls behind another micro-batch's compute")]
PlacementOpt = Annotated[str, typer.Option("--placement", help="rank order, innermost (on NVLink) first, "
                                          "e.g. tp-cp-dp-pp (Megatron, default) or dp-tp-cp-pp")]
Price = Annotated[float | None, typer.Option("--price-per-gpu-hour", help="USD per GPU-hour (default: catalog)")]
Profile = Annotated[Path | None, typer.Option("--profile", help="calibration profile YAML (clustersim calibrate)")]
Json = Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of the report")]


def _plan_options(model: Model = "gpt3-175b", gpu: Gpu = "a100-sxm-80gb", nodes: Nodes = 1, node: Node = None,
                  gpus_per_node: GpusPerNode = None, tp: TP = 1, pp: PP = 1, dp: DP = None, cp: CP = 1, ep: EP = 1,
                  vpp: VPP = 1, micro_batch: MicroBatch = 1, global_batch: GlobalBatch = None, seq_len: SeqLen = None,
                  sp: SP = False, recompute: Recompute = "none", zero: Zero = 0, schedule: Sched = None,
                  dtype: Dtype = "bf16", attention: Attention = "flash", overlap_grad_reduce: OverlapGrad = True,
                  overlap_param_gather: OverlapParam = True, overlap_tp_comm: OverlapTP = False,
                  overlap_ep_comm: OverlapEP = False, placement: PlacementOpt = "tp-cp-dp-pp",
                  price_per_gpu_hour: Price = None, profile: Profile = None) -> None:
    """The model / cluster / plan options of estimate, simulate and train-time (declared once)."""


PLAN_OPTIONS = inspect.signature(_plan_options, eval_str=True).parameters


def with_plan_options(command):
    """Decorator for a typer command ``command(flags, **own_options)``: the command takes the shared
    PLAN_OPTIONS too, and receives them collected in ``flags`` (keyword arguments of
    :func:`inputs_from_flags`). Typer reads the combined signature, so every command using it
    has the same options with the same defaults and help."""
    own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "flags"]
    params = [*PLAN_OPTIONS.values(), *own]

    @functools.wraps(command)
    def wrapper(**kw):
        flags = {name: kw.pop(name) for name in PLAN_OPTIONS}
        return command(flags, **kw)
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def inputs_from_flags(**kw):
    """build_inputs with a calibration profile applied when --profile is given."""
    profile = kw.pop("profile", None)
    inp = build_inputs(**kw)
    if profile is not None:
        from simulator.calibrate.profile import apply_profile  # issue 5; imported lazily
        inp = apply_profile(inp, profile)
    return inp


@app.command("estimate")
@with_plan_options
def estimate_cmd(flags: dict, json_out: Json = False) -> None:
    """Analytical estimate of one iteration: time and its breakdown, MFU, memory per GPU, OOM verdict."""
    inp = inputs_from_flags(**flags)
    est = estimate(inp.model, inp.cluster, inp.plan)
    out = est.as_dict()
    extra = _extra_estimate_fields(inp, est)
    lines = extra.pop("_report_lines", [])
    out.update(extra)
    if json_out:
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(estimate_report(inp.model, inp.cluster, est))
        for line in lines:
            typer.echo(line)


def _extra_estimate_fields(inp, est) -> dict:
    """Cost / energy / time-to-train fields contributed by models.cost when present (issue 7)."""
    try:
        cost = importlib.import_module("models.cost")
    except ImportError:
        return {}
    fn = getattr(cost, "estimate_extras", None)
    return fn(inp.model, inp.cluster, inp.plan, est) if fn else {}


@app.command("published")
def published_cmd(file: Annotated[Path, typer.Argument(help="runs YAML in the format of dev_runs.yaml")],
                  json_path: Annotated[Path | None, typer.Option("--json", help="write JSON here")] = None,
                  profile: Profile = None) -> None:
    """Predict published measured runs and compare iteration times (count, MAPE, median, max error)."""
    from simulator.published import predict_runs
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


# Commands contributed by other modules: each exposes register(app). Listed explicitly.
PLUGINS = ("simulator.sim_cli", "simulator.scenario_cli", "simulator.calibrate.cli", "ui.cli", "simulator.cost_cli")
for _name in PLUGINS:
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as _e:
        if _e.name != _name and not _name.startswith(str(_e.name)):
            raise
        continue
    if hasattr(_mod, "register"):  # a plugin imported half-way (its own doctest run) has none yet
        _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns input errors into one clear line."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except PlanError as e:
        for msg in e.errors:
            typer.echo(f"error: {msg}", err=True)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "RanksFailed":   # calibrate/validate's dead ranks; anything else is a bug
            raise
        typer.echo(f"error: {e}", err=True)
        return 1
    except Exception as e:  # click usage errors (typer may vendor its own click: match by shape)
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
