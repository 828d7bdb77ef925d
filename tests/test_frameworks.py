"""Framework profiles (models/frameworks.py): every default has a source and is applied where the
user leaves the field unset; what a framework cannot run is refused with the reason; the planner
searches only what the framework can run; --framework reaches every command."""

import re

import pytest

from models.frameworks import PROFILES, apply_defaults, framework_errors, get_profile
from models.inputs import _GENERIC, Training, build_inputs, resolve_plan

# (profile, field) -> the source each default must name (repository and file), one case per default.
DEFAULTS = [(p.name, name) for p in PROFILES.values() for name in p.defaults]
EXPECTED_SOURCE = {
    "megatron-lm-2020": "NVIDIA/Megatron-LM ",   # megatron/ code, or the README of the same tree
    "megatron-lm": ("NVIDIA/Megatron-LM megatron/training/arguments.py@core_r0.8.0",
                    "NVIDIA/Megatron-LM megatron/core/models/gpt/gpt_layer_specs.py@core_r0.8.0"),   # the layer spec
    "megatron-core": "NVIDIA/NeMo ",
    "megatron-deepspeed": "",
    "deepspeed": "microsoft/DeepSpeed deepspeed/runtime/zero/config.py@03dc2b9",
    "fsdp": "pytorch/pytorch torch/distributed/fsdp/fully_sharded_data_parallel.py@v2.1.0",
    "llm-foundry": "",
    "llm-foundry-torch1": "",
    "torchtitan": "",
    "maxtext": "",
}


@pytest.mark.parametrize("framework,field", DEFAULTS, ids=[f"{a}:{b}" for a, b in DEFAULTS])
def test_each_default_names_its_source_and_is_applied(framework, field):
    d = PROFILES[framework].defaults[field]
    # a source is "owner/repo path@version: ..." or names a framework's own documented behaviour
    assert re.search(r"[\w-]+/[\w.-]+ [\w/.]+|XLA|FSDP2|PyTorch", d.source), d.source
    assert "@" in d.source or "torch 2" in d.source or "XLA" in d.source, f"no version in {d.source!r}"
    want_src = EXPECTED_SOURCE[framework]
    assert d.source.startswith(want_src if isinstance(want_src, tuple) else (want_src,)) or want_src == ""
    if field == "dropout":
        return
    for tp, pp in ((1, 1), (4, 2)):
        fields = {**_GENERIC, "tp": tp, "pp": pp}
        out, used = apply_defaults(fields, framework, _GENERIC)
        want = d.resolve({**out, "_defaulted": {u.split("=")[0] for u in used}})   # defaults that go with another
        got = out[field]
        got = int(got) if field == "zero_stage" else getattr(got, "name", got)
        assert str(got).lower() == str(want).lower(), (framework, field, tp, pp)


def test_megatron_core_defaults_distributed_optimizer_sp_with_tp_and_overlaps():
    """NeMo 2.0 llama3_70b recipe (0189a3b): distributed optimizer, SP with TP, grad/param overlap, TP overlap."""
    p = resolve_plan(64, Training(global_batch_size=64, framework="nemo"), tp=4, pp=2)
    assert int(p.zero_stage) == 1 and p.sp and p.overlap_grad_reduce and p.overlap_param_gather and p.overlap_tp_comm
    p1 = resolve_plan(8, Training(global_batch_size=64, framework="nemo"))
    assert not p1.sp and not p1.overlap_tp_comm


def test_torchtitan_reshards_after_forward_only_without_pp_and_splits_batch_into_stages():
    """torchtitan parallelize_llama.py@0011fb9: reshard_after_forward = not pp_enabled; config_manager.py:
    pipeline_parallel_microbatches defaults to the number of stages."""
    tr = Training(framework="torchtitan")
    assert int(resolve_plan(8, tr).zero_stage) == 3
    p = resolve_plan(16, tr, pp=4, micro_batch_size=2)
    assert int(p.zero_stage) == 2 and p.num_microbatches == 4
    assert p.recompute.name == "FULL" and p.recompute_fraction == 0.5   # selective_ac_option '2': every 2nd layer


