"""Headless tests of the dashboard (streamlit.testing.v1.AppTest): every page, the main widgets,
numbers cross-checked against the public API, bad input shown in the page."""

import importlib
import importlib.util
import json
import pathlib
import time

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from simulator import Plan, estimate, get_model, make_cluster

APP = str(pathlib.Path(__file__).resolve().parents[1] / "ui" / "app.py")
PAGES = ("views/plans.py", "views/timeline.py", "views/network.py", "views/search.py", "views/scenario.py",
         "views/validation.py")


def metrics(at) -> dict:
    """{(plan index, label): value} of the per-plan metrics on the plans page."""
    out, i, seen = {}, 0, set()
    for m in at.metric:
        if m.label in seen:
            i, seen = i + 1, set()
        seen.add(m.label)
        out[(i, m.label)] = m.value
    return out


@pytest.fixture
def at():
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    return app


def test_default_page_shows_two_plans_with_numbers_from_estimate(at):
    got = metrics(at)
    assert {k[0] for k in got} == {0, 1}
    assert not at.error
    est = estimate(get_model("llama2-7b"), make_cluster("h100-sxm-80gb", 2),
                   Plan(dp=8, tp=2, global_batch_size=256, zero_stage=1))
    assert got[(0, "Iteration time")] == f"{est.step_time_s:.3f} s"
    assert got[(0, "MFU")] == f"{est.mfu:.1%}"
    table = at.dataframe[0].value
    assert list(table["plan"]) == ["P1", "P2"] and table["fits"].all()
    assert len(at.get("plotly_chart")) == 2


def test_changing_a_plan_changes_its_numbers_only(at):
    before = metrics(at)
    at.number_input(key="p2_tp").set_value(8).run()
    after = metrics(at)
    assert not at.exception
    assert after[(0, "Iteration time")] == before[(0, "Iteration time")]
    assert after[(1, "Iteration time")] != before[(1, "Iteration time")]
    est = estimate(get_model("llama2-7b"), make_cluster("h100-sxm-80gb", 2),
                   Plan(dp=1, tp=8, pp=2, sp=True, recompute="selective", global_batch_size=256))
    assert after[(1, "Iteration time")] == f"{est.step_time_s:.3f} s"
    at.selectbox(key="p1_zero_stage").select(3).run()
    assert metrics(at)[(0, "Memory")] != before[(0, "Memory")]


def test_cluster_and_training_inputs_change_every_plan(at):
    before = metrics(at)
    at.selectbox(key="in_gpu").select("a100-sxm-80gb").run()
    mid = metrics(at)
    assert all(mid[(i, "Iteration time")] != before[(i, "Iteration time")] for i in (0, 1))
    at.number_input(key="in_tokens_b").set_value(2000.0).run()
    after = metrics(at)
    assert after[(0, "Iteration time")] == mid[(0, "Iteration time")]
    assert after[(0, "Cost")] != mid[(0, "Cost")]
    at.number_input(key="in_price_a100-sxm-80gb").set_value(0.0).run()
    assert metrics(at)[(0, "Cost")] == "$0"


def test_impossible_plan_is_a_message_not_a_traceback(at):
    at.number_input(key="p1_tp").set_value(3).run()
    assert not at.exception
    assert any("tp" in e.value and "3" in e.value for e in at.error)
    at.number_input(key="p1_tp").set_value(2).run()
    at.number_input(key="in_global_batch").set_value(100).run()   # not a multiple of mb*dp = 8
    assert not at.exception
    assert any("global_batch_size" in e.value for e in at.error)


def test_add_and_remove_plans_up_to_five(at):
    for _ in range(3):
        at.button(key="add_plan").click().run()
    assert len(at.session_state.plans) == 5
    assert at.button(key="add_plan").disabled
    assert len(at.dataframe[0].value) == 5
    uid = at.session_state.plans[0]["uid"]
    at.button(key=f"rm_{uid}").click().run()
    assert len(at.session_state.plans) == 4 and not at.exception


