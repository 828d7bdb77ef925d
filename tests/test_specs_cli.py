"""Specs validate with clear messages; the CLI never shows a traceback for bad input."""

import json
from pathlib import Path

import pytest

from models.hardware import get_gpu, make_cluster
from models.hf_config import load_hf_config
from models.plan import Plan, check_plan
from models.transformer import get_model
from simulator.cli import main

BASE = ["estimate", "--model", "llama2-7b", "--gpu", "h100-sxm-80gb", "--nodes", "1"]


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tp_must_divide_heads_names_field():
    errs = check_plan(Plan(dp=1, tp=3, global_batch_size=1), get_model("llama2-7b"))
    assert any(e.startswith("tp:") and "num_heads=32" in e for e in errs)


def test_ep_needs_moe():
    errs = check_plan(Plan(dp=8, ep=2, global_batch_size=8), get_model("llama2-7b"))
    assert any(e.startswith("ep:") for e in errs)


def test_world_size_must_match_cluster():
    errs = check_plan(Plan(dp=4, tp=2, global_batch_size=8), get_model("llama2-7b"), make_cluster("h100", 2))
    assert any("world size" in e and "dp=8" in e for e in errs)


def test_plan_field_validation():
    with pytest.raises(ValueError, match="plan.global_batch_size"):
        Plan(dp=3, micro_batch_size=2, global_batch_size=8)
    with pytest.raises(ValueError, match="plan.recompute"):
        Plan(recompute="sometimes")
    with pytest.raises(ValueError, match="gpu: unknown GPU"):
        get_gpu("tpu-v5")


