"""CLI commands `run` (scenario files), `search` (the planner) and `schema` (scenario fields)."""


import json
import time
from pathlib import Path
from typing import Annotated

from models.inputs import SEARCH_AXES
from simulator.cli.app import Argument, Force, Option, app, echo, output_format, output_option, with_plan_options
from simulator.files import check_output_path, input_files, output_json, strict_json, write_output

# rows of the summary table printed after `run`
SUMMARY_ROWS = 10
# show a progress bar when a scenario has at least this many plans (or a search)
PROGRESS_MIN_PLANS = 50

Objective = Annotated[str, Option("--objective", help="time | time-to-train | cost | energy")]
Top = Annotated[int, Option("--top", help="how many of the best plans to report")]
Backend = Annotated[str, Option("--backend", help="auto | serial | process | ray (ray: pip install "
                                                 "'clustersim[ray]')")]


def _ints(text: str | None, flag: str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _strs(text: str | None) -> tuple | None:
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


def _bools(text: str | None, flag: str) -> tuple | None:
    if text is None:
        return None
    table = {"true": True, "false": False, "1": True, "0": False}
    try:
        return tuple(table[x.strip().lower()] for x in text.split(","))
    except KeyError:
        raise ValueError(f"{flag}: expected comma-separated true/false, got {text!r}") from None


def _summary_table(df, title: str):
    """The ranked plans (ties as "=1"), then up to SUMMARY_ROWS plans that do not fit: no time to train, no
    cost, no rank, but the memory they would need."""
    from rich.table import Table
    table = Table(title=title, show_lines=False)
    for col in ("rank", "plan", "step s", "tokens/s", "MFU", "mem GiB", "train days", "cost $", "energy MWh"):
        table.add_column(col, justify="left" if col == "plan" else "right", overflow="fold" if col == "plan" else None)
    ranked = df[df["rank"].notna()].sort_values(["rank", "step_time_s"], kind="stable").head(SUMMARY_ROWS)
    for r in ranked.itertuples():
        tie = bool(r.tie) if "tie" in df.columns and r.tie is not None and r.tie == r.tie else False
        table.add_row(_rank_label(r.rank, tie), _label(r), f"{r.step_time_s:.4g}", f"{r.tokens_per_s:,.0f}",
                      f"{r.mfu:.1%}", f"{r.peak_memory_bytes / 2**30:.1f}", f"{r.time_to_train_s / 86400:.3g}",
                      _usd(r.cost_usd), f"{r.energy_kwh / 1000:.3g}")
    oom = df[(df["error"] == "") & (df["fits"] == False)].head(SUMMARY_ROWS)  # noqa: E712
    for r in oom.itertuples():
        table.add_row("-", _label(r), "", "", "", f"needs {needs_text(r.peak_memory_bytes, r.hbm_bytes)}", "OOM",
                      "", "")
    notes = []
    if "tie" in df.columns and (df["tie"] == True).any():  # noqa: E712
        from simulator.planning.planner import RANKING_UNCERTAINTY
        notes.append(f"=1: within {RANKING_UNCERTAINTY:.1%} of the best, the model's median |error| on the dev set's "
                     "high-reliability runs (docs/dev_set.md): a tie, not a ranking")
    if len(oom):
        notes.append("-: out of memory: no time to train, cost or rank; the memory it would need")
    table.caption = "\n".join(notes) or None
    return table


def needs_text(peak_memory_bytes: float, hbm_bytes: float) -> str:
    """What a plan that does not fit would need: "95.2 GiB of 80".

    >>> needs_text(95.2 * 2**30, 80 * 2**30)
    '95.2 GiB of 80'
    """
    return f"{peak_memory_bytes / 2**30:.1f} GiB of {hbm_bytes / 2**30:.0f}"


def _label(r) -> str:
    return f"{r.name}: {r.plan_id}" if getattr(r, "name", "") else r.plan_id


@app.command("run")
def run_cmd(file: Annotated[Path, Argument(help="scenario YAML (see `clustersim schema`)")],
            output: Annotated[Path | None, Option("-o", "--output",
                                                           help="results file: .csv, .parquet or .json")] = None,
            mode: Annotated[str | None, Option("--mode", help="override the file's mode: "
                                                        "estimate | simulate | both")] = None,
            quiet: Annotated[bool, Option("--quiet", "-q", help="no table, no progress bar")] = False,
            json_out: Annotated[bool, Option("--json", help="print the rows as JSON on stdout instead of "
                                                    "the table")] = False,
            force: Force = False,
            ) -> None:
    """Run every plan of a scenario file; write one row per plan and print a ranked summary."""
    from rich.console import Console

    from simulator.planning.scenario import check_output, input_paths, load_scenario, plan_rows, run_scenario, write_results
    scn = load_scenario(file)
    if output is not None:  # check the output name before the work
        check_output(output, input_paths(scn))
        check_output_path(output, "results", input_paths(scn), force)
    n = len(plan_rows(scn))  # run_scenario bounds the work (simulator.planning.bounds) before any of it
    err = Console(stderr=True)
    t0 = time.perf_counter()
    if quiet or json_out or (n < PROGRESS_MIN_PLANS and scn.search is None):
        df = run_scenario(scn, mode=mode)
    else:
        from rich.progress import Progress
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"{scn.name}", total=n + (1 if scn.search else 0))
            df = run_scenario(scn, mode=mode, progress=lambda done, total: bar.update(task, completed=done))
    elapsed = time.perf_counter() - t0
    if output is not None:
        write_results(df, output, input_paths(scn), force=force)
    if json_out:
        echo(strict_json(df.to_dict(orient="records")))
        return
    if not quiet:
        Console(width=160).print(_summary_table(df, f"{scn.name}: {len(df)} plans, ranked by {scn.objective}"))
        bad = int((df["error"] != "").sum())
        oom = int(((df["error"] == "") & (df["fits"] == False)).sum())  # noqa: E712
        same = int(df["same_plan_rows"].sum()) if "same_plan_rows" in df else 0
        echo(f"{len(df)} plans in {elapsed:.2f} s; {bad} invalid, {oom} out of memory"
                   + (f"; {same} listed again (a named plan that is also a sweep point...) kept as one row"
                      if same else "") + (f"; wrote {output}" if output is not None else ""))