def test_uploaded_config_json_and_edited_fields(at, tmp_path):
    at.radio(key="in_source").set_value("config.json").run()
    assert any("upload" in e.value for e in at.error)               # nothing uploaded yet
    cfg = {"num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 16, "intermediate_size": 8192,
           "vocab_size": 32000, "max_position_embeddings": 2048, "hidden_act": "silu"}
    at.file_uploader(key="in_upload").upload("tiny.json", json.dumps(cfg).encode(), "application/json").run()
    assert not at.exception and not at.error
    assert any("B parameters" in c.value for c in at.caption)
    at.toggle(key="in_edit").set_value(True).run()
    before = metrics(at)[(0, "Iteration time")]
    at.number_input(key="in_m_num_layers_tiny").set_value(32).run()
    assert metrics(at)[(0, "Iteration time")] != before
    if importlib.util.find_spec("simulator.planning.scenario"):            # the edited model survives a scenario round trip
        at.switch_page("views/scenario.py").run()
        path = tmp_path / "s.yaml"
        path.write_text(at.code[0].value)
        scenario = importlib.import_module("simulator.planning.scenario")
        model = scenario.build_model(scenario.load_scenario(path))
        assert (model.num_layers, model.hidden, model.seq_len) == (32, 2048, 2048)
        at.switch_page("views/plans.py").run()
    at.file_uploader(key="in_upload").set_value(("bad.json", b"{not json", "application/json")).run()
    assert not at.exception and any("not valid JSON" in e.value for e in at.error)


def test_widget_change_rerenders_fast(at):
    at.number_input(key="p2_tp").set_value(8).run()
    t0 = time.perf_counter()
    at.number_input(key="p2_tp").set_value(4).run()                # cached: seen before
    cached_s = time.perf_counter() - t0
    assert cached_s < 1.5, cached_s                                 # AppTest adds its own overhead


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(at, page):
    at.switch_page(page).run()
    assert not at.exception
    assert at.title[0].value


def test_timeline_page_draws_the_simulated_iteration(at):
    pytest.importorskip("simulator.des.simulate")
    at.switch_page("views/timeline.py").run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Simulated iteration" in labels and at.get("plotly_chart")
    first = at.selectbox(key="tl_plan").value
    at.selectbox(key="tl_plan").select(at.selectbox(key="tl_plan").options[1]).run()
    assert at.selectbox(key="tl_plan").value != first and not at.exception


def test_timeline_of_a_1024_gpu_plan_renders(at):
    pytest.importorskip("simulator.des.simulate")
    at.selectbox(key="in_preset").select("llama3-70b").run()
    at.number_input(key="in_nodes").set_value(128).run()
    at.number_input(key="in_global_batch").set_value(1024).run()
    at.number_input(key="p1_tp").set_value(8).run()
    at.number_input(key="p1_pp").set_value(8).run()
    # a valid plan; it may not fit in memory (issue 18: then the page says what it would need)
    assert not at.exception and all(e.value.startswith("Out of memory: needs") for e in at.error)
    t0 = time.perf_counter()
    at.switch_page("views/timeline.py").run()
    assert time.perf_counter() - t0 < 20
    assert not at.exception and at.get("plotly_chart")
    assert any(m.label == "Operations simulated" for m in at.metric)


def test_network_page_colours_links_by_utilisation(at):
    pytest.importorskip("simulator.des.simulate")
    at.switch_page("views/network.py").run()
    assert not at.exception
    assert any("Link colour" in c.value for c in at.caption)
    busy = at.dataframe[0].value
    assert ((busy["busy"] >= 0) & (busy["busy"] <= 1)).all()


def test_search_page_pins_a_plan(at):
    pytest.importorskip("simulator.planning.planner")
    at.switch_page("views/search.py").run()
    assert not at.exception and at.get("plotly_chart")
    table = at.dataframe[0].value
    assert len(table) > 1 and table["cost_usd"].gt(0).all()
    at.button(key="s_pin").click().run()
    assert not at.exception
    assert len(at.session_state.plans) == 3
    assert at.success and "Pinned" in at.success[0].value
    at.switch_page("views/plans.py").run()
    assert {k[0] for k in metrics(at)} == {0, 1, 2} and not at.error


