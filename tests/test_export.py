"""`clustersim export` (models/export/): each writer's output parses with the format's own parser and every
plan field lands under the framework's own key name; a plan the framework cannot run is refused with the
reason; the planner masks layout-dependent limits; unset CLI flags take the framework's default while a
flag given at the generic default stays explicit."""

import argparse
import ast
import json

import pytest
import tomllib
import yaml

from models.export import export_plan, shell_args
from models.inputs import build_inputs
from simulator.cli import main


def _inputs(framework, **kw):
    return build_inputs("llama3-8b", gpu="h100", nodes=2, framework=framework, global_batch=64, **kw)


def _export(framework, **kw):
    inp = _inputs(framework, **kw)
    return inp.plan, export_plan(inp.plan, inp.model, inp.cluster, framework)


def _dig(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d[k]
    return d


MEGATRON_FLAGS = {  # arguments.py@core_r0.8.0 names, as argparse would take them
    "--tensor-model-parallel-size": int, "--pipeline-model-parallel-size": int,
    "--num-layers-per-virtual-pipeline-stage": int, "--context-parallel-size": int,
    "--expert-model-parallel-size": int, "--num-experts": int, "--micro-batch-size": int, "--global-batch-size": int,
    "--recompute-granularity": str, "--recompute-method": str, "--recompute-num-layers": int,
    "--fp8-format": str, "--transformer-impl": str, "--num-layers": int, "--hidden-size": int,
    "--ffn-hidden-size": int, "--num-attention-heads": int, "--seq-length": int, "--max-position-embeddings": int,
    "--num-query-groups": int, "--hidden-dropout": float, "--attention-dropout": float}
MEGATRON_SWITCHES = ("--sequence-parallel", "--use-distributed-optimizer", "--overlap-grad-reduce",
                     "--overlap-param-gather", "--tp-comm-overlap", "--bf16", "--fp16", "--group-query-attention",
                     "--swiglu", "--accumulate-allreduce-grads-in-fp32",
                     "--grad-reduce-in-bf16", "--fp8-param-gather",   # (core_r0.12.0 and core_r0.9.0 names)
                     "--no-rope-fusion", "--no-bias-swiglu-fusion", "--no-bias-gelu-fusion")


def test_megatron_args_parse_with_argparse_under_megatrons_names():
    plan, e = _export("megatron-lm", tp=2, pp=2, vpp=2, zero=1, sp=True, recompute="selective",
                      overlap_grad_reduce=True, overlap_param_gather=True, overlap_tp_comm=True)
    ap = argparse.ArgumentParser()
    for flag, typ in MEGATRON_FLAGS.items():
        ap.add_argument(flag, type=typ)
    for flag in MEGATRON_SWITCHES:
        ap.add_argument(flag, action="store_true")
    a = ap.parse_args(shell_args(e.text))   # unknown names fail here
    assert (a.tensor_model_parallel_size, a.pipeline_model_parallel_size) == (plan.tp, plan.pp)
    assert a.num_layers_per_virtual_pipeline_stage == 32 // (plan.pp * plan.vpp)
    assert a.micro_batch_size == plan.micro_batch_size and a.global_batch_size == plan.global_batch_size
    assert a.context_parallel_size == plan.cp and a.sequence_parallel and a.use_distributed_optimizer
    assert a.recompute_granularity == "selective" and a.bf16 and not a.fp16
    assert a.overlap_grad_reduce and a.overlap_param_gather and a.tp_comm_overlap
    assert a.num_query_groups == 8 and a.swiglu
    for field, key in e.keys.items():   # every key named is a Megatron argument that was written
        assert key in MEGATRON_FLAGS or key in MEGATRON_SWITCHES or key.startswith("WORLD_SIZE"), (field, key)
    assert "MEGATRON_ARGS=(" in e.text and "arguments.py@core_r0.8.0" in e.text
    # Megatron-LM fuses rope and bias-SwiGLU unless told not to: a fused plan writes nothing, an eager one the
    # store_false switches (arguments.py@core_r0.8.0 --no-rope-fusion, --no-bias-swiglu-fusion)
    assert plan.fused_elementwise and "--no-rope-fusion" not in e.text
    _, eager = _export("megatron-lm", tp=2, fused_elementwise=False)
    a = ap.parse_args(shell_args(eager.text))
    assert a.no_rope_fusion and a.no_bias_swiglu_fusion and eager.keys["fused_elementwise"] == "--no-rope-fusion"


def test_nemo_recipe_yaml_carries_every_field_under_recipe_keys():
    plan, e = _export("nemo", tp=2, pp=2, vpp=2, recompute="full")
    doc = yaml.safe_load(e.text)
    want = {"tp": plan.tp, "pp": plan.pp, "vpp": plan.vpp, "cp": plan.cp, "ep": plan.ep, "sp": True,
            "zero_stage": True, "micro_batch_size": plan.micro_batch_size, "global_batch_size": plan.global_batch_size,
            "overlap_grad_reduce": True, "overlap_param_gather": True, "recompute": "full", "dtype": "bf16-mixed"}
    for field, value in want.items():
        assert _dig(doc, e.keys[field]) == value, field
    assert doc["trainer"]["strategy"]["sequence_parallel"] is True   # the NeMo default: SP with TP
    assert "trainer.strategy.tensor_model_parallel_size=2" in e.text


def test_torchtitan_toml_parses_with_tomllib_under_job_config_names():
    plan, e = _export("torchtitan", tp=2, pp=2, vpp=2, micro_batch=2, recompute="full")
    doc = tomllib.loads(e.text)
    par, tr = doc["parallelism"], doc["training"]
    assert par["tensor_parallel_degree"] == 2 and par["pipeline_parallel_degree"] == 2
    assert par["data_parallel_shard_degree"] == plan.dp and par["data_parallel_replicate_degree"] == 1
    assert par["fsdp_reshard_after_forward"] == "never"   # torchtitan under PP: FSDP2 keeps parameters (zero 2)
    assert par["pipeline_parallel_schedule"] == "Interleaved1F1B" and par["pipeline_parallel_microbatch_size"] == 2
    assert par["pipeline_parallel_layers_per_stage"] == 32 // 4 and par["context_parallel_degree"] == 1
    assert tr["global_batch_size"] == 64 and tr["local_batch_size"] == 64 // plan.dp and tr["seq_len"] == 8192
    assert doc["activation_checkpoint"]["mode"] == "full"
    for field, key in e.keys.items():
        assert key.split(".")[0] in doc and key.split(".")[1] in doc[key.split(".")[0]], (field, key)
    # torchtitan runs eager unless compiled: the profile's eager default writes compile = false, a fused plan true
    assert not plan.fused_elementwise and tr["compile"] is False
    _, fused = _export("torchtitan", tp=2, fused_elementwise=True)
    assert tomllib.loads(fused.text)["training"]["compile"] is True
    # a fused RMSNorm alone (the 2024 fused_rmsnorm kernel, removed in 37c4b8181) cannot be asked for
    with pytest.raises(ValueError, match="fused_norm: torchtitan here fuses its RMSNorm only under torch.compile"):
        _export("torchtitan", tp=2, fused_norm=True)


def test_torchtitan_fp8_is_the_float8_converter():
    """float8 linears; the FSDP float8 all-gather only when the plan gathers fp8 weights (torchtitan's
    --float8.enable_fsdp_float8_all_gather is off by default); the reduction is float32 (its only choice)."""
    _, e = _export("torchtitan", dtype="fp8")
    doc = tomllib.loads(e.text)
    assert doc["model"]["converters"] == ["float8"] and doc["float8"]["enable_fsdp_float8_all_gather"] is False
    assert doc["training"]["mixed_precision_reduce"] == "float32" and e.keys["grad_reduce_fp32"] == \
        "training.mixed_precision_reduce"
    _, e = _export("torchtitan", dtype="fp8", fp8_param_gather=True)
    doc = tomllib.loads(e.text)
    assert doc["float8"]["enable_fsdp_float8_all_gather"] is True
    assert e.keys["fp8_param_gather"] == "float8.enable_fsdp_float8_all_gather"


def test_deepspeed_json_under_config_json_names():
    plan, e = _export("deepspeed", zero=3, micro_batch=2, offload="optimizer,params", recompute="full",
                      partition_activations=True)
    cfg = json.loads(e.text)
    assert cfg["train_batch_size"] == 64 and cfg["train_micro_batch_size_per_gpu"] == 2
    assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * plan.dp
    z = cfg["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert z["overlap_comm"] is True   # DeepSpeed: overlap_comm defaults to True under stage 3 (the profile's default)
    assert cfg["bf16"]["enabled"] is True and cfg["activation_checkpointing"]["partition_activations"] is True
    for field, key in e.keys.items():
        if field != "dp":
            _dig(cfg, key)


def test_fsdp_snippet_parses_and_names_fsdp_enums():
    plan, e = _export("fsdp", zero=2, recompute="full", micro_batch=2)
    tree = ast.parse(e.text)
    kwargs = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "FSDP_KWARGS")
    kw = {k.arg: k.value for k in kwargs.keywords}
    assert ast.unparse(kw["sharding_strategy"]) == "ShardingStrategy.SHARD_GRAD_OP"
    assert ast.unparse(kw["backward_prefetch"]) == "BackwardPrefetch.BACKWARD_PRE"
    assert "torch.bfloat16" in ast.unparse(kw["mixed_precision"])
    consts = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.value, ast.Constant)}
    assert consts["MICRO_BATCH_SIZE"] == 2 and consts["GLOBAL_BATCH_SIZE"] == 64 and consts["WORLD_SIZE"] == plan.dp
    assert consts["ACTIVATION_CHECKPOINTING"] is True


