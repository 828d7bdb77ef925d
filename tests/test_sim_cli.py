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
    assert code == 2 and len(err) == 1 and "straggler-slowdown" in err[0]


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


def _trace_events(tmp_path, extra=()):
    trace = tmp_path / "trace.json"
    assert main(EXAMPLE + list(extra) + ["--trace", str(trace)]) == 0
    return json.loads(trace.read_text())


def test_trace_names_every_process_once_and_keeps_the_title(tmp_path):
    tr = _trace_events(tmp_path)
    names = [(e["pid"], e["args"]["name"]) for e in tr["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"]
    pids = [p for p, _ in names]
    assert len(pids) == len(set(pids)) == 2                      # pp=2: one GPU per stage, each named once
    assert dict(names)[0].startswith("GPU 0: pipeline stage 0")   # process 0's name is not overwritten by the title
    assert tr["otherData"]["title"].startswith("clustersim dp2-tp2-pp2")


def test_trace_has_no_empty_tracks(tmp_path):
    events = _trace_events(tmp_path)["traceEvents"]
    named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    used = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X"}
    assert named == used                                          # no cp/ep threads on a tp/pp/dp plan
    assert not any(e["args"]["name"] in ("cp", "ep") for e in events if e["name"] == "thread_name")


def test_trace_flow_arrows_join_each_pipeline_send_to_its_receiver(tmp_path):
    events = _trace_events(tmp_path)["traceEvents"]
    sends = [e for e in events if e["ph"] == "X" and e["name"].startswith("pp-send")]
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert sends and len(starts) == len(ends) == len(sends) and set(starts) == set(ends)
    for i, s in starts.items():
        f = ends[i]
        assert s["pid"] != f["pid"] and f["ts"] >= s["ts"] and f["bp"] == "e"
        # the arrow starts inside a send slice and ends at the start of a compute slice of the same micro-batch
        snd = next(e for e in sends if e["pid"] == s["pid"] and e["ts"] == s["ts"])
        rcv = next(e for e in events if e["ph"] == "X" and e["pid"] == f["pid"] and e["ts"] == f["ts"] and e["tid"] == f["tid"])
        assert rcv["cat"] == "compute" and rcv["args"]["microbatch"] == snd["args"]["microbatch"]
        assert rcv["name"].split()[0] == snd["name"].split()[0][-1]      # pp-send-F feeds F, pp-send-B feeds B


def test_trace_memory_counter_track_per_gpu():
    from models.hardware import make_cluster
    from models.inputs import Training, resolve_plan
    from models.transformer import get_model
    from simulator.des.simulate import simulate
    from simulator.des.trace import chrome_trace
    res = simulate(get_model("llama2-7b"), make_cluster("h100-sxm-80gb", 1),
                   resolve_plan(8, Training(global_batch_size=16), tp=2, pp=2, dp=2))
    tr = json.loads(json.dumps(chrome_trace(res.timeline, "t", memory=res.memory_timeline)))
    counters = [e for e in tr["traceEvents"] if e["ph"] == "C"]
    assert {e["pid"] for e in counters} == set(res.timeline["rank"])
    assert len(counters) == len(res.memory_timeline)
    peak = max(e["args"]["allocated_gib"] for e in counters)
    assert peak * 2**30 == res.memory_timeline["allocated_bytes"].max()
    assert all(e["name"] == "memory" and e["ts"] >= 0 for e in counters)
