"""Scenario files: the schema and the loader.

The schema is a set of pydantic models *derived* from the declared inputs (models/fields.py:
:class:`models.plan.Plan`, :class:`models.inputs.Training`, :class:`models.inputs.ClusterInputs`),
so a field added there is in the scenario format, its validation, ``clustersim schema`` and
the JSON Schema (draft 2020-12) without another line here.

YAML is read with ``yaml.safe_load`` only, from a regular file under :data:`MAX_FILE_BYTES`,
with aliases bounded (:data:`MAX_NODES` after expansion). Every error names the file, the line
where the YAML parser knows it, the field and the reason::

    scenarios/x.yaml:14: plans[1].tp: must be a positive integer, got 0
"""

from __future__ import annotations

import difflib
import itertools
import math
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, create_model

from models.fields import default_of, field_type, help_text, option, options
from models.inputs import PLAN_FIELDS, SEARCH_AXES, ClusterInputs, Training
from models.plan import Plan, user_value

MODES = ("estimate", "simulate", "both")
OBJECTIVE_NAMES = ("time", "time-to-train", "cost", "energy")
BACKEND_NAMES = ("auto", "serial", "process", "ray")
MAX_FILE_BYTES = 1 << 20          # a scenario is a few KB; larger files are refused unread
MAX_NODES = 100_000               # YAML nodes after alias expansion (a "billion laughs" file is refused)
MAX_ROWS = 100_000                # plans + sweep points of one scenario (each row is one estimate)


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names file, line, field and reason."""


# ------------------------------------------------------------------------------ field types

def _lower(v):
    return v.lower() if isinstance(v, str) else v


def _listify(v):
    return v if isinstance(v, list) else [v]


def _value_type(cls, name: str):
    """The pydantic type of one declared field's value (its type, range and choices)."""
    o, t = option(cls, name), field_type(cls, name)
    if o.choices:
        return Annotated[Literal[tuple(o.choices)], BeforeValidator(_lower)]
    rng = {k: v for k, v in (("ge", o.minimum), ("le", o.maximum)) if v is not None}
    if t is int:
        return Annotated[int, Field(strict=True, **rng)]
    if t is float:
        return Annotated[float, Field(allow_inf_nan=False, **rng)]
    if t is bool:
        return Annotated[bool, Field(strict=True)]
    return Annotated[str, Field(strict=True)]


def _field(cls, name: str, required: bool = False, listed: bool = False):
    """(type, FieldInfo) for create_model: the value, optional (None: its default), or a list of values."""
    desc = help_text(cls, name)
    item = _value_type(cls, name)
    if listed:
        typ = Annotated[list[item], BeforeValidator(_listify, json_schema_input_type=item | list[item]),
                        Field(min_length=1)]
        return typ | None, Field(None, description="values to try: " + desc)
    if required:
        return item, Field(..., description=desc)
    default = default_of(cls, name)
    default = None if option(cls, name).optional or name in ("schedule",) else user_value(default)
    return item | None, Field(default, description=desc)


_STRICT = ConfigDict(extra="forbid", frozen=True)

PlanSpec = create_model(
    "PlanSpec", __config__=_STRICT, __doc__="One plan (a `plans[]` entry); missing fields take their defaults.",
    name=(str | None, Field(None, description="optional label for this plan (a `name` column)")),
    **{n: _field(Plan, n) for n in PLAN_FIELDS})
SweepSpec = create_model(
    "SweepSpec", __config__=_STRICT, __doc__="A grid: plan field -> values; every combination is a row.",
    **{n: _field(Plan, n, listed=True) for n in PLAN_FIELDS})
TrainingSpec = create_model(
    "TrainingSpec", __config__=_STRICT, __doc__="Training settings shared by every plan of the scenario.",
    **{n: _field(Training, n, required=n == "global_batch_size") for n in options(Training)})
ClusterSpec = create_model(
    "ClusterSpec", __config__=_STRICT, __doc__="The cluster.",
    **{n: _field(ClusterInputs, n, required=n in ("gpu", "nodes")) for n in options(ClusterInputs)})