@pytest.mark.parametrize("framework,fields,where", [
    ("megatron-core", dict(zero=3), "zero_stage: megatron-core cannot run zero_stage=3"),
    ("megatron-lm", dict(pp=2, schedule="gpipe"), "schedule: megatron-lm cannot run"),
    ("deepspeed", dict(pp=2, zero=2), "zero_stage: deepspeed cannot run zero_stage=2 with pp>1"),
    ("deepspeed", dict(pp=4, vpp=2), "vpp: deepspeed cannot run vpp=2"),
    ("fsdp", dict(pp=2), "pp: fsdp cannot run"),
    ("torchtitan", dict(zero=1), "zero_stage: torchtitan cannot run zero_stage=1"),
    ("torchtitan", dict(pp=2, schedule="zb-h1"), "schedule: torchtitan cannot run"),
    ("megatron-lm", dict(tp=2, sp=False, overlap_tp_comm=True), "overlap_tp_comm: Megatron-LM asserts"),
    ("megatron-lm", dict(offload="optimizer", zero=1), "offload: Megatron-LM core_r0.8.0 has no CPU offload"),
    ("deepspeed", dict(tp=2), "tp: a DeepSpeed config has no tensor parallelism"),
    ("megatron-lm", dict(tp=2, placement="dp-tp-cp-pp"), "placement: megatron-lm orders ranks"),
])
def test_a_plan_the_framework_cannot_run_is_refused_with_the_reason(framework, fields, where):
    with pytest.raises(ValueError) as e:
        _export(framework, **fields)
    assert where in str(e.value)


