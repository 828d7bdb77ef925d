"""`clustersim simulate` through simulator.cli.main: output, JSON, trace file, one-line errors."""

import json

from simulator.cli import main

EXAMPLE = ["simulate", "--model", "llama2-7b", "--gpu", "h100-sxm-80gb", "--nodes", "1", "--tp", "2", "--pp", "2",
           "--dp", "2", "--global-batch", "16"]


def test_report_and_trace(tmp_path, capsys):
    trace = tmp_path / "out" / "trace.json"
    assert main(EXAMPLE + ["--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "simulated" in out and "analytical" in out and "pipeline bubble" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" and e["name"].startswith("F") for e in events)


def test_json_keys(capsys):
    assert main(EXAMPLE + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"step_time_s", "analytical_step_time_s", "mfu", "memory", "simulated"} <= set(d)


def test_invalid_plan_one_line_error(capsys):
    code = main(["simulate", "--model", "llama3-70b", "--gpu", "h100-sxm-80gb", "--nodes", "1", "--tp", "3",
                 "--dp", "1", "--pp", "1", "--gpus-per-node", "3"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: tp") and "Traceback" not in err


def test_invalid_straggler_one_line_error(capsys):
    code = main(EXAMPLE + ["--straggler-rank", "2", "--straggler-slowdown", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "straggler_slowdown" in err[0]


def test_invalid_topology_one_line_error(capsys):
    code = main(EXAMPLE + ["--oversubscription", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "oversubscription" in err[0]


def test_oversubscription_slows_cross_node_traffic(capsys):
    base = ["simulate", "--model", "llama3-8b", "--gpu", "h100-sxm-80gb", "--nodes", "4", "--tp", "8", "--pp", "2",
            "--dp", "2", "--global-batch", "32", "--json"]
    assert main(base) == 0
    fast = json.loads(capsys.readouterr().out)
    assert main(base + ["--oversubscription", "16"]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert slow["simulated"]["exposed_comm_by_kind_s"]["pp"] > 4 * fast["simulated"]["exposed_comm_by_kind_s"]["pp"]
