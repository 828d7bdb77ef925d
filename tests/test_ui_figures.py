"""The dashboard's figure builders and helpers, tested without Streamlit running."""

import numpy as np
import pandas as pd
import pytest

from simulator import Plan, estimate, get_model, make_cluster
from ui import figures, sim

GIB = 2**30


@pytest.fixture(scope="module")
def estimates():
    model, cl = get_model("llama2-7b"), make_cluster("h100-sxm-80gb", 2)
    plans = {"P1": Plan(dp=8, tp=2, global_batch_size=256, zero_stage=1),
             "P2": Plan(dp=2, tp=4, pp=2, global_batch_size=256, sp=True, recompute="selective")}
    return {k: estimate(model, cl, p) for k, p in plans.items()}


def test_breakdown_adds_up_to_the_iteration_time(estimates):
    df = figures.breakdown_frame(estimates)
    for label, est in estimates.items():
        assert df[df.plan == label].seconds.sum() == pytest.approx(est.step_time_s, rel=1e-9)
    fig = figures.time_breakdown_figure(df)
    assert fig.layout.barmode == "stack"
    p2_ms = sum(t.y[list(t.x).index("P2")] for t in fig.data)
    assert p2_ms == pytest.approx(estimates["P2"].step_time_s * 1e3, rel=1e-9)


def test_memory_per_stage_matches_the_estimate_and_draws_the_hbm_line(estimates):
    df = figures.memory_frame(estimates)
    p2 = estimates["P2"]
    assert sorted(df[df.plan == "P2"].stage.unique()) == [0, 1]
    for stage, mb in enumerate(p2.memory_by_stage):
        got = df[(df.plan == "P2") & (df.stage == stage)].gib.sum() * GIB
        assert got == pytest.approx(mb.total_bytes, rel=1e-9)
    fig = figures.memory_figure(df, 80 * GIB)
    assert [s.y0 for s in fig.layout.shapes] and all(s.y0 == pytest.approx(80) for s in fig.layout.shapes)


def test_pareto_mask_known_answer():
    assert figures.pareto_mask([1, 2, 3, 4], [4, 1, 2, 0.5]).tolist() == [True, True, False, True]
    assert figures.pareto_mask([1, 1], [2, 2]).tolist().count(True) == 1


def test_pareto_figure_frontier_is_not_dominated():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"time_to_train_s": rng.uniform(1e5, 1e6, 200), "cost_usd": rng.uniform(1e4, 1e5, 200),
                       "plan_id": [f"p{i}" for i in range(200)]})
    fig = figures.pareto_figure(df)
    front = next(t for t in fig.data if t.name == "Pareto frontier")
    xs, ys = np.array(front.x) * 86400, np.array(front.y)
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) < 0)
    for x, y in zip(xs, ys):  # no plan is both faster and cheaper than a frontier point
        assert not ((df.time_to_train_s < x - 1e-6) & (df.cost_usd < y - 1e-6)).any()
    assert fig.data[0].customdata.shape == (200, 1)


def test_clicked_point_maps_back_to_its_row():
    df = pd.DataFrame({"time_to_train_s": [86400.0, 2 * 86400.0, 3 * 86400.0], "cost_usd": [30.0, 20.0, 10.0]})
    fig = figures.pareto_figure(df)
    row = int(fig.data[0].customdata[1][0])
    assert figures.pareto_point_row({"customdata": [row]}, df) == 1
    assert figures.pareto_point_row({"customdata": {"0": 2}}, df) == 2
    assert figures.pareto_point_row({"customdata": 0}, df) == 0
    assert figures.pareto_point_row({"x": 2.0, "y": 20.0}, df) == 1          # no customdata: nearest point
    assert figures.pareto_point_row({}, df) is None


def _synthetic_timeline(ranks: int, stages: int, microbatches: int) -> pd.DataFrame:
    """GPipe-like timeline: every rank runs F then B for each micro-batch, plus a TP collective each."""
    rows = []
    for r in range(ranks):
        stage = r * stages // ranks
        t = stage * 1e-3
        for mb in range(microbatches):
            for op, dur in (("F", 1e-3), ("tp-all_reduce", 2e-4), ("B", 2e-3)):
                rows.append((r, stage, "compute" if len(op) == 1 else "tp", op, mb, t, t + dur))
                t += dur
    return pd.DataFrame(rows, columns=["rank", "stage", "stream", "op", "microbatch", "start_s", "end_s"])


def test_big_timeline_is_aggregated_to_what_a_browser_can_draw():
    tl = _synthetic_timeline(ranks=1024, stages=8, microbatches=64)
    assert len(tl) > 150_000
    d, note = figures.aggregate_timeline(tl, max_bars=2000, max_rows=32)
    assert d["row"].nunique() <= 32 and len(d) <= 2000
    assert "of 1024 GPUs" in note
    assert sorted(d["stage"].unique()) == list(range(8))       # every pipeline stage stays visible
    kept = tl[tl["rank"].isin(d["rank"].unique())]
    assert d["start_s"].min() == pytest.approx(kept["start_s"].min())
    assert (d["start_s"] + d["duration_s"]).max() == pytest.approx(kept["end_s"].max())
    fig, _ = figures.gantt_figure(tl, max_bars=2000, max_rows=32)
    assert sum(len(t.x) for t in fig.data) <= 2000
    names = {t.name for t in fig.data}
    assert "backward" in names and names <= {"forward", "backward", "tp-all_reduce"}