def test_maxtext_has_no_writer():
    inp = _inputs(None)
    with pytest.raises(ValueError, match="no launch-config writer for maxtext"):
        export_plan(inp.plan, inp.model, inp.cluster, "maxtext")


def test_cli_export_writes_by_framework_suffix_refuses_foreign_files_and_reruns(tmp_path, capsys):
    out = tmp_path / "train.toml"
    args = ["export", "--framework", "torchtitan", "--model", "llama3-8b", "--gpu", "h100", "--nodes", "2",
            "--tp", "2", "--global-batch", "64"]
    assert main([*args, "-o", str(out)]) == 0
    assert tomllib.loads(out.read_text())["parallelism"]["tensor_parallel_degree"] == 2
    assert main([*args, "-o", str(out)]) == 0                     # an earlier export is replaced
    assert main([*args, "-o", str(tmp_path / "train.json")]) == 2   # suffix by framework
    assert "choose a .toml file name" in capsys.readouterr().err
    mine = tmp_path / "mine.toml"
    mine.write_text("[job]\n")
    assert main([*args, "-o", str(mine)]) == 2 and mine.read_text() == "[job]\n"
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--framework", "nemo", "--model", "llama3-8b", "--gpu", "h100", "--zero", "3"]) == 2
    assert "megatron-core cannot run zero_stage=3" in capsys.readouterr().err