def test_hf_config(tmp_path):
    cfg = {"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 131072,
           "hidden_act": "silu", "tie_word_embeddings": False}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    m = load_hf_config(p)
    assert m.num_params == get_model("llama3-8b").num_params and m.seq_len == 8192
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hf_config(tmp_path / "bad.json")
    (tmp_path / "missing.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="num_hidden_layers"):
        load_hf_config(tmp_path / "missing.json")


def test_cli_estimate_report_and_json(capsys):
    code, out, _ = run(BASE + ["--tp", "2", "--micro-batch", "1", "--global-batch", "32"], capsys)
    assert code == 0 and "iteration time" in out and "MFU" in out and "fits" in out
    code, out, _ = run(BASE + ["--tp", "2", "--global-batch", "32", "--json"], capsys)
    d = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "tflops_per_gpu", "mfu", "hfu", "peak_memory_bytes", "fits",
                "compute_s", "exposed_comm_s", "bubble_s", "memory", "warnings"):
        assert key in d
    assert set(d["memory"]) == {"params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "other_bytes"}


def test_cli_issue_example(capsys):
    code, out, _ = run(["estimate", "--model", "gpt3-175b", "--gpu", "a100-sxm-80gb", "--nodes", "128", "--tp", "8",
                        "--pp", "16", "--dp", "8", "--vpp", "3", "--micro-batch", "1", "--global-batch", "1536", "--sp",
                        "--recompute", "selective", "--zero", "1", "--schedule", "interleaved", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["fits"] and 0.3 < d["mfu"] < 0.8 and len(d["memory_by_stage"]) == 16


@pytest.mark.parametrize("args,needle", [
    (["--model", "nope"], "model: unknown preset"),
    (["--gpu", "tpu"], "gpu: unknown GPU"),
    (["--tp", "3", "--dp", "1", "--gpus-per-node", "3"], "tp: tp=3 does not divide num_heads=32"),
    (["--recompute", "maybe"], "plan.recompute"),
    (["--model", "/no/such/config.json"], "no such file"),
])
def test_cli_bad_input_one_line_no_traceback(args, needle, capsys):
    base = ["estimate", "--model", "llama2-7b", "--gpu", "h100-sxm-80gb"]
    code, out, err = run(base + args, capsys)
    assert code == 2 and needle in err and "Traceback" not in err + out


def test_cli_oom_verdict(capsys):
    code, out, _ = run(["estimate", "--model", "llama2-70b", "--gpu", "a100-sxm-40gb", "--nodes", "1",
                        "--global-batch", "8"], capsys)
    assert code == 0 and "OUT OF MEMORY" in out


@pytest.mark.parametrize("args", [["schema", "--bogus"], ["estimate", "--tp"], ["nosuchcmd"]])
def test_cli_usage_errors_are_one_message_not_a_traceback(args, capsys):
    code, out, err = run(args, capsys)
    assert code == 2 and "Traceback" not in out + err and "Error" in err


def test_estimate_simulate_and_train_time_share_every_plan_option(capsys, monkeypatch):
    """The model/cluster/plan options are declared once (models/fields.py metadata on Plan, Training,
    ClusterInputs): each command lists all of them, and a plan flag means the same in each
    (train-time had lost --placement when the three declared their options separately)."""
    import re

    from simulator.cli.app import option_flags
    monkeypatch.setenv("COLUMNS", "250")
    for cmd in ("estimate", "simulate", "train-time"):
        flags = set(option_flags(cmd))
        assert {"--tp", "--placement", "--oversubscription", "--nic-gbit-per-s", "--attention"} <= flags
        assert main([cmd, "--help"]) == 0
        text = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
        missing = {f for f in flags if f not in text}
        assert not missing, (cmd, missing)
    args = ["--model", "llama2-7b", "--gpu", "h100", "--nodes", "2", "--tp", "2", "--dp", "8",
            "--global-batch", "64", "--placement", "dp-tp-cp-pp", "--json"]
    assert main(["estimate", *args]) == 0
    est = json.loads(capsys.readouterr().out)
    assert main(["train-time", *args, "--tokens", "1e9"]) == 0
    tt = json.loads(capsys.readouterr().out)
    assert tt["plan_id"] == est["plan_id"] and tt["plan_id"].endswith("dpinner")


def test_model_command_reports_published_counts(capsys):
    """`clustersim model PATH --json`: GPT-2's 124,439,808 parameters (Hugging Face model card,
    openai-community/gpt2) with tied embeddings; an unknown name is one error line."""
    data = Path(__file__).parent / "data" / "gpt2" / "config.json"
    assert main(["model", str(data), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 124_439_808 and {"active_params", "embedding_params", "warnings"} <= set(d)
    assert main(["model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("clustersim ")


def test_command_map_names_every_command_once():
    """simulator.cli.app imports only the module of the command that runs (issue 19: start-up); its map of
    command -> module must list what the modules register, and each command's options must build."""
    from simulator.cli.app import COMMAND_MODULES, app, import_commands
    for module in set(COMMAND_MODULES.values()):
        import_commands(module)
    assert set(app.commands) == set(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        assert app.click_command(name).name == name


def test_help_lists_every_command_and_usage_errors_exit_2(capsys):
    from simulator.cli.app import COMMAND_MODULES
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMAND_MODULES), out
    assert main(["estimate", "--tp", "x"]) == 2 and "'x' is not a valid integer" in capsys.readouterr().err
    assert main(["run"]) == 2 and "Missing argument 'FILE'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["estimate", "--model", "gpt-tiny", "--gpu", "a100"],
    ["simulate", "--model", "gpt-tiny", "--gpu", "a100"],
    ["train-time", "--model", "gpt-tiny", "--gpu", "a100", "--tokens", "1e9"],
    ["search", "--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "16", "--top", "2", "--backend", "serial"],
    ["model", "gpt-tiny"],
    ["run", str(Path(__file__).parents[1] / "scenarios" / "small-gpt-1gpu.yaml")],
], ids=lambda a: a[0])
def test_json_prints_strict_json_on_stdout_on_every_command(argv, capsys):
    """One convention (issue 18): --json prints strict JSON (no NaN/Infinity) on stdout, nothing else."""
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