def test_scenario_round_trip_and_bad_yaml(at):
    pytest.importorskip("simulator.planning.scenario")
    at.switch_page("views/scenario.py").run()
    doc = yaml.safe_load(at.code[0].value)
    assert doc["model"] == "llama2-7b" and len(doc["plans"]) == 2
    doc["cluster"]["nodes"] = 4
    doc["plans"].append({"name": "P3", "tp": 8, "pp": 4})
    at.file_uploader(key="sc_upload").upload("s.yaml", yaml.safe_dump(doc).encode(), "application/x-yaml").run()
    at.button(key="sc_load").click().run()
    assert not at.exception and at.success
    assert at.session_state.in_nodes == 4 and len(at.session_state.plans) == 3
    at.file_uploader(key="sc_upload").set_value(("bad.yaml", b"plans: [tp: 2\n", "application/x-yaml")).run()
    at.button(key="sc_load").click().run()
    assert not at.exception and any(e.value.startswith("bad.yaml:") and "not valid YAML" in e.value for e in at.error)
    bad = yaml.safe_dump({**doc, "plans": [{"tp": 2, "warp": 9}]}).encode()
    at.file_uploader(key="sc_upload").set_value(("bad2.yaml", bad, "application/x-yaml")).run()
    at.button(key="sc_load").click().run()
    assert not at.exception and any("warp" in e.value for e in at.error)


def test_example_scenario_loads_with_the_numbers_of_run_scenario(at):
    scenario = pytest.importorskip("simulator.planning.scenario")
    path = pathlib.Path(APP).parents[1] / "scenarios" / "llama3-70b-h100.yaml"
    if not path.exists():
        pytest.skip("scenarios/llama3-70b-h100.yaml not in this checkout")
    at.switch_page("views/scenario.py").run()
    at.selectbox(key="sc_example").select(path.name).run()
    at.button(key="sc_load").click().run()
    assert not at.exception and not at.error
    at.switch_page("views/plans.py").run()
    assert not at.error
    rows = scenario.run_scenario(path)
    got = metrics(at)
    for i, name in enumerate(p.name for p in scenario.load_scenario(path).plans):
        row = rows[rows["name"] == name].iloc[0]
        assert got[(i, "Iteration time")] == f"{row['step_time_s']:.3f} s"


def test_validation_page(at, dev_runs_path):
    at.switch_page("views/validation.py").run()
    assert not at.exception
    got = {m.label: m.value for m in at.metric}
    assert int(got["Runs predicted"]) > 0
    assert at.get("plotly_chart")


def test_validation_page_without_the_runs_file(at, tmp_path):
    at.session_state["val_path"] = str(tmp_path / "missing.yaml")
    at.switch_page("views/validation.py").run()
    assert not at.exception
    assert any("not here" in i.value for i in at.info)


def test_validation_page_local_runs_upload(at):
    at.switch_page("views/validation.py").run()
    doc = {"summary": {"median_abs_step_time_error": 0.1, "max_abs_peak_memory_error": 0.05}, "records": [
        {"plan": "single", "measured_step_time_s": 0.5, "predicted_step_time_s": 0.55, "step_time_error": 0.1},
        {"plan": "ddp", "measured_step_time_s": 0.7, "predicted_step_time_s": 0.6, "step_time_error": -0.14}]}
    charts = len(at.get("plotly_chart"))
    at.file_uploader(key="val_upload").upload("v.json", json.dumps(doc).encode(), "application/json").run()
    assert not at.exception
    assert "10.0%" in [m.value for m in at.metric] and len(at.get("plotly_chart")) >= max(charts, 1)
    at.file_uploader(key="val_upload").set_value(("v.json", b"{", "application/json")).run()
    assert not at.exception and any("not valid JSON" in e.value for e in at.error)


def test_cli_ui_command_runs_streamlit_on_the_app(capsys):
    from simulator.cli import main
    assert main(["ui", "--dry-run", "--port", "8765"]) in (0, None)
    out = capsys.readouterr().out
    assert "streamlit run" in out and out.strip().split()[4].endswith("ui/app.py") and "8765" in out
    assert main(["ui", "--port", "0"]) == 2


# ----------------------------------------------------------------------------------- issue 18