def test_cli_export_from_a_scenario_row(tmp_path, capsys):
    scn = tmp_path / "s.yaml"
    scn.write_text(yaml.safe_dump({"model": "gpt-tiny", "cluster": {"gpu": "a100", "nodes": 1},
                                   "training": {"global_batch_size": 16, "framework": "deepspeed"},
                                   "plans": [{"zero_stage": 1}, {"zero_stage": 2, "micro_batch_size": 2}]}))
    assert main(["export", "--scenario", str(scn), "--plan-index", "1"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["zero_optimization"]["stage"] == 2 and cfg["train_micro_batch_size_per_gpu"] == 2


def test_search_export_top_writes_the_best_plan(tmp_path, capsys):
    out = tmp_path / "ds.json"
    assert main(["search", "--model", "gpt-tiny", "--gpu", "a100", "--global-batch", "32", "--framework",
                 "deepspeed", "--top", "3", "--export-top", "1", "-o", str(out)]) == 0
    cfg = json.loads(out.read_text())
    assert cfg["train_batch_size"] == 32 and cfg["zero_optimization"]["stage"] in (0, 1, 2, 3)


def test_planner_masks_deepspeed_pipeline_limits():
    """DeepSpeed's PipelineEngine: ZeRO <= 1 and 1F1B only with pp > 1 (a layout-dependent limit)."""
    from models.hardware import make_cluster
    from models.inputs import Training
    from models.transformer import get_model
    from simulator.planning.planner import search
    r = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32, framework="deepspeed"),
               top=300)
    piped = r.plans[r.plans["pp"] > 1]
    assert len(piped) and set(int(z) for z in piped["zero_stage"]) <= {0, 1} and set(piped["schedule"]) == {"1f1b"}
    assert set(int(z) for z in r.plans[r.plans["pp"] == 1]["zero_stage"]) >= {2, 3}   # no pipeline: any stage


def test_unset_flags_take_the_framework_default_and_given_ones_stay():
    """--framework nemo alone: ZeRO-1 (distributed optimizer); --zero 0 --framework nemo: ZeRO-0, which
    Megatron-Core can run (plain DDP), even though 0 is also the generic default."""
    assert int(_inputs("nemo", tp=2, zero=None).plan.zero_stage) == 1
    assert int(_inputs("nemo", tp=2, zero=0).plan.zero_stage) == 0
    assert _inputs("nemo", tp=2, sp=None).plan.sp and not _inputs("nemo", tp=2, sp=False).plan.sp
    # a training flag given at the generic default stays too (overlap_tp_comm: NeMo's default with TP is on)
    assert _inputs("nemo", tp=2).plan.overlap_tp_comm and not _inputs("nemo", tp=2, overlap_tp_comm=False).plan.overlap_tp_comm


def test_cli_zero_0_with_nemo_keeps_zero_0(capsys):
    base = ["estimate", "--model", "gpt-tiny", "--gpu", "a100", "--framework", "nemo", "--json"]
    assert main(base) == 0
    assert "-z1-" in json.loads(capsys.readouterr().out)["plan_id"]
    assert main([*base, "--zero", "0"]) == 0
    assert "-z0-" in json.loads(capsys.readouterr().out)["plan_id"]


def test_fp32_plans_export_without_mixed_precision():
    """dtype fp32 (no mixed precision): Megatron gets neither --bf16 nor --fp16 (its default is fp32), NeMo the
    '32' precision plugin, DeepSpeed neither bf16 nor fp16 enabled, FSDP no MixedPrecision, torchtitan float32
    parameters."""
    kw = dict(dtype="fp32", zero=3)
    _, e = _export("megatron-lm", dtype="fp32", zero=1)
    args = shell_args(e.text)
    assert "--bf16" not in args and "--fp16" not in args
    _, e = _export("nemo", dtype="fp32", zero=1)
    doc = yaml.safe_load(e.text)
    assert doc["trainer"]["plugins"]["precision"] == "32" and doc["optim"]["config"]["bf16"] is False
    _, e = _export("deepspeed", **kw)
    cfg = json.loads(e.text)
    assert cfg["bf16"]["enabled"] is False and cfg["fp16"]["enabled"] is False
    _, e = _export("fsdp", **kw)
    assert "mixed_precision=None" in e.text and ast.parse(e.text)
    _, e = _export("torchtitan", **kw)
    assert tomllib.loads(e.text)["training"]["mixed_precision_param"] == "float32"