SearchSpec = create_model(
    "SearchSpec", __config__=_STRICT, __doc__="Run the planner; its best plans become rows.",
    objective=(Literal[OBJECTIVE_NAMES] | None, Field(None, description="time | time-to-train | cost | energy "
                                                     "(default: the scenario's objective)")),
    top=(Annotated[int, Field(strict=True, ge=1, le=10_000)], Field(10, description="how many of the best plans "
                                                                                    "become rows")),
    backend=(Literal[BACKEND_NAMES], Field("auto", description="auto | serial | process | ray")),
    simulate_top=(Annotated[int, Field(strict=True, ge=0, le=1_000)],
                  Field(0, description="re-rank this many of the best with the simulator (0: off)")),
    max_memory_fraction=(Annotated[float, Field(gt=0, le=1.5, allow_inf_nan=False)],
                         Field(1.0, description="a plan fits when peak memory <= this fraction of HBM")),
    num_nodes=(Annotated[list[Annotated[int, Field(strict=True, ge=1, le=1 << 20)]],
                         BeforeValidator(_listify, json_schema_input_type=int | list[int]), Field(min_length=1)] | None,
               Field(None, description="node counts to try (default: the cluster's); more than one gives a "
                                       "time-vs-cost Pareto front")),
    **{n: _field(Plan, n, listed=True) for n in SEARCH_AXES})


class Scenario(BaseModel):
    """A scenario file: a model, a cluster, training settings and the plans to run."""
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str | dict[str, Any] = Field(..., description="preset name, path to a Hugging Face config.json (relative "
                                        "to this file), or a mapping: {preset: NAME, <Transformer field>: value, ...} "
                                        "or a full inline spec (name, num_layers, hidden, num_heads, num_kv_heads, "
                                        "ffn_hidden, vocab, seq_len, ...)")
    cluster: ClusterSpec = Field(..., description="the cluster (section below)")
    training: TrainingSpec = Field(..., description="training settings (section below)")
    name: str | None = Field(None, description="scenario name (default: the file name)")
    description: str = Field("", description="free text")
    mode: Literal[MODES] = Field("estimate", description="estimate | simulate | both")
    objective: Literal[OBJECTIVE_NAMES] = Field("time", description="ranks the rows: time | time-to-train | cost | "
                                                "energy")
    plans: list[PlanSpec] = Field([], description="a list of plans (section `plans[]` below)")
    sweep: SweepSpec | None = Field(None, description="a grid: plan field -> list of values; every combination is a "
                                    f"row (fields: {', '.join(PLAN_FIELDS)})")
    search: SearchSpec | None = Field(None, description="run the planner (section below); its best plans become rows")
    _source: str = PrivateAttr("<memory>")
    _sweep_order: tuple = PrivateAttr(())      # the sweep's fields in file order (the rows' order)

    @property
    def source(self) -> str:
        return self._source


SECTIONS = {"scenario": Scenario, "cluster": ClusterSpec, "training": TrainingSpec, "plans[]": PlanSpec,
            "sweep": SweepSpec, "search": SearchSpec}


# ------------------------------------------------------------------------------ loading

class _Ctx:
    """File name and the line of every YAML node, by path, for error messages."""

    def __init__(self, source: str, lines: dict):
        self.source, self.lines = source, lines

    def error(self, path: tuple, reason: str) -> ScenarioError:
        line = next((self.lines[path[:k]] for k in range(len(path), -1, -1) if path[:k] in self.lines), None)
        where = f"{self.source}:{line}" if line else self.source
        return ScenarioError(f"{where}: {_dotted(path) or 'scenario'}: {reason}")


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _node_lines(root, budget: int = MAX_NODES) -> dict:
    """path -> line of every node of a composed YAML tree; ScenarioError past ``budget`` nodes
    (aliases expanded), so a small file cannot ask for unbounded work."""
    out, stack, seen = {}, [(root, ())], 0
    while stack:
        node, path = stack.pop()
        seen += 1
        if seen > budget:
            raise ScenarioError(f"YAML aliases expand to more than {budget:,} nodes; refused (write the values out)")
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                out[key] = (v if isinstance(v, yaml.ScalarNode) else k).start_mark.line + 1
                stack.append((v, key))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, path + (i,)) for i, v in enumerate(node.value))
    return out