def test_megatron_2020_unfused_dropout_no_overlap():
    inp = build_inputs("gpt3-175b", gpu="a100", nodes=8, tp=8, pp=8, framework="megatron-lm-2020", global_batch=64)
    assert inp.plan.attention == "unfused" and not inp.plan.overlap_grad_reduce and inp.model.dropout


def test_a_stated_value_other_than_the_generic_default_is_kept():
    p = resolve_plan(8, Training(global_batch_size=64, framework="megatron-lm-2020", attention="flash1"))
    assert p.attention == "flash1"


@pytest.mark.parametrize("framework,fields,field", [
    ("megatron-core", dict(zero_stage=3), "zero_stage"),
    ("megatron-lm-2020", dict(sp=True, tp=2), "sp"),
    ("deepspeed", dict(pp=2, zero_stage=2), "zero_stage"),
    # DeepSpeed AutoTP training tutorial: TP combines with ZeRO 0-2, not 3
    ("deepspeed", dict(tp=2, zero_stage=3), "zero_stage"),
    ("deepspeed", dict(cp=2), "cp"),
    ("fsdp", dict(pp=2), "pp"),
    ("llm-foundry", dict(tp=2), "tp"),
])
def test_what_a_framework_cannot_run_is_refused_with_the_reason(framework, fields, field):
    with pytest.raises(ValueError) as e:
        resolve_plan(16, Training(global_batch_size=64, framework=framework), **fields)
    assert str(e.value).startswith(f"{field}: {get_profile(framework).name} cannot run")
    assert framework_errors({"tp": 1, "pp": 1, "zero_stage": 1}, "megatron-core") == []


def test_unknown_framework_names_the_choices():
    with pytest.raises(ValueError, match="framework"):
        Training(framework="caffe")


def test_planner_searches_only_what_the_framework_runs():
    from models.hardware import make_cluster
    from models.transformer import get_model
    from simulator.planning.planner import search
    r = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32, framework="nemo"), top=50)
    assert set(int(z) for z in r.plans["zero_stage"]) <= {0, 1}
    r = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32, framework="fsdp"), top=50)
    assert set(int(p) for p in r.plans["pp"]) == {1}


def test_framework_flag_on_every_plan_command():
    from simulator.cli.app import option_flags
    for cmd in ("estimate", "simulate", "search", "train-time"):
        assert "--framework" in option_flags(cmd, ("tp",) if cmd == "search" else ())


def test_torchtitan_default_checkpointing_is_every_second_layer():
    """torchtitan's default activation checkpointing (config_manager.py@0011fb9: mode 'selective',
    selective_ac_option '2') wraps every 2nd block in full checkpointing: full recompute of half the layers,
    exported back as selective_ac_option = "2". A user who asks for full recompute gets all layers."""
    from models.export import export_plan
    from models.hardware import make_cluster
    from models.transformer import get_model
    p = resolve_plan(16, Training(global_batch_size=64, framework="torchtitan"))
    assert p.recompute.name == "FULL" and p.recompute_fraction == 0.5 and p.plan_id.endswith("rcf0.5")
    text = export_plan(p, get_model("llama3-8b"), make_cluster("h100", 2), "torchtitan").text
    assert 'selective_ac_option = "2"' in text
    p = resolve_plan(16, Training(global_batch_size=64, framework="torchtitan"), recompute="full")
    assert p.recompute_fraction == 1.0


def test_megatron_2020_recomputes_as_its_readme_recipes_do():
    """Megatron-LM README.md@5281919 (Sep 2020): the GPT-2 pretraining example reuses the BERT script's
    OUTPUT_ARGS, which pass --checkpoint-activations; the README's 1.16B single-A100 case reports 149.8
    TFLOP/s at 1,076 ms, which is 96 B s l h^2 (1 + s/6h + V/16lh) (SC'21 eq. 3, the count with the
    recomputed forward) for B = 16, s = 1024, l = 24, h = 1920, V = 51200."""
    B, s, n_layers, h, V = 16, 1024, 24, 1920, 51200
    flops = 96 * B * s * n_layers * h**2 * (1 + s / (6 * h) + V / (16 * n_layers * h))
    assert flops / 1.076 / 1e12 == pytest.approx(149.8, abs=0.1)
    p = resolve_plan(8, Training(global_batch_size=64, framework="megatron-lm-2020"))
    assert p.recompute.name == "FULL"