@app.command("search")
@with_plan_options("search", listed=SEARCH_AXES)
def search_cmd(flags: dict, objective: Objective = "time", top: Top = 10, backend: Backend = "auto",
               workers: Annotated[int | None, Option("--workers", help="processes")] = None,
               try_nodes: Annotated[str | None, Option("--try-nodes", help="node counts to compare "
                                                                "(time-vs-cost Pareto front)")] = None,
               max_memory_fraction: Annotated[float, Option("--max-memory-fraction", help="a plan fits "
                                                                  "when its peak memory <= this fraction of "
                                                                  "HBM")] = 1.0,
               simulate_top: Annotated[int, Option("--simulate-top", help="re-rank the best K with the "
                                                         "simulator")] = 0,
               json_out: Annotated[bool, Option("--json", help="print the result as JSON on stdout "
                                                        "instead of the table (-o FILE writes it)")] = False,
               export_top: Annotated[int, Option("--export-top", help="write the best K plans as --framework's "
                                                       "launch settings (clustersim export); -o then names that "
                                                       "file")] = 0,
               output: output_option(".json, or .csv: the ranked plans") = None, force: Force = False) -> None:
    """Search every valid plan, drop those that do not fit, rank by the objective, explain the winner.
    Plan options take comma-separated lists of the values to try (e.g. --tp 1,2,4,8)."""
    from models.inputs import ClusterInputs, Training, split_inputs
    from models.transformer import resolve_model
    from simulator.planning.planner import Constraints, search
    cl_kw, tr_kw, _ = split_inputs({k: v for k, v in flags.items() if k not in SEARCH_AXES and k != "model"})
    training = Training(**tr_kw)
    if training.global_batch_size is None:
        raise ValueError("global-batch: required for search (sequences per iteration)")
    _check_range("top", top, 1, 10_000)
    _check_range("simulate-top", simulate_top, 0, 1_000)
    if workers is not None:
        _check_range("workers", workers, 1, 1024)
    inputs = input_files(flags["model"])
    export_to, output = _export_target(export_top, flags, output, inputs, force)
    targets = [(output, "output")] if output is not None else []
    for p, flag in targets:
        output_format(p, (".json",) if flag == "json" else (".json", ".csv"), flag)
        check_output_path(p, "search", inputs, force, flag)  # before the work
    m = resolve_model(flags["model"], training.seq_len)
    cl = ClusterInputs(**{k: v for k, v in cl_kw.items() if v is not None}).build(training.price_per_gpu_hour)
    cons = Constraints(**{a: _values(a, flags[a]) for a in SEARCH_AXES}, num_nodes=_ints(try_nodes, "try-nodes"),
                       max_memory_fraction=max_memory_fraction)
    try:  # search bounds its own work (simulator.planning.bounds)
        res = search(m, cl, training, cons, objective=objective, top=top, backend=backend, workers=workers,
                     simulate_top=simulate_top)
    except ValueError as e:
        raise ValueError(_no_valid_plan(str(e))) from None
    if json_out:
        echo(strict_json(res.to_json()))
    else:
        _print_search(res, m, cl)
    for p, flag in targets:
        if p.suffix.lower() == ".csv":
            write_output(p, lambda t: res.plans.to_csv(t, index=False, lineterminator="\n"), "search", inputs,
                         force, flag)
        else:
            write_output(p, output_json(res.to_json(), "search"), "search", inputs, force, flag)
        if not json_out:
            echo(f"wrote {p}")
    if export_top:
        from simulator.cli.export import export_search_top
        export_search_top(res, m, cl, flags["framework"], export_top, export_to, inputs, force)


