"""Inputs declared once (models/fields.py): the CLI, the scenario schema, the JSON Schema, the
planner and the dashboard are derived from the declaration, and a new field needs no other file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from models.fields import options
from models.inputs import PLAN_FIELDS, SEARCH_AXES, ClusterInputs, Training, build_inputs, resolve_plan
from models.plan import Plan
from simulator.cli import main
from simulator.cli.app import option_flags
from simulator.planning.schema import parse_scenario
from simulator.planning.schema_doc import json_schema

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_resolve_fills_dp_schedule_and_global_batch():
    p = resolve_plan(64, Training(global_batch_size=None), tp=8, pp=2, vpp=2, micro_batch_size=2)
    assert (p.dp, p.schedule.name, p.global_batch_size) == (4, "INTERLEAVED", 8)
    with pytest.raises(ValueError, match=r"^dp: the cluster's 64 GPUs are not divisible by tp\*pp\*cp"):
        resolve_plan(64, Training(global_batch_size=8), tp=3)
    with pytest.raises(ValueError, match="plan.tp: must be >= 1, got 0"):
        resolve_plan(8, Training(global_batch_size=8), tp=0)


def test_cli_flags_are_the_declared_fields():
    """Every declared field is an option of every plan command; search takes the axes as lists."""
    flags = {c: set(option_flags(c)) for c in ("estimate", "simulate", "train-time")}
    for cls in (ClusterInputs, Plan):
        for name in options(cls):
            for c, have in flags.items():
                assert options(cls)[name].flag or "--" + name.replace("_", "-") in have, (c, name)
    assert flags["estimate"] == flags["simulate"] == flags["train-time"]
    search = set(option_flags("search", listed=SEARCH_AXES))
    assert {"--tp", "--placement", "--overlap-ep-comm", "--oversubscription", "--failures"} <= search
    assert "--dp" not in search  # the planner fills dp


def test_build_inputs_takes_field_names_or_flag_names():
    a = build_inputs(model="gpt-tiny", gpu="a100", tp=2, micro_batch_size=2, global_batch_size=16, zero_stage=1)
    b = build_inputs(model="gpt-tiny", gpu="a100", tp=2, micro_batch=2, global_batch=16, zero=1)
    assert a.plan == b.plan and a.plan.dp == 4


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_json_schema_validates_every_scenario(path, capsys):
    assert main(["schema", "--json-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["plans"][0].update(micro_batch=2), "micro_batch"),           # unknown field
    (lambda d: d["plans"][0].update(tp="2"), "tp"),                           # mistyped
    (lambda d: d["training"].update(global_batch_size=0), "global_batch_size"),  # out of range
    (lambda d: d["training"].update(dtype="fp4"), "dtype"),                   # not a choice
    (lambda d: d.update(sweep={"zero_stage": [1, 5]}), "zero_stage"),
])
def test_json_schema_and_loader_reject_the_same_mistakes(edit, where):
    data = yaml.safe_load((ROOT / "scenarios" / "small-gpt-1gpu.yaml").read_text())
    data.setdefault("plans", [{}])
    edit(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema(), cls=jsonschema.Draft202012Validator)
    with pytest.raises(ValueError, match=where):
        parse_scenario(data)


DUMMY_PLAN = '    dummy_knob: int = opt(1, "a dummy plan knob", "plan", search=(1, 2), minimum=1, maximum=8)\n'
DUMMY_TRAINING = '    dummy_flag: bool = opt(False, "a dummy training switch", "training")\n'
CHECK = textwrap.dedent("""
    import json, sys
    from models.inputs import PLAN_FIELDS, Training, resolve_plan
    from simulator.cli import main
    from simulator.planning.planner import Constraints, GRID_FIELDS, search
    from simulator.planning.schema import parse_scenario
    from simulator.planning.schema_doc import json_schema
    from simulator.planning.scenario import run_scenario
    from models.hardware import make_cluster
    from models.transformer import get_model
    import ui.state as ui_state
    assert "dummy_knob" in PLAN_FIELDS and "dummy_knob" in GRID_FIELDS and "dummy_flag" in Training.__dataclass_fields__
    p = resolve_plan(8, Training(global_batch_size=8, dummy_flag=True), dummy_knob=2)
    assert p.dummy_knob == 2 and p.dummy_flag is True
    defs = json_schema()["$defs"]
    assert "dummy_knob" in defs["PlanSpec"]["properties"] and "dummy_knob" in defs["SearchSpec"]["properties"]
    assert "dummy_flag" in defs["TrainingSpec"]["properties"]
    scn = parse_scenario({"model": "gpt-tiny", "cluster": {"gpu": "a100", "nodes": 1},
                          "training": {"global_batch_size": 8, "dummy_flag": True},
                          "plans": [{"dummy_knob": 3}], "sweep": {"dummy_knob": [1, 2]}})
    df = run_scenario(scn)
    assert list(df["dummy_knob"]) == [3, 1, 2], list(df["dummy_knob"])
    r = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32),
               Constraints(dummy_knob=(2,)), top=2)
    assert set(r.plans["dummy_knob"]) == {2}
    assert ui_state.DEFAULT_SPEC["dummy_knob"] == 1 and "in_dummy_flag" in ui_state.DEFAULT_INPUTS
    for cmd in ("estimate", "simulate", "train-time", "search"):
        try:
            main([cmd, "--help"])
        except SystemExit:
            pass
    assert main(["estimate", "--model", "gpt-tiny", "--gpu", "a100", "--dummy-knob", "2", "--dummy-flag",
                 "--json"]) == 0
    print("ok")
""")


def test_adding_a_plan_field_touches_one_declaration(tmp_path):
    """docs/CONTRIBUTING.md's steps: a field declared on Plan (one line in models/plan.py) is an
    option of every command, a scenario field (plans, sweep, search, training), a planner axis
    and a dashboard widget, with no other file edited. The cost model's use of the field is the
    second file; its test the third."""
    for d in ("models", "simulator", "ui"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    plan_py = tmp_path / "models" / "plan.py"
    text = plan_py.read_text()
    anchor = "    overlap_ep_comm: bool = opt("
    assert text.count(anchor) == 1
    text = text.replace(anchor, DUMMY_PLAN + DUMMY_TRAINING + anchor)
    plan_py.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-3000:] + r.stderr[-3000:]
    assert "--dummy-knob" in r.stdout and "--dummy-flag" in r.stdout


def test_every_plan_field_has_help_and_a_section():
    for cls in (Plan, Training, ClusterInputs):
        for name, o in options(cls).items():
            assert o.help and o.section in ("plan", "training", "cluster"), name
    assert set(PLAN_FIELDS) <= set(options(Plan))


def test_layout_rules_hold():
    """DESIGN.md's rules, checked on the source: ui/ imports only the public `simulator` API; models/
    never imports simulator/ or ui/; nothing loads this repository's modules by name (import_module)."""
    import ast
    bad = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        top = path.relative_to(ROOT).parts[0]
        if top not in ("models", "simulator", "ui"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                root = name.split(".")[0]
                if top == "ui" and (root == "models" or name.startswith("simulator.")):
                    bad.append(f"{path.relative_to(ROOT)}: imports {name}")
                if top == "models" and root in ("simulator", "ui"):
                    bad.append(f"{path.relative_to(ROOT)}: imports {name}")
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                bad.append(f"{path.relative_to(ROOT)}: import_module")
    assert not bad, bad
