"""`clustersim search` and `run` print rankings that do not oversell (issue 18): identical plans
collapsed and counted, ties within the model's uncertainty, the token budget stated, the
Pareto front over node counts (or a line saying it is one point), and plans that do not fit
with no time, cost or rank but the memory they would need."""

import math

from simulator.cli import main
from simulator.planning.scenario import parse_scenario, run_scenario

LLAMA8 = ["search", "--model", "llama3-8b", "--gpu", "h100", "--nodes", "4", "--global-batch", "256",
          "--backend", "serial", "--top", "5"]


ONE_NODE = ["search", "--model", "llama3-8b", "--gpu", "h100", "--nodes", "1", "--global-batch", "64", "--tp", "2",
            "--backend", "serial", "--top", "5"]


def test_search_collapses_identical_plans_and_marks_ties(capsys):
    """Inside one node every placement gives the same bandwidths: identical plans are one row."""
    assert main(ONE_NODE) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "dp" in line and "│" in line]
    assert len(rows) == 5
    cells = [[c.strip() for c in r.split("│")[1:-1]] for r in rows]
    assert cells[0][0] == "=1" and any(c[3].startswith("+") for c in cells)     # rank, same (collapsed count)
    figures = [tuple(c[4:]) for c in cells]
    assert len(set(zip([c[1] for c in cells], figures))) == 5
    assert "plans with figures identical to a row above collapsed into it" in out
    from simulator.planning.planner import RANKING_UNCERTAINTY
    assert f"=1: within {RANKING_UNCERTAINTY:.1%} of the best time" in out and "docs/dev_set.md" in out
    assert "Chinchilla, 20 tokens per parameter" in out and "1.61e+11 tokens" in out
    assert "on 8 x h100-sxm-80gb (1 node)" in out


def test_try_nodes_title_nodes_column_and_front(capsys):
    assert main(LLAMA8 + ["--try-nodes", "1,2,4"]) == 0
    out = capsys.readouterr().out
    assert "on 1, 2, 4 nodes of 8 x h100-sxm-80gb" in out and "on 32 x" not in out
    assert "│ nodes │" in out.replace("┃", "│")
    assert "pareto front" in out
    if "pareto front: one point" in out:             # the model's costs: say so, and show every node count
        assert "1 node " in out and "2 nodes" in out
    else:
        assert "pareto front (time to train vs cost" in out


def test_try_nodes_front_with_more_than_one_point(capsys):
    """A cluster whose bigger node counts cost more per token (7B, small batch): the front has several points."""
    assert main(["search", "--model", "llama2-7b", "--gpu", "h100", "--nodes", "4", "--global-batch", "64",
                 "--backend", "serial", "--top", "3", "--try-nodes", "1,2,4"]) == 0
    out = capsys.readouterr().out
    front = [line for line in out.splitlines() if line.startswith("  ") and "GPUs" in line]
    if "pareto front (time to train vs cost" in out:
        assert len(front) >= 2
    else:
        assert "pareto front: one point" in out and not front


def test_search_help_keeps_the_extra_name(capsys):
    main(["search", "--help"])
    assert "clustersim[ray]" in capsys.readouterr().out.replace("\n", "").replace("│", "").replace(" ", "")


def test_out_of_memory_rows_have_no_time_cost_or_rank(capsys):
    scn = parse_scenario({"model": "llama3-8b", "cluster": {"gpu": "h100", "nodes": 1},
                          "training": {"global_batch_size": 64},
                          "plans": [{"tp": 1, "zero_stage": 3}, {"tp": 1, "zero_stage": 0, "micro_batch_size": 8}]})
    df = run_scenario(scn)
    oom = df[df["fits"] == False]  # noqa: E712
    assert len(oom) == 1
    row = oom.iloc[0]
    assert df["rank"].isna()[oom.index[0]] and df["tie"].isna()[oom.index[0]]
    for col in ("time_to_train_s", "gpu_hours", "cost_usd", "energy_kwh"):
        assert math.isnan(row[col]), col
    assert row["peak_memory_bytes"] > row["hbm_bytes"]
    fit = df[df["fits"] == True].iloc[0]  # noqa: E712
    assert fit["rank"] == 1 and fit["cost_usd"] > 0


def test_run_table_shows_what_an_oom_plan_needs(capsys, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("model: llama3-8b\ncluster: {gpu: h100, nodes: 1}\ntraining: {global_batch_size: 64}\n"
                 "plans:\n  - {tp: 1, zero_stage: 3}\n  - {tp: 1, zero_stage: 0, micro_batch_size: 8}\n")
    assert main(["run", str(p)]) == 0
    out = capsys.readouterr().out
    oom = next(line for line in out.splitlines() if "needs" in line)
    assert "GiB of 80" in oom and "OOM" in oom and oom.split("│")[1].strip() == "-"
