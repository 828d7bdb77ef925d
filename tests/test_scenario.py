"""Scenario files: schema errors name file, line, field and reason; runs are reproducible; outputs are safe."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from simulator.cli import main
from simulator.planning.scenario import ScenarioError, load_scenario, parse_scenario, run_scenario, write_results
from simulator.planning.schema import PlanSpec, TrainingSpec
from simulator.planning.schema_doc import schema_dict, schema_text

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "scenarios" / "small-gpt-1gpu.yaml"

GOOD = """\
name: tiny
model: gpt-tiny
cluster:
  gpu: a100
  nodes: 1
training:
  global_batch_size: 16
  tokens: 1.0e+9
plans:
  - {tp: 1, micro_batch_size: 2}
  - {tp: 2, sp: true}
sweep:
  pp: [1, 2]
  zero_stage: [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path, text) -> str:
    with pytest.raises(ScenarioError) as e:
        load_scenario(write(tmp_path, text))
    return str(e.value)


def test_good_scenario_rows_and_ranks(tmp_path):
    df = run_scenario(write(tmp_path, GOOD))
    assert len(df) == 2 + 4
    assert list(df["source"]) == ["plans", "plans", "sweep", "sweep", "sweep", "sweep"]
    ranked = df[df["rank"].notna()].sort_values("rank")
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert (ranked["step_time_s"].diff().dropna() >= 0).all()
    assert {"time_to_train_s", "cost_usd", "energy_kwh", "mfu", "peak_memory_bytes", "error"} <= set(df.columns)


def test_malformed_yaml_names_file_and_line(tmp_path):
    msg = error_of(tmp_path, "model: gpt-tiny\ncluster:\n  gpu: a100\n  nodes: [1\ntraining: {}\n")
    assert "s.yaml:" in msg and "not valid YAML" in msg
    line = int(msg.split("s.yaml:")[1].split(":")[0])
    assert line in (4, 5)


def test_unknown_field_gives_line_and_suggestion(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("  - {tp: 2, sp: true}", "  - {tp: 2, sp: true, micro_batch: 4}"))
    assert "s.yaml:11: plans[1].micro_batch: unknown field; did you mean 'micro_batch_size'?" in msg


def test_bad_value_names_field_line_reason(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("  nodes: 1", "  nodes: 0"))
    assert msg.endswith("s.yaml:5: cluster.nodes: must be a positive integer, got 0")
    msg = error_of(tmp_path, GOOD.replace("zero_stage: [0, 1]", "zero_stage: [0, 5]"))
    assert "s.yaml:14: sweep.zero_stage[1]: 5 unknown; choose one of 0, 1, 2, 3" in msg
    msg = error_of(tmp_path, GOOD.replace("global_batch_size: 16", "global_batch_size: lots"))
    assert "s.yaml:7: training.global_batch_size: must be a positive integer, got 'lots'" in msg


def test_missing_sections_are_named(tmp_path):
    text = "model: gpt-tiny\ncluster: {gpu: a100, nodes: 1}\n"
    assert "missing required field 'training'" in error_of(tmp_path, text)
    msg = error_of(tmp_path, "model: gpt-tiny\ncluster: {gpu: a100, nodes: 1}\ntraining: {global_batch_size: 8}\n")
    assert "plans" in msg and "sweep" in msg
    assert "expected a mapping" in error_of(tmp_path, "- 1\n- 2\n")


def test_unknown_model_and_gpu_are_reported_at_their_line(tmp_path):
    with pytest.raises(ScenarioError, match=r"s.yaml:2: model: unknown preset 'gpt-huge'"):
        run_scenario(write(tmp_path, GOOD.replace("model: gpt-tiny", "model: gpt-huge")))
    with pytest.raises(ScenarioError, match=r"s.yaml:4: cluster.gpu: unknown GPU 'a1000'"):
        run_scenario(write(tmp_path, GOOD.replace("gpu: a100", "gpu: a1000")))


def test_invalid_plans_become_error_rows(tmp_path):
    df = run_scenario(write(tmp_path, GOOD.replace("{tp: 2, sp: true}", "{tp: 8}")))
    row = df[(df["source"] == "plans") & (df["index"] == 1)].iloc[0]
    assert "tp=8 does not divide num_heads=4" in row["error"]
    assert pd.isna(row["rank"])


def test_inline_and_preset_override_models(tmp_path):
    inline = {"name": "mini", "num_layers": 2, "hidden": 128, "num_heads": 2, "num_kv_heads": 2,
              "ffn_hidden": 512, "vocab": 1000, "seq_len": 128}
    base = {"cluster": {"gpu": "a100", "nodes": 1}, "training": {"global_batch_size": 8}, "plans": [{}]}
    df = run_scenario(parse_scenario(base | {"model": inline}))
    assert df["error"][0] == "" and df["fits"][0]
    df2 = run_scenario(parse_scenario(base | {"model": {"preset": "gpt-tiny", "num_layers": 8}}))
    df1 = run_scenario(parse_scenario(base | {"model": "gpt-tiny"}))
    assert df2["step_time_s"][0] > df1["step_time_s"][0]   # twice the layers take longer


