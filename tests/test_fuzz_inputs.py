"""Bad input never hurts (issue 17): generated flag values (NaN, inf, huge, negative, strings) for the
CLI, generated scenario dicts for the loader, hostile uploads for the dashboard. Each ends with exit
code 0 or 2, one `error:` line and no traceback, strict JSON on --json, and no input file changed.
Deterministic (hypothesis derandomized)."""

import contextlib
import hashlib
import io
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.planning.schema import load_scenario

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

NUMBERS = ("0", "-1", "1", "2", "3", "8", "nan", "inf", "-inf", "1e20", "100000000000000000000", "4.5", "abc", "",
           "1e300", "-0", "64", "0x10", "1,2")
FLAGS = {
    "estimate": ("--tp", "--pp", "--cp", "--dp", "--global-batch", "--micro-batch", "--seq-len", "--nodes", "--zero",
                 "--tokens", "--pue", "--nic-gbit-per-s", "--price-per-gpu-hour", "--gpus-per-node", "--vpp"),
    "train-time": ("--tp", "--global-batch", "--tokens", "--monte-carlo", "--gpu-failure-rate", "--mtbf-hours",
                   "--step-time-s", "--detect-s", "--storage-gb-per-s", "--gpu-speed-cv", "--jitter-cv",
                   "--checkpoint-interval", "--price-per-gpu-hour"),
    "simulate": ("--tp", "--pp", "--global-batch", "--micro-batch", "--straggler-slowdown", "--speed-cv",
                 "--straggler-rank", "--seed"),
    "search": ("--tp", "--pp", "--cp", "--micro-batch", "--zero", "--simulate-top", "--top", "--try-nodes",
               "--max-memory-fraction"),
}
BASE = {"estimate": ["--model", "gpt-tiny", "--gpu", "a100"], "train-time": ["--model", "gpt-tiny", "--gpu", "a100"],
        "simulate": ["--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "8"],
        "search": ["--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "8", "--backend", "serial"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Input files a hostile run might name as its output; their hashes must not change."""
    d = tmp_path_factory.mktemp("fuzz")
    cfg = d / "config.json"
    cfg.write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                               "intermediate_size": 256, "vocab_size": 1000, "max_position_embeddings": 128}))
    scn = d / "s.yaml"
    scn.write_text(yaml.safe_dump({"model": "gpt-tiny", "cluster": {"gpu": "a100", "nodes": 1},
                                   "training": {"global_batch_size": 8}, "plans": [{"tp": 1}]}))
    notes = d / "notes.json"
    notes.write_text('{"mine": true}')
    return d, [cfg, scn, notes]


def _hashes(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _no_constant(name):
    raise AssertionError(f"bare {name} in --json output")


def _check(argv, files_before, paths):
    rc, out, err = _run(argv)
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    if rc == 2:
        lines = [x for x in err.splitlines() if x.startswith("error:")]
        assert lines or "Usage" in err or "Error" in err, (argv, err)
    if rc == 0 and "--json" in argv and argv[argv.index("--json") + 1:argv.index("--json") + 2] in ([], ["-"]):
        json.loads(out, parse_constant=_no_constant)
    assert _hashes(paths) == files_before, argv
    return rc


@st.composite
def cli_args(draw):
    command = draw(st.sampled_from(sorted(FLAGS)))
    argv = [command, *BASE[command]]
    for flag in draw(st.lists(st.sampled_from(FLAGS[command]), min_size=1, max_size=3, unique=True)):
        argv += [flag, draw(st.sampled_from(NUMBERS))]
    target = draw(st.sampled_from(("none", "json", "cfg", "scn", "notes", "dir")))
    return argv, target


@settings(max_examples=90, **SETTINGS)
@given(cli_args())
def test_cli_flags(files, case):
    d, paths = files
    argv, target = case
    before = _hashes(paths)
    if target == "json" and argv[0] != "search":
        argv = argv + ["--json"]
    elif target == "json":
        argv = argv + ["--json"]
    elif target in ("cfg", "scn", "notes"):
        p = {"cfg": paths[0], "scn": paths[1], "notes": paths[2]}[target]
        argv = argv + ["-o", str(p)]
        if target == "cfg":
            argv[argv.index("gpt-tiny")] = str(paths[0])   # the model's config.json is the output: refused
    elif target == "dir":
        argv = argv + ["-o", str(d)]
    rc = _check(argv, before, paths)
    if target in ("cfg", "scn", "notes", "dir"):
        assert rc == 2


SCALARS = st.sampled_from([0, -1, 1, 2, 8, 4.5, 1e30, math.nan, math.inf, "8", "abc", None, True, [], {}, 10**20])
KEYS = ("tp", "pp", "cp", "micro_batch_size", "zero_stage", "recompute", "global_batch_size", "seq_len", "nodes",
        "gpu", "tokens", "pue", "nic_gbit_per_s", "sp", "warp")


@st.composite
def scenario_dicts(draw):
    doc = {"model": draw(st.sampled_from(["gpt-tiny", "/dev/zero", {"preset": "gpt-tiny", "num_layers": 4.5},
                                          {"preset": "gpt-tiny", "tied_embeddings": "false"}, 7, None])),
           "cluster": {"gpu": "a100", "nodes": 1}, "training": {"global_batch_size": 8}, "plans": [{}]}
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(("cluster", "training", "plans", "sweep")))
        key, value = draw(st.sampled_from(KEYS)), draw(SCALARS)
        if section == "plans":
            doc["plans"] = [{key: value}]
        elif section == "sweep":
            doc["sweep"] = {key: [value, value] if draw(st.booleans()) else value}
        else:
            doc[section] = {**doc[section], key: value}
    return doc


