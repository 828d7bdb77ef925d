"""The command-line app and the options shared by its commands (each command module adds its own
commands to ``app`` when imported; ``simulator.cli`` imports a command's module when the command runs).

Commands are plain functions whose parameters carry their flags as ``Annotated[type, Option(...)]``;
:class:`App` turns them into click commands. Plain click, not typer: typer (0.2x) coerces every option
through a pydantic TypeAdapter built on each run, which made `clustersim estimate` start 3x slower than
``python -c "import numpy, yaml"`` (issue 19); the options here are str, int, float, bool and paths,
which click's own types parse."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated

import click

from models.fields import default_of, field_type, help_text, option, options
from models.frameworks import PROFILE_FIELDS
from models.inputs import ClusterInputs, Training, build_inputs
from models.plan import Plan, user_value

echo = click.echo   # the commands print with click's echo (stdout, or err=True for stderr)
Exit = click.exceptions.Exit   # raise Exit(code) to end a command with that status


@dataclasses.dataclass(frozen=True)
class Option:
    """The flags and help of one option: ``Annotated[int, Option("--seed", help="...")]``."""
    decls: tuple
    help: str = ""

    def __init__(self, *decls: str, help: str = ""):
        object.__setattr__(self, "decls", decls)
        object.__setattr__(self, "help", help)


@dataclasses.dataclass(frozen=True)
class Argument:
    """A positional argument (required): ``Annotated[Path, Argument(help="...")]``."""
    help: str = ""


# command name -> the module of simulator.cli that defines it, in the order `clustersim --help` lists them.
# Only the module of the command that runs is imported (issue 19: start-up); tests/test_specs_cli.py checks
# that this map and the modules' @app.command names agree.
COMMAND_MODULES = {
    "estimate": "estimate", "simulate": "simulate", "search": "scenario", "run": "scenario",
    "train-time": "cost", "export": "export", "published": "estimate", "presets": "estimate",
    "model": "estimate", "schema": "scenario", "calibrate": "calibrate", "validate": "calibrate",
    "ui": "dashboard",
}


def import_commands(module: str) -> None:
    """Import one command module of simulator.cli, which registers its commands (plain imports)."""
    if module == "estimate":
        import simulator.cli.estimate  # noqa: F401
    elif module == "simulate":
        import simulator.cli.simulate  # noqa: F401
    elif module == "scenario":
        import simulator.cli.scenario  # noqa: F401
    elif module == "cost":
        import simulator.cli.cost  # noqa: F401
    elif module == "export":
        import simulator.cli.export  # noqa: F401
    elif module == "calibrate":
        import simulator.cli.calibrate  # noqa: F401
    elif module == "dashboard":
        import simulator.cli.dashboard  # noqa: F401


class App:
    """The clustersim commands: functions registered by name (:meth:`command`), built into click
    commands when first used; calling the app runs one command line."""

    def __init__(self, help: str):
        self.help = help
        self.commands: dict = {}   # name -> function

    def command(self, name: str):
        def deco(fn):
            self.commands[name] = fn
            return fn
        return deco

    def click_command(self, name: str) -> click.Command | None:
        """The click command ``name``, importing the module that defines it."""
        if name not in self.commands and name in COMMAND_MODULES:
            import_commands(COMMAND_MODULES[name])
        fn = self.commands.get(name)
        return None if fn is None else click_command(name, fn)

    def group(self) -> click.Group:
        return _Group(self, name="clustersim", help=self.help, no_args_is_help=True,
                      context_settings={"max_content_width": 120},
                      params=[click.Option(["--version"], is_flag=True, is_eager=True, expose_value=False,
                                           callback=_version, help="print the version and exit")])

    def __call__(self, args: list[str] | None = None, standalone_mode: bool = True):
        return self.group().main(args=args, prog_name="clustersim", standalone_mode=standalone_mode)


class _Group(click.Group):
    """A click group whose commands come from :class:`App` as they are asked for."""

    def __init__(self, app: App, **kw):
        super().__init__(**kw)
        self.app = app

    def list_commands(self, ctx) -> list[str]:
        return [*COMMAND_MODULES, *(n for n in self.app.commands if n not in COMMAND_MODULES)]

    def get_command(self, ctx, name: str) -> click.Command | None:
        return self.app.click_command(name)


def click_command(name: str, fn) -> click.Command:
    """A click command from a function whose parameters are ``Annotated[type, Option | Argument]``."""
    params, notes = [], []
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        t, info = _unwrap(p.annotation)
        default = None if p.default is inspect.Parameter.empty else p.default
        if isinstance(info, Argument):
            params.append(click.Argument([p.name], type=_click_type(t)))
            notes.append(f"  {p.name.upper():10s}{info.help}")
            continue
        if t is bool:   # --x: a flag; --x/--no-x: on, off or (default None) unset
            flag = {} if any("/" in d for d in info.decls) else {"is_flag": True}
            params.append(click.Option([p.name, *info.decls], default=default, help=info.help, **flag))
        else:
            params.append(click.Option([p.name, *info.decls], type=_click_type(t), default=default, help=info.help,
                                       show_default=default is not None))
    doc = inspect.getdoc(fn) or ""
    if notes:
        doc += "\n\n\b\nArguments:\n" + "\n".join(notes)
    return click.Command(name, callback=fn, params=params, help=doc, short_help=doc.split("\n\n")[0].replace("\n", " "))


def _unwrap(annotation) -> tuple:
    """(value type, Option or Argument) of ``Annotated[T | None, info]``."""
    t, info = typing.get_args(annotation)[:2]
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t, info


def _click_type(t):
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(t) or click.Path(path_type=Path)


def _version(ctx, param, value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version
        try:
            echo(f"clustersim {version('clustersim')}")
        except PackageNotFoundError:
            echo("clustersim (not installed: running from a source tree)")
        ctx.exit(0)


app = App(help="Cluster-scale LLM training simulator and cost model.")

Model = Annotated[str, Option("--model", help="preset name (see `clustersim presets`) or path to a "
                                                 "Hugging Face config.json")]
Profile = Annotated[Path | None, Option("--profile", help="calibration profile YAML (clustersim calibrate)")]
Json = Annotated[bool, Option("--json", help="print JSON on stdout instead of the report")]

# Every model / cluster / training / plan option, derived from the declarations in models/ (one
# per declared field; see docs/CONTRIBUTING.md). A command takes them with @with_plan_options.
DECLARED = (ClusterInputs, Training, Plan)


# Fields a framework profile may set when the user leaves them unset (models/frameworks.py).
_FRAMEWORK_SET = frozenset(PROFILE_FIELDS)


def declared_option(cls, name: str, listed: bool = False) -> inspect.Parameter:
    """The parameter (with its flag) of one declared field; ``listed``: comma-separated allowed values (search)."""
    o, t = option(cls, name), field_type(cls, name)
    if listed:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            str | None, Option(o.flag, help="allowed values, comma-separated: " + help_text(cls, name))])
    # Every flag arrives as None when not given (models.inputs.build_inputs: unset -> the declared default, or
    # --framework's); a value given equal to the declared default stays explicit. The help shows the default.
    declared = None if o.optional else user_value(default_of(cls, name))
    shown = "" if declared is None else f" (default: {str(declared).lower() if t is bool else declared}" + (
        ", or --framework's)" if name in _FRAMEWORK_SET else ")")
    flag = f"{o.flag}/--no-{o.flag[2:]}" if t is bool else o.flag
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[t | None, Option(flag, help=help_text(cls, name) + shown)])


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
        decl = next(d for d in p.annotation.__metadata__[0].decls if d.startswith("--"))
        out.append(decl.split("/")[0])
    return out


def with_plan_options(command_name: str, listed: tuple = ()):
    """Decorator for a command ``command(flags, **own_options)``: the command takes every
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
Force = Annotated[bool, Option("--force", help="replace an existing file that is not an earlier clustersim "
                                                     "output of the same kind (never an input of the run)")]


def output_option(formats: str = ".json") -> object:
    """The -o/--output option of a command whose result can go to a file (format by suffix)."""
    return Annotated[Path | None, Option("-o", "--output", help=f"write the result to this file ({formats})")]


def output_format(path: Path, allowed: tuple, flag: str = "output") -> str:
    """The suffix of an output path, checked against ``allowed`` (e.g. (".json", ".csv"))."""
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{flag}: {path.name!r}: choose a {' or '.join(allowed)} file name")
    return suffix