def test_small_timeline_is_drawn_op_by_op():
    tl = _synthetic_timeline(ranks=2, stages=2, microbatches=3)
    fig, note = figures.gantt_figure(tl)
    assert note == "" and sum(len(t.x) for t in fig.data) == len(tl)
    fwd = next(t for t in fig.data if t.name == "forward")
    assert fig.data[0].orientation == "h" and list(fwd.base[:1]) == [0.0]


def test_gantt_of_a_simulated_1024_gpu_plan():
    simulate = pytest.importorskip("simulator.des.simulate").simulate
    model, cl = get_model("llama3-70b"), make_cluster("h100-sxm-80gb", 128)
    res = simulate(model, cl, Plan(dp=16, tp=8, pp=8, global_batch_size=1024))
    fig, _ = figures.gantt_figure(res.timeline)
    assert 0 < sum(len(t.x) for t in fig.data) <= figures.MAX_GANTT_BARS
    busy = sim.stream_busy(res.timeline, res.step_time_s)
    assert busy and all(0 <= x <= 1 for x in busy.values())


def test_busy_time_is_the_union_of_intervals():
    assert sim.busy_time_s([0, 1, 5], [2, 3, 6]) == 4.0
    assert sim.busy_time_s([0, 0.5], [10, 1]) == 10.0
    assert sim.busy_time_s([], []) == 0.0


def test_topology_with_and_without_utilisation():
    g = figures.cluster_graph(num_nodes=4, gpus_per_node=8)
    fig = figures.topology_figure(g)
    gpus = next(t for t in fig.data if t.name == "gpu")
    assert len(gpus.x) == 32
    util = {(u, v): 0.9 if d["kind"] == "nvlink" else 0.1 for u, v, d in g.edges(data=True)}
    fig = figures.topology_figure(g, util)
    names = {t.name for t in fig.data}
    assert "75%-100% busy" in names and "0%-25% busy" in names
    marker = next(t for t in fig.data if t.name == "link utilisation")
    assert max(marker.marker.color) == pytest.approx(0.9)


def test_link_utilisation_maps_stage_streams_onto_links():
    topology = pytest.importorskip("simulator.des.topology")
    cl = make_cluster("h100-sxm-80gb", 2)
    g = topology.build_topology(cl)
    plan = Plan(dp=2, tp=4, pp=2, global_batch_size=16)
    busy = {(0, "tp"): 0.3, (1, "tp"): 0.2, (0, "dp"): 0.1, (0, "pp"): 0.05}
    util = sim.link_utilisation(g, busy, plan, cl.gpus_per_node)
    assert util[("gpu0", "nvsw0")] == pytest.approx(0.3 + 0.1)   # tp and dp (tp*dp = 8) stay in the node
    assert util[("gpu8", "nvsw1")] == pytest.approx(0.2)
    assert util[("gpu0", "nic0")] == pytest.approx(0.05)          # pp crosses nodes
    small = figures.trim_topology(g, max_gpus=8)
    assert sum(1 for _, d in small.nodes(data=True) if d["kind"] == "gpu") == 8
    assert small.graph["hidden_nodes"] == 1


def test_validation_figure_has_identity_line():
    df = pd.DataFrame({"id": ["a", "b"], "measured_iteration_time_s": [1.0, 10.0],
                       "predicted_iteration_time_s": [1.1, 8.0]})
    fig = figures.validation_figure(df)
    ident = next(t for t in fig.data if t.name == "y = x")
    assert list(ident.x) == list(ident.y)
    assert fig.layout.xaxis.type == "log"


def test_zero_components_are_left_out_of_the_legend(estimates):
    fig = figures.time_breakdown_figure(figures.breakdown_frame(estimates))
    names = {t.name for t in fig.data}
    assert "compute" in names and "cp comm" not in names and "ep comm" not in names
    zero = figures.memory_frame(estimates)
    zero.loc[zero["component"] == "other", "gib"] = 0.0
    assert "other" not in {t.name for t in figures.memory_figure(zero, 80 * 2**30).data}


def test_topology_nodes_are_labelled():
    import simulator as cs
    fig = figures.topology_figure(cs.build_topology(make_cluster("h100", 2)))
    labelled = [t for t in fig.data if t.mode == "markers+text"]
    texts = {x for t in labelled for x in t.text}
    assert "GPU 0 (node 0)" in texts and "NVSwitch (node 1)" in texts
    big = figures.topology_figure(figures.trim_topology(cs.build_topology(make_cluster("h100", 32)), 256))
    assert any(t.mode == "markers" and t.name == "gpu" for t in big.data)   # too many to label: hover only


def test_timeline_breakdown_table_adds_up():
    est = estimate(get_model("llama2-7b"), make_cluster("h100", 2), Plan(dp=2, tp=4, pp=2, global_batch_size=256))
    sim_terms = {"compute_s": 4.0, "bubble_s": 0.5, "tp_s": 1.0, "cp_s": 0.0, "ep_s": 0.0, "pp_s": 0.1, "dp_s": 0.0}
    df = figures.breakdown_table(sim_terms, 5.9, est)
    terms = [c for c in df.columns if c not in ("source", "iteration_s")]
    assert df.loc[0, "idle_s"] == pytest.approx(0.3)
    for _, row in df.iterrows():
        assert sum(row[c] for c in terms) == pytest.approx(row["iteration_s"], rel=1e-9)
    assert "cp_s" not in df.columns


def test_markdown_escape_keeps_stars():
    assert figures.markdown_escape("tp*pp*cp must divide 32") == "tp\\*pp\\*cp must divide 32"
    assert figures.nodes_text(1) == "1 node"
