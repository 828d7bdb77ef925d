"""Input fields declared once, with their metadata.

Every input a user gives (a plan field, a training setting, a cluster choice) is a dataclass
field whose ``metadata["opt"]`` is an :class:`Opt`: help text, unit, allowed values or range,
CLI flag, the section of a scenario file it belongs to, and the values the planner tries when
it is a search axis. Everything that lists inputs reads this declaration instead of repeating
it: the CLI options of every command, the scenario schema and its JSON Schema, the dashboard's
widgets and the planner's constraints and grid axes.

    >>> from models.plan import Plan
    >>> o = option(Plan, "micro_batch_size")
    >>> o.flag, o.section, o.minimum
    ('--micro-batch', 'plan', 1)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from types import MappingProxyType

SECTIONS = ("plan", "training", "cluster")


@dataclass(frozen=True, slots=True)
class Opt:
    """The metadata of one input field."""
    help: str                          # one line, what the field means
    section: str                       # plan (per plan; sweep and search axis) | training (shared by a run) | cluster
    flag: str = ""                     # CLI flag (default: --name-with-dashes); booleans get --x/--no-x
    unit: str = ""                     # unit of the value as the user gives it ("sequences", "tokens", "USD")
    choices: tuple = ()                # allowed values, as the user types them
    minimum: float | None = None       # smallest allowed value (numbers)
    maximum: float | None = None       # largest allowed value (numbers)
    search: tuple | None = None        # values the planner tries by default (None: not a search axis)
    optional: str = ""                 # when set, the field may be left out; this says what happens then
    commands: tuple = ()               # CLI commands that take it (empty: every plan command)


def opt(default, help: str, section: str, **kw):
    """A dataclass field carrying its :class:`Opt` metadata."""
    if section not in SECTIONS:
        raise ValueError(f"section: {section!r} must be one of {', '.join(SECTIONS)}")
    return dataclasses.field(default=default, metadata={"opt": Opt(help=help, section=section, **kw)})


# The declarations are fixed once a class is defined, and every Plan or Training built checks each of its
# fields through them (the planner builds one Plan per layout candidate): the lookups are cached per class.
@functools.cache
def options(cls) -> MappingProxyType:
    """name -> Opt of every declared input field of a dataclass, in declaration order (read-only)."""
    return MappingProxyType({f.name: f.metadata["opt"] for f in dataclasses.fields(cls) if "opt" in f.metadata})


@functools.cache
def option(cls, name: str) -> Opt:
    """The Opt of one field, with its CLI flag filled in."""
    o = options(cls)[name]
    return o if o.flag else dataclasses.replace(o, flag="--" + name.replace("_", "-"))


@functools.cache
def field_type(cls, name: str) -> type:
    """The value type of a field: int, float, bool or str (enums and optional types reduced)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for t in (bool, int, float, str):
        if t.__name__ in text.replace(" ", "").split("|"):
            return t
    return {"ZeroStage": int, "Recompute": str, "Schedule": str}.get(text.split("|")[0], str)


@functools.cache
def default_of(cls, name: str):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return None if f.default is dataclasses.MISSING else f.default


def check_value(cls, name: str, value, where: str | None = None):
    """``value`` checked against the field's type, choices and range; the normalised value or a
    ValueError naming the field (``where.name: reason``; ``where`` defaults to the section)."""
    o, t = option(cls, name), field_type(cls, name)
    where = f"{where or o.section}.{name}"
    if value is None:
        if o.optional or default_of(cls, name) is None:
            return None
        raise ValueError(f"{where}: needs a value")
    if t is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: must be true or false, got {value!r}")
        return value
    if t in (int, float):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where}: must be {'an integer' if t is int else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: must be a finite number, got {value!r}")
        if t is int and not isinstance(value, numbers.Integral) and not float(value).is_integer():
            raise ValueError(f"{where}: must be an integer, got {value!r}")
        value = t(value)
        if o.choices and value not in o.choices:
            raise ValueError(f"{where}: {value!r} unknown; choose one of {', '.join(map(str, o.choices))}")
        if o.minimum is not None and value < o.minimum:
            raise ValueError(f"{where}: must be >= {o.minimum:g}{' ' + o.unit if o.unit else ''}, got {value!r}")
        if o.maximum is not None and value > o.maximum:
            raise ValueError(f"{where}: must be <= {o.maximum:g}{' ' + o.unit if o.unit else ''}, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string, got {value!r}")
    if o.choices and value.lower() not in o.choices:
        raise ValueError(f"{where}: {value!r} unknown; choose one of {', '.join(o.choices)}")
    return value.lower() if o.choices else value


def help_text(cls, name: str) -> str:
    """The help line shown by the CLI and the dashboard: meaning, unit, allowed values, default."""
    o = option(cls, name)
    parts = [o.help]
    if o.unit:
        parts.append(f"[{o.unit}]")
    if o.choices:
        parts.append("(" + " | ".join(map(str, o.choices)) + ")")
    if o.optional:
        parts.append(f"(default: {o.optional})")
    return " ".join(parts)
