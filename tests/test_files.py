"""simulator/files.py: outputs never replace an input or a foreign file, replace an earlier
output of their kind, and an interrupted write leaves the old file whole; strict JSON."""

import json
import math
import os

import pytest

from simulator.cli import main
from simulator.files import is_output_of, output_json, strict_json, write_output

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SMALL = ROOT / "scenarios" / "small-gpt-1gpu.yaml"


def test_input_by_hard_link_or_symlink_is_refused(tmp_path):
    src = tmp_path / "s.yaml"
    src.write_text("model: gpt-tiny\n")
    os.link(src, tmp_path / "h.json")
    (tmp_path / "l.json").symlink_to(src)
    for name in ("h.json", "l.json"):
        with pytest.raises(ValueError, match="is an input of this run"):
            write_output(tmp_path / name, "{}", "estimate", inputs=[src], force=True)
    assert src.read_text() == "model: gpt-tiny\n"


def test_foreign_file_refused_without_force(tmp_path):
    p = tmp_path / "notes.json"
    p.write_text('{"mine": 1}')
    with pytest.raises(ValueError, match="not an earlier clustersim estimate output.*--force"):
        write_output(p, output_json({"a": 1}, "estimate"), "estimate")
    assert p.read_text() == '{"mine": 1}'
    write_output(p, output_json({"a": 1}, "estimate"), "estimate", force=True)
    assert json.loads(p.read_text()) == {"clustersim_output": "estimate", "a": 1}


def test_earlier_output_of_the_same_kind_is_replaced(tmp_path):
    p = tmp_path / "e.json"
    write_output(p, output_json({"a": 1}, "estimate"), "estimate")
    write_output(p, output_json({"a": 2}, "estimate"), "estimate")
    assert json.loads(p.read_text())["a"] == 2
    with pytest.raises(ValueError, match="not an earlier clustersim search output"):
        write_output(p, output_json({"a": 3}, "search"), "search")   # another kind is foreign


def test_interrupted_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("scenario,source,index,name,rank,plan_id\nold\n")

    def writer(t):
        t.write_text("scenario,source,index,name,rank,plan_id\nhalf")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_output(p, writer, "results")
    assert p.read_text().endswith("old\n")
    assert [x.name for x in tmp_path.iterdir()] == ["r.csv"]   # no temporary file left behind


def test_directory_and_path_under_a_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a folder"):
        write_output(tmp_path / "d", "x", "estimate")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_output(tmp_path / "f" / "x.json", "x", "estimate")


def test_recognised_kinds(tmp_path):
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"traceEvents": [], "otherData": {}}))
    assert is_output_of(trace, "trace") and not is_output_of(trace, "estimate")
    csv = tmp_path / "r.csv"
    csv.write_text("scenario,source,index,name,rank,tie,plan_id,step_time_s\n")
    assert is_output_of(csv, "results") and not is_output_of(csv, "search")


def test_readme_first_command_runs_twice(tmp_path):
    out = tmp_path / "results.csv"
    assert main(["run", str(SMALL), "-o", str(out), "-q"]) == 0
    first = out.read_bytes()
    assert main(["run", str(SMALL), "-o", str(out), "-q"]) == 0
    assert out.read_bytes() == first


def test_strict_json_has_no_nan():
    text = strict_json({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": float("nan")}})
    assert json.loads(text) == {"a": None, "b": [None, None, 1.5], "c": {"d": None}}
    assert "NaN" not in text and "Infinity" not in text