MAX_DEPTH = 64                    # nesting of mappings and lists (a scenario needs 4)


def _check_tree(root) -> None:
    """ScenarioError for a recursive alias (a node inside itself) or nesting deeper than MAX_DEPTH,
    found on the composed node graph before anything is expanded."""
    stack, on_path, seen = [(root, 0, False)], set(), 0
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        seen += 1
        if seen > MAX_NODES:
            raise ScenarioError(f"YAML aliases expand to more than {MAX_NODES:,} nodes; refused (write the values out)")
        if id(node) in on_path:
            raise ScenarioError(f"line {node.start_mark.line + 1}: a recursive YAML alias (a node inside itself); "
                                "refused")
        if depth > MAX_DEPTH:
            raise ScenarioError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; refused")
        on_path.add(id(node))
        stack.append((node, depth, True))
        kids = [v for _, v in node.value] if isinstance(node, yaml.MappingNode) else node.value
        stack.extend((k, depth + 1, False) for k in kids)


def read_text_file(path: str | Path, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a regular file of at most ``max_bytes``; ValueError (``what: reason``) otherwise.
    A directory, a pipe or a device (``/dev/zero``) is refused without reading it."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ValueError(f"{what}: {p}: no such file") from None
    except OSError as e:
        raise ValueError(f"{what}: {p}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what}: {p}: not a regular file")
    if st.st_size > max_bytes:
        raise ValueError(f"{what}: {p}: {st.st_size:,} bytes; larger than the {max_bytes:,}-byte limit")
    try:
        return p.read_bytes()[: max_bytes + 1].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what}: {p}: not UTF-8 text") from None
    except OSError as e:
        raise ValueError(f"{what}: {p}: cannot read ({e.strerror})") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; ScenarioError (a ValueError) names file, line, field, reason."""
    p = Path(path)
    try:
        text = read_text_file(p, "scenario")
    except ValueError as e:
        raise ScenarioError(str(e).removeprefix("scenario: ")) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # node tree for line numbers; constructs no objects
        if root is not None:
            _check_tree(root)
        lines = _node_lines(root) if root is not None else {}
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ScenarioError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except ScenarioError as e:
        raise ScenarioError(f"{p}: {e}") from None
    except RecursionError:
        raise ScenarioError(f"{p}: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}:1: scenario: expected a mapping with model, cluster, training and plans/sweep/search")
    return parse_scenario(data, _Ctx(str(p), lines), name=p.stem, base_dir=p.parent)


def parse_scenario(data: dict, ctx: _Ctx | None = None, name: str = "scenario",
                   base_dir: Path | None = None) -> Scenario:
    """Validate a scenario given as a dict (what the YAML holds)."""
    ctx = ctx or _Ctx("<scenario>", {})
    if not isinstance(data, dict):
        raise ctx.error((), "expected a mapping with model, cluster, training and plans/sweep/search")
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        path, reason = _reason(err)
        raise ctx.error(path, reason) from None
    except RecursionError:
        raise ctx.error((), "nested too deeply") from None
    if not scn.plans and scn.sweep is None and scn.search is None:
        raise ctx.error((), "give `plans`, a `sweep` grid or `search` (none found)")
    rows = len(scn.plans) + (math.prod(len(v) for v in scn.sweep.model_dump(exclude_none=True).values())
                             if scn.sweep is not None else 0)
    if rows > MAX_ROWS:
        raise ctx.error(("sweep",), f"{rows:,} plans; more than the {MAX_ROWS:,} one scenario may run (use `search`, "
                                    "which scores millions of plans without listing them)")
    scn = scn.model_copy(update={"name": scn.name or name, "model": _model_spec(scn.model, base_dir)})
    scn._source = ctx.source
    scn._sweep_order = tuple(data["sweep"]) if isinstance(data.get("sweep"), dict) else ()
    return scn


def _reason(err: dict) -> tuple[tuple, str]:
    """(path, message) of a pydantic error, in the words of the rest of the CLI."""
    path = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS)))
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _known_keys(path[:-1])
        hint = difflib.get_close_matches(str(path[-1]), known, n=1)
        return path, "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(known)}")
    if kind == "missing":
        desc = _description(path)
        return path[:-1], f"missing required field {path[-1]!r}" + (f" ({desc})" if desc else "")
    if kind == "literal_error":
        return path, f"{value!r} unknown; choose one of {ctx.get('expected', '').replace(' or ', ', ')}".replace("'", "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return path, f"expected a mapping, got {_kind_name(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float") or (kind in ("greater_than_equal", "greater_than")
                                                                 and isinstance(value, int) and ctx.get("ge") == 1):
        return path, f"must be a positive integer, got {value!r}" if ctx.get("ge", 1) == 1 else \
            f"must be an integer, got {value!r}"
    if kind in ("bool_type", "bool_parsing"):
        return path, f"must be true or false, got {value!r}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return path, f"must be a finite number, got {value!r}"
    if kind in ("string_type",):
        return path, f"must be a string, got {_kind_name(value)}"
    if kind in ("list_type", "too_short"):
        return path, f"must be a non-empty list, got {_kind_name(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return path, f"{err['msg'].lower()}, got {value!r}"
    return path, f"{err['msg']} (got {_kind_name(value)})"


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "function-before", "function-after", "literal"}


def _known_keys(path: tuple) -> list[str]:
    model = _section_of(path)
    return list(model.model_fields) if model is not None else []


def _section_of(path: tuple):
    m = Scenario
    for p in path:
        if isinstance(p, int):
            continue
        f = m.model_fields.get(p)
        if f is None:
            return None
        sub = {"cluster": ClusterSpec, "training": TrainingSpec, "plans": PlanSpec, "sweep": SweepSpec,
               "search": SearchSpec}.get(p) if m is Scenario else None
        if sub is None:
            return None
        m = sub
    return m


def _description(path: tuple) -> str:
    m = _section_of(path[:-1])
    f = m.model_fields.get(path[-1]) if m is not None else None
    return (f.description or "") if f is not None else ""


def _kind_name(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(v), f"{type(v).__name__} {v!r}")


def _model_spec(v, base_dir: Path | None):
    """Keep the model as given, resolving a relative config.json path against the scenario's folder."""
    if isinstance(v, str) and (v.endswith(".json") or "/" in v) and base_dir is not None:
        candidate = base_dir / v
        return str(candidate) if candidate.exists() else v
    if isinstance(v, dict) and isinstance(v.get("config"), str) and base_dir is not None:
        candidate = base_dir / v["config"]
        return v | {"config": str(candidate)} if candidate.exists() else v
    return v


def plan_rows(scn: Scenario) -> list[tuple[str, int, dict]]:
    """(source, index, plan fields) of every listed plan and every sweep point, in file order."""
    rows = [("plans", i, p.model_dump(exclude_none=True)) for i, p in enumerate(scn.plans)]
    if scn.sweep is not None:
        grid = scn.sweep.model_dump(exclude_none=True)
        keys = sorted(grid, key=lambda k: scn._sweep_order.index(k) if k in scn._sweep_order else len(grid))
        rows += [("sweep", i, dict(zip(keys, combo)))
                 for i, combo in enumerate(itertools.product(*(grid[k] for k in keys)))]
    return rows


__all__ = ["Scenario", "ClusterSpec", "TrainingSpec", "PlanSpec", "SweepSpec", "SearchSpec", "ScenarioError",
           "load_scenario", "parse_scenario", "plan_rows",
           "read_text_file", "MODES", "OBJECTIVE_NAMES"]