def test_same_scenario_same_file(tmp_path):
    """Reproducible: two runs of one scenario write byte-identical files (csv and json)."""
    for suffix in (".csv", ".json"):
        a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        assert main(["run", str(SMALL), "-o", str(a), "-q"]) == 0
        assert main(["run", str(SMALL), "-o", str(b), "-q"]) == 0
        assert a.read_bytes() == b.read_bytes()


def test_output_format_by_suffix(tmp_path):
    df = run_scenario(SMALL)
    for suffix, reader in ((".csv", pd.read_csv), (".json", pd.read_json), (".parquet", pd.read_parquet)):
        if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
            continue
        out = write_results(df, tmp_path / f"r{suffix}")
        back = reader(out)
        assert len(back) == len(df) and back["step_time_s"].tolist() == pytest.approx(df["step_time_s"].tolist())
    with pytest.raises(ValueError, match="choose a .csv, .parquet or .json"):
        write_results(df, tmp_path / "r.xlsx")


def test_refuses_to_overwrite_the_scenario(tmp_path, capsys):
    src = write(tmp_path, GOOD, "scn.json")  # a scenario whose name has an output suffix
    before = src.read_bytes()
    assert main(["run", str(src), "-o", str(src), "-q"]) == 2
    assert "is an input of this run" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert main(["run", str(SMALL), "-o", str(tmp_path / "x.yaml"), "-q"]) == 2
    # a model config.json is an input too
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2,
                               "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 128}))
    before = cfg.read_bytes()
    scn = write(tmp_path, GOOD.replace("model: gpt-tiny", "model: config.json"), "m.yaml")
    assert main(["run", str(scn), "-o", str(cfg), "-q"]) == 2
    assert cfg.read_bytes() == before
    assert main(["run", str(scn), "-o", str(tmp_path / "ok.csv"), "-q"]) == 0


def test_cli_run_prints_ranked_table(capsys, tmp_path):
    assert main(["run", str(SMALL), "-o", str(tmp_path / "r.csv")]) == 0
    out = capsys.readouterr().out
    assert "ranked by time" in out and "14 plans" in out and "wrote" in out
    assert "3 listed again" in out   # the three named plans are also sweep points: one row each (issue 18)


def test_cli_error_is_one_line(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace("  nodes: 1", "  nodes: -1"))
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "cluster.nodes" in err[0]


def test_mode_simulate(tmp_path):
    p = write(tmp_path, GOOD)
    df = run_scenario(p, mode="both")
    ok = df[df["error"] == ""]
    assert ok["sim_step_time_s"].notna().all() and (ok["sim_step_time_s"] > 0).all()


def test_search_section_rows(tmp_path):
    text = GOOD.split("plans:")[0] + "search:\n  top: 3\n  backend: serial\n  tp: [1, 2]\n"
    df = run_scenario(write(tmp_path, text))
    assert list(df["source"]) == ["search"] * 3
    # issue 18: plans within the model's uncertainty of the best share rank 1 (tie); the rest rank by position
    from simulator.planning.planner import RANKING_UNCERTAINTY
    within = df["step_time_s"] <= df["step_time_s"].min() * (1 + RANKING_UNCERTAINTY)
    assert list(df["rank"]) == [1 if w else i + 1 for i, w in enumerate(within)]
    assert set(df["tp"]) <= {1, 2}


def test_schema_documents_every_field(capsys):
    text = schema_text()
    for cls in (TrainingSpec, PlanSpec):
        for f in cls.model_fields:
            assert f"  {f} " in text
    assert main(["schema", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["training"]["global_batch_size"]["required"] is True
    assert set(data) == set(schema_dict())


def test_readme_documents_every_field():
    """README.md shows `clustersim schema`'s listing (rendered by docs/render_readme.py) or names the field."""
    import re
    doc = (ROOT / "README.md").read_text()
    for section, fields in schema_dict().items():
        for f in fields:
            assert f"`{f}`" in doc or re.search(rf"^  {re.escape(f)} ", doc, re.M), \
                f"README.md does not document {section}.{f}: run python docs/render_readme.py"


def test_cli_search_json(tmp_path):
    out = tmp_path / "s.json"
    assert main(["search", "--model", "gpt-tiny", "--gpu", "a100", "--nodes", "1", "--global-batch", "32",
                 "--objective", "cost", "--top", "4", "--backend", "serial", "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert set(d) >= {"plans", "plans_evaluated", "elapsed_s"}
    assert len(d["plans"]) == 4 and d["plans_evaluated"] > 100
    costs = [p["cost_usd"] for p in d["plans"]]
    assert costs == sorted(costs)
    assert {"step_time_s", "memory", "exposed_comm_by_kind_s", "tp", "zero_stage"} <= set(d["plans"][0])