def _oom(at):
    """P1 out of memory: no ZeRO, 16 sequences per micro-batch of Llama-2 7B on one H100 each."""
    at.selectbox(key="p1_zero_stage").select(0).run()
    at.number_input(key="p1_micro_batch_size").set_value(16).run()
    assert not at.exception


def test_oom_plan_gets_no_time_cost_or_arrow_and_says_what_it_needs(at):
    from streamlit.proto.Metric_pb2 import Metric
    _oom(at)
    got = metrics(at)
    assert got[(0, "Time to train")] == "n/a" and got[(0, "Cost")] == "n/a"
    assert got[(1, "Cost")].startswith("$") and got[(1, "Cost")] != "n/a"
    assert any("Out of memory: needs" in e.value and "GiB of 80" in e.value for e in at.error)
    mem = [m for m in at.metric if m.label == "Memory"]
    assert mem[0].proto.delta == "OOM" and all(m.proto.direction == Metric.MetricDirection.NONE for m in mem)
    table = at.dataframe[0].value
    row = table[table["plan"] == "P1"].iloc[0]
    assert not row["fits"] and row["memory"].startswith("needs ")
    for col in ("time_to_train_days", "cost_usd", "gpu_hours", "energy_mwh"):
        assert row[col] != row[col], col            # NaN: no figures for a plan that cannot run


def test_results_table_shows_time_and_cost_first(at):
    cols = list(at.dataframe[0].value.columns)
    assert cols[:5] == ["plan", "fits", "memory", "time_to_train_days", "cost_usd"]
    assert cols[-1] == "plan_id"


def test_error_text_keeps_its_characters(at):
    at.number_input(key="p1_tp").set_value(3).run()
    texts = [e.value for e in at.error]
    # Streamlit renders st.error as markdown: a bare "*" would become emphasis ("tp*pp*cp" -> "tpppcp")
    assert all("*" not in t.replace("\\*", "") for t in texts if "tp" in t)


def test_one_node_is_singular(at):
    at.number_input(key="in_nodes").set_value(1).run()
    assert not at.exception
    assert any("(1 node)" in c.value for c in at.caption) and not any("1 nodes" in c.value for c in at.caption)


def test_pinned_plans_live_in_the_url(at):
    url = at.query_params["plans"]
    assert url == "tp:2,zero_stage:1~tp:4,pp:2,sp:true,recompute:selective" or "tp:2" in url
    at.number_input(key="p1_tp").set_value(8).run()
    assert at.query_params["plans"].startswith("tp:8")
    # a reload or a shared link: a new session with the URL's plans
    fresh = AppTest.from_file(APP, default_timeout=60)
    fresh.query_params["plans"] = "tp:8,pp:2~tp:1,zero_stage:3~default"
    fresh.run()
    assert not fresh.exception
    plans = fresh.session_state.plans
    assert [(p["tp"], p["pp"], p["zero_stage"]) for p in plans][:2] == [(8, 2, plans[0]["zero_stage"]), (1, 1, 3)]
    assert len(plans) == 3
    assert fresh.number_input(key=f"p{plans[0]['uid']}_tp").value == 8


def test_timeline_table_adds_up_and_explains_the_bubble(at):
    pytest.importorskip("simulator.des.simulate")
    at.switch_page("views/timeline.py").run()
    at.selectbox(key="tl_plan").select(at.selectbox(key="tl_plan").options[1]).run()   # P2: pp 2
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["source"]) == ["simulated", "analytical"]
    terms = [c for c in table.columns if c not in ("source", "iteration_s")]
    for _, row in table.iterrows():
        assert sum(row[c] for c in terms) == pytest.approx(row["iteration_s"], rel=1e-9)
    assert "idle_s" in terms and "bubble_s" in terms
    assert "cp_s" not in terms and "ep_s" not in terms        # zero in both rows: left out
    assert any("bubble" in c.value and "Narayanan" in c.value for c in at.caption)


def test_cli_ui_command_hides_the_deploy_button(capsys):
    from simulator.cli import main
    assert main(["ui", "--dry-run"]) in (0, None)
    assert "--client.toolbarMode minimal" in capsys.readouterr().out
