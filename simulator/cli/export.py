"""CLI command `export`: a plan as the framework's own launch settings (models/export/): Megatron-LM
arguments, a NeMo recipe override, a torchtitan TOML, a DeepSpeed JSON config or a PyTorch FSDP snippet."""

from __future__ import annotations

from pathlib import Path

from simulator.cli.app import Force, app, echo, inputs_from_flags, output_format, output_option, with_plan_options
from simulator.cli.cost import PlanIndex, ScenarioOpt, _scenario_inputs
from simulator.files import check_output_path, input_files, write_output

KIND = "export"


def is_earlier_export(path: Path) -> bool:
    """Whether ``path`` is a file an earlier `clustersim export` wrote (its header names models.export.MARKER;
    a DeepSpeed JSON carries no comment, so replacing one needs --force)."""
    from models.export import MARKER
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace").splitlines()[:3]
    except OSError:
        return False
    return any(line.lstrip("#/ ").startswith(f"{MARKER}:") for line in head)


def write_export(exp, path: Path, inputs, force: bool) -> Path:
    """Write one export to ``path`` (suffix checked against the framework's format; an earlier export is
    replaced, any other existing file only with --force, an input never)."""
    from models.export import SUFFIXES
    output_format(path, SUFFIXES[exp.writer])
    p = Path(path)
    again = p.is_file() and not p.is_symlink() and is_earlier_export(p)
    return write_output(p, exp.text, KIND, inputs, force or again)


def check_export_path(path: Path, framework: str, inputs, force: bool) -> None:
    """The checks of :func:`write_export`, made before any work."""
    from models.export import suffix_for
    output_format(path, suffix_for(framework) or (".sh",))
    p = Path(path)
    check_output_path(p, KIND, inputs, force or (p.is_file() and not p.is_symlink() and is_earlier_export(p)))


def framework_of(flags: dict, scenario: Path | None) -> str:
    """--framework, else the scenario's training.framework; ValueError naming the writers otherwise."""
    from models.export import WRITER_FRAMEWORKS
    fw = flags.get("framework")
    if not fw and scenario is not None:
        from simulator.planning.scenario import load_scenario
        fw = load_scenario(scenario).training.framework
    if not fw:
        raise ValueError(f"framework: give --framework to export for ({', '.join(WRITER_FRAMEWORKS)})")
    return fw


def echo_export(exp, path: Path | None) -> None:
    """The export on stdout (no -o) or a line saying where it went; its notes on stderr."""
    if path is None:
        echo(exp.text, nl=not exp.text.endswith("\n"))
    else:
        echo(f"wrote {path} ({exp.framework}, {exp.writer} format)")
    for note in exp.notes:
        echo(f"note: {note}", err=True)


@app.command("export")
@with_plan_options("export")
def export_cmd(flags: dict, scenario: ScenarioOpt = None, plan_index: PlanIndex = 0,
               output: output_option("by framework: .sh megatron, .yaml nemo, .toml torchtitan, .json deepspeed, "
                                     ".py fsdp; default: stdout") = None,
               force: Force = False) -> None:
    """Write a plan as the framework's own launch settings (--framework): Megatron-LM arguments (.sh), a
    NeMo/Megatron-Bridge recipe override (.yaml), a torchtitan TOML, a DeepSpeed JSON config or a PyTorch
    FSDP snippet (.py). A plan the framework cannot run is refused with the reason."""
    from models.export import export_plan
    fw = framework_of(flags, scenario)
    inputs = input_files(flags["model"], flags.get("profile"), scenario)
    if output is not None:
        check_export_path(output, fw, inputs, force)  # before the work
    if scenario is not None:
        model, cluster, plan, _ = _scenario_inputs(scenario, plan_index)
    else:
        inp = inputs_from_flags(**flags)
        model, cluster, plan = inp.model, inp.cluster, inp.plan
    exp = export_plan(plan, model, cluster, fw)
    if output is not None:
        write_export(exp, output, inputs, force)
    echo_export(exp, output)


def export_search_top(res, model, cluster, framework: str, k: int, output: Path | None, inputs, force: bool) -> None:
    """`search --export-top K`: the K best plans of a search that ``framework``'s settings can express, as its
    launch settings; to ``output`` (K > 1: name-1.ext, name-2.ext, ...) or to stdout. A ranked plan the writer
    refuses is skipped with its reason on stderr; ValueError when none can be written."""
    import dataclasses

    from models.export import export_plan
    from models.fields import options
    from models.plan import Plan
    done, skipped = 0, []
    for rec in res.records:
        if done == k:
            break
        plan = Plan(**{f: rec[f] for f in options(Plan)})
        cl = dataclasses.replace(cluster, num_nodes=int(rec.get("num_nodes", cluster.num_nodes)))
        try:
            exp = export_plan(plan, model, cl, framework)
        except ValueError as e:
            skipped.append(f"{plan.plan_id}: {e}")
            continue
        done += 1
        path = None if output is None else output if k == 1 else output.with_name(f"{output.stem}-{done}{output.suffix}")
        for line in skipped:
            echo(f"note: export skipped {line}", err=True)
        skipped = []
        if path is not None:
            write_export(exp, path, inputs, force)
        echo_export(exp, path)
    if not done:
        raise ValueError(f"export-top: none of the {len(res.records)} ranked plans can be written for {framework}: "
                         + "; ".join(skipped[:3]))