@settings(max_examples=60, **SETTINGS)
@given(scenario_dicts())
def test_scenario_loader(tmp_path_factory, doc):
    p = tmp_path_factory.mktemp("scn") / "s.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    before = p.read_bytes()
    try:
        load_scenario(p)
    except ValueError as e:
        assert "\n" not in str(e) and str(p) in str(e)
    rc, out, err = _run(["run", str(p), "-q", "--mode", "estimate"])
    assert rc in (0, 2) and "Traceback" not in err, (doc, err)
    assert p.read_bytes() == before


HOSTILE_YAML = [b"a: &a\n  b: *a\n", b"&a [*a]\n", b"\xff\xfe\x00",
                b"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                b"f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", b"[" * 5000 + b"]" * 5000]


@pytest.mark.parametrize("data", HOSTILE_YAML, ids=["recursive-map", "recursive-list", "binary", "laughs", "deep"])
def test_hostile_scenario_files(tmp_path, data):
    p = tmp_path / "s.yaml"
    p.write_bytes(data)
    rc, out, err = _run(["run", str(p)])
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert p.read_bytes() == data


@pytest.mark.parametrize("argv,expect", [
    (["simulate", "--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "4000000"], "compute ops"),
    (["train-time", "--model", "gpt-tiny", "--gpu", "a100", "--monte-carlo", "1000000000"], "monte-carlo"),
    (["simulate", "--model", "gpt-tiny", "--gpu", "a100", "--straggler-rank", "0", "--straggler-slowdown", "nan"],
     "straggler-slowdown"),
    (["simulate", "--model", "gpt-tiny", "--gpu", "a100", "--speed-cv", "inf"], "speed-cv"),
    (["estimate", "--model", "/dev/zero"], "not a regular file"),
    (["estimate", "--model", "gpt-tiny", "--tp", "-1"], "tp"),
    (["estimate", "--model", "gpt-tiny", "--zero", "4"], "zero_stage"),
    (["search", "--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "8", "--cp", "3"], "no valid plan"),
    (["search", "--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "8", "--simulate-top", "-1"],
     "simulate-top"),
    (["calibrate", "--hidden", "0"], "hidden"),
])
def test_bounded_and_named(argv, expect):
    rc, out, err = _run(argv)
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err


def test_json_outputs_are_strict():
    rc, out, err = _run(["train-time", "--model", "gpt-tiny", "--gpu", "a100", "--mtbf-hours", "inf", "--json"])
    assert rc == 0
    d = json.loads(out, parse_constant=_no_constant)
    assert d["mtbf_s"] is None


# ------------------------------------------------------------------ the dashboard

APP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "ui" / "app.py")


@pytest.fixture(scope="module")
def app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(APP, default_timeout=60).run()


@pytest.mark.slow
def test_dashboard_scenario_uploads(app):
    at = app
    at.switch_page("views/scenario.py").run()
    base = {"cluster": {"gpu": "a100", "nodes": 1}, "training": {"global_batch_size": 8}, "plans": [{}]}
    uploads = [yaml.safe_dump({**base, "model": "/etc/passwd"}).encode(),
               yaml.safe_dump({**base, "model": {"config": "/etc/hostname"}}).encode(),
               yaml.safe_dump({**base, "model": "gpt-tiny", "training": {"global_batch_size": "8"}}).encode(),
               yaml.safe_dump({**base, "model": "gpt-tiny", "training": {"global_batch_size": 8, "tokens": 1e300}}).encode(),
               *HOSTILE_YAML]
    for i, data in enumerate(uploads):
        at.file_uploader(key="sc_upload").set_value((f"u{i}.yaml", data, "application/x-yaml")).run()
        at.button(key="sc_load").click().run()
        assert not at.exception, (data[:80], at.exception)
        assert at.error, data[:80]
        if i < 2:   # a path on the server, as the model or its config: refused unread, and said so
            assert any("on the server" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_dashboard_config_and_validation_uploads(app):
    at = app
    at.switch_page("views/plans.py").run()
    at.radio(key="in_source").set_value("config.json").run()
    for data in (b'{"num_hidden_layers": Infinity, "hidden_size": 64}', b'{"hidden_size": 1e30}',
                 b'{"num_hidden_layers": 2, "hidden_size": "64", "num_attention_heads": 4, "vocab_size": 10}',
                 b"\xff\xfe\x00\x01", b"[" * 100_000 + b"]" * 100_000):
        at.file_uploader(key="in_upload").set_value(("c.json", data, "application/json")).run()
        assert not at.exception and at.error, data[:60]
    at.switch_page("views/validation.py").run()
    for doc in ({"summary": {"median_abs_step_time_error": "x"}, "records": [
                    {"plan": "a", "measured_step_time_s": "fast", "predicted_step_time_s": 0.5}]},
                {"records": "nope"}, [1, 2], {"records": [{"plan": 1, "measured_step_time_s": 1e300,
                                                          "predicted_step_time_s": 1}]}):
        at.file_uploader(key="val_upload").set_value(("v.json", json.dumps(doc).encode(), "application/json")).run()
        assert not at.exception, (doc, at.exception)
