"""The typer app and the options shared by its commands (each command module adds its own
commands to ``app`` when imported; ``simulator.cli`` imports them all)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from simulator.planning.inputs import build_inputs

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
        from simulator.validation.calibrate.profile import apply_profile  # issue 5; imported lazily
        inp = apply_profile(inp, profile)
    return inp