def _export_target(k: int, flags: dict, output, inputs, force: bool):
    """(export file, search output) for --export-top K: -o names the export, checked before the work."""
    if not k:
        return None, output
    _check_range("export-top", k, 0, 100)
    if not flags.get("framework"):
        raise ValueError("export-top: give --framework, the framework whose launch settings to write")
    if output is not None:
        from simulator.cli.export import check_export_path
        check_export_path(output, flags["framework"], inputs, force)
    return output, None


def _check_range(flag: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{flag}: must be in [{lo}, {hi:,}], got {value}")


def _no_valid_plan(msg: str) -> str:
    """The planner's message, when no plan at all is valid, said as such."""
    if msg.startswith("search: none of the 0 valid plans"):
        return ("search: no valid plan: every combination of the allowed values breaks a rule (batch divisibility, "
                "schedule, layers per stage, sequence parallelism, experts); allow other values")
    return msg


def _values(name: str, text: str | None) -> tuple | None:
    """A comma-separated list of values for one search axis, typed by its declaration."""
    from models.fields import field_type, option
    from models.plan import Plan
    if text is None:
        return None
    flag = option(Plan, name).flag.lstrip("-")
    t = field_type(Plan, name)
    if t is int:
        return _ints(text, flag)
    if t is bool:
        return _bools(text, flag)
    return _strs(text)


@app.command("schema")
def schema_cmd(json_out: Annotated[bool, Option("--json", help="print the fields as JSON")] = False,
               json_schema: Annotated[bool, Option("--json-schema", help="print the scenario file's JSON Schema "
                                                         "(draft 2020-12) for editors and validators")] = False) -> None:
    """Every scenario-file field: type, default and meaning (--json-schema: the JSON Schema)."""
    from simulator.planning.schema_doc import json_schema as scenario_json_schema
    from simulator.planning.schema_doc import schema_dict, schema_text
    if json_schema:
        echo(json.dumps(scenario_json_schema(), indent=2))
    else:
        echo(json.dumps(schema_dict(), indent=2, default=str) if json_out else schema_text())


def _usd(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _json_default(o):
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _rank_label(rank, tie) -> str:
    return f"={int(rank)}" if tie else str(int(rank))


def _search_title(res, model, cluster) -> str:
    nodes = res.node_counts or (cluster.num_nodes,)
    per = cluster.gpus_per_node
    if len(nodes) > 1:
        where = f"{', '.join(str(n) for n in nodes)} nodes of {per} x {cluster.gpu.name}"
    else:
        where = f"{nodes[0] * per} x {cluster.gpu.name} ({_nodes(nodes[0])})"
    return f"{model.name} on {where}: best plans by {res.objective}"


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


def _print_search(res, model, cluster) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console(width=170)
    t = Table(title=_search_title(res, model, cluster))
    for col in ("rank", "plan", "nodes", "same", "step s", "MFU", "mem GiB", "train days", "cost $", "energy MWh"):
        t.add_column(col, justify="left" if col == "plan" else "right")
    for r in res.plans.itertuples():
        t.add_row(_rank_label(r.rank, r.tie), r.plan_id, str(r.num_nodes), f"+{r.collapsed}" if r.collapsed else "",
                  f"{r.step_time_s:.4g}", f"{r.mfu:.1%}", f"{r.peak_memory_bytes / 2**30:.1f}",
                  f"{r.time_to_train_s / 86400:.3g}", _usd(r.cost_usd), f"{r.energy_kwh / 1000:.3g}")
    con.print(t)
    for line in search_notes(res):
        echo(line)
    echo(f"why: {res.why}")
    for line in pareto_lines(res):
        echo(line)
    for note in res.notes:
        echo(f"note: {note}")
    echo(f"{res.plans_evaluated:,} valid plans evaluated ({res.grid_points:,} grid points, "
               f"{res.plans_fit:,} fit) in {res.elapsed_s:.2f} s")


def search_notes(res) -> list[str]:
    """What the table's columns mean: the token budget, ties, collapsed plans."""
    out = [f"train days, cost and energy are for {res.tokens:.3g} tokens: {res.tokens_rule}"]
    if res.plans["tie"].any():
        out.append(f"=1: within {res.uncertainty:.1%} of the best {res.objective}, the model's median |error| on "
                   "the dev set's high-reliability runs (docs/dev_set.md): a tie, not a ranking")
    if res.plans_collapsed:
        out.append(f"{res.plans_collapsed} plans with figures identical to a row above collapsed into it (column "
                   "'same'; --json lists their ids)")
    return out


def pareto_lines(res) -> list[str]:
    """The time-to-train vs cost front when several node counts were searched; says so when it is one point."""
    by = res.by_nodes
    if len(by) < 2:
        return []
    if len(res.pareto) > 1:
        out = ["pareto front (time to train vs cost; each faster point costs more):"]
        out += [f"  {_nodes(r.num_nodes):>9} {r.num_gpus:>6} GPUs  {r.time_to_train_s / 86400:8.3g} days  "
                f"${_usd(r.cost_usd)}  {r.plan_id}" for r in res.pareto.itertuples()]
        off = by[~by["on_front"]]
        if len(off):
            out.append("  off the front (slower and no cheaper): " + ", ".join(
                f"{_nodes(r.num_nodes)} {r.time_to_train_s / 86400:.3g} days ${_usd(r.cost_usd)}"
                for r in off.itertuples()))
        return out
    best = res.pareto.iloc[0]
    others = by[by["num_nodes"] != best["num_nodes"]]
    return [f"pareto front: one point: {_nodes(int(best['num_nodes']))} is both the fastest and the cheapest "
            f"({best['time_to_train_s'] / 86400:.3g} days, ${_usd(best['cost_usd'])}); the others: " + ", ".join(
                f"{_nodes(r.num_nodes)} {r.time_to_train_s / 86400:.3g} days ${_usd(r.cost_usd)}"
                for r in others.itertuples())]
