"""The typer app and the options shared by its commands (each command module adds its own
commands to ``app`` when imported; ``simulator.cli`` imports them all)."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from models.fields import default_of, field_type, help_text, option, options
from models.frameworks import PROFILE_FIELDS
from models.inputs import ClusterInputs, Training, build_inputs
from models.plan import Plan, user_value

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cluster-scale LLM training simulator and cost model.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            typer.echo(f"clustersim {version('clustersim')}")
        except PackageNotFoundError:
            typer.echo("clustersim (not installed: running from a source tree)")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Cluster-scale LLM training simulator and cost model."""

Model = Annotated[str, typer.Option("--model", help="preset name (see `clustersim presets`) or path to a "
                                                 "Hugging Face config.json")]
Profile = Annotated[Path | None, typer.Option("--profile", help="calibration profile YAML (clustersim calibrate)")]
Json = Annotated[bool, typer.Option("--json", help="print JSON on stdout instead of the report")]

# Every model / cluster / training / plan option, derived from the declarations in models/ (one
# per declared field; see docs/CONTRIBUTING.md). A command takes them with @with_plan_options.
DECLARED = (ClusterInputs, Training, Plan)


# Fields a framework profile may set when the user leaves them unset (models/frameworks.py).
_FRAMEWORK_SET = frozenset(PROFILE_FIELDS)


def declared_option(cls, name: str, listed: bool = False) -> inspect.Parameter:
    """The typer parameter of one declared field; ``listed``: comma-separated allowed values (search)."""
    o, t = option(cls, name), field_type(cls, name)
    if listed:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            str | None, typer.Option(o.flag, help="allowed values, comma-separated: " + help_text(cls, name))])
    # Every flag arrives as None when not given (models.inputs.build_inputs: unset -> the declared default, or
    # --framework's); a value given equal to the declared default stays explicit. The help shows the default.
    declared = None if o.optional else user_value(default_of(cls, name))
    shown = "" if declared is None else f" (default: {str(declared).lower() if t is bool else declared}" + (
        ", or --framework's)" if name in _FRAMEWORK_SET else ")")
    flag = f"{o.flag}/--no-{o.flag[2:]}" if t is bool else o.flag
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[t | None, typer.Option(flag, help=help_text(cls, name) + shown)])


def plan_options(command: str, listed: tuple = ()) -> list[inspect.Parameter]:
    """--model, every declared field the command takes (fields in ``listed`` as value lists), --profile."""
    out = [inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, default="gpt3-175b", annotation=Model)]
    seen = {"model"}
    for cls in DECLARED:
        for name, o in options(cls).items():
            if name in seen or (o.commands and command not in o.commands):
                continue
            if listed and o.section == "plan" and name not in listed:
                continue  # search: the planner sets the fields it does not search (dp fills the cluster)
            seen.add(name)
            out.append(declared_option(cls, name, listed=name in listed))
    if command != "search":
        out.append(inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Profile))
    return out


def option_flags(command: str, listed: tuple = ()) -> list[str]:
    """The flags of :func:`plan_options` (the --x of a --x/--no-x pair)."""
    out = []
    for p in plan_options(command, listed):
        info = p.annotation.__metadata__[0]
        decl = next(d for d in (info.default, *(info.param_decls or ())) if isinstance(d, str) and d.startswith("--"))
        out.append(decl.split("/")[0])
    return out


def with_plan_options(command_name: str, listed: tuple = ()):
    """Decorator for a typer command ``command(flags, **own_options)``: the command takes every
    declared option too (:func:`plan_options`) and receives them collected in ``flags``."""
    def deco(command):
        shared = plan_options(command_name, listed)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "flags"]
        params = [*shared, *own]
        names = [p.name for p in shared]

        @functools.wraps(command)
        def wrapper(**kw):
            flags = {name: kw.pop(name) for name in names}
            return command(flags, **kw)
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper
    return deco


def inputs_from_flags(**kw):
    """build_inputs with a calibration profile applied when --profile is given."""
    profile = kw.pop("profile", None)
    inp = build_inputs(**kw)
    if profile is not None:
        from simulator.validation.calibrate.profile import apply_profile  # issue 5; imported lazily
        inp = apply_profile(inp, profile)
    return inp


# Options of the commands that write files (simulator/files.py writes them).
Force = Annotated[bool, typer.Option("--force", help="replace an existing file that is not an earlier clustersim "
                                                     "output of the same kind (never an input of the run)")]


def output_option(formats: str = ".json") -> object:
    """The -o/--output option of a command whose result can go to a file (format by suffix)."""
    return Annotated[Path | None, typer.Option("-o", "--output", help=f"write the result to this file ({formats})")]


def output_format(path: Path, allowed: tuple, flag: str = "output") -> str:
    """The suffix of an output path, checked against ``allowed`` (e.g. (".json", ".csv"))."""
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{flag}: {path.name!r}: choose a {' or '.join(allowed)} file name")
    return suffix
