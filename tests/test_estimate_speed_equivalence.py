"""Speed work on the analytical model must move no number: every field of ``estimate()`` and every
column of ``estimate_arrays()`` for ~40 varied plans (dense/MoE/MLA models; tp/pp/cp/ep/vpp; each
schedule; ZeRO 0-3 and hybrid sharding; recompute; LoRA/QLoRA/DoRA; offload; fp8; framework defaults)
equal, to 1e-12 relative, a frozen copy of the outputs the model gave before the speed-ups (issue 19).

The planner's grid path is checked too: the same plans stacked as arrays (grouped by model,
cluster and dtype) give, plan by plan, the frozen scalar columns.

Regenerate (only when a cost change is meant to move numbers, and say so in the commit):
    python tests/test_estimate_speed_equivalence.py --regenerate
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from models.estimate import estimate, estimate_arrays, plan_arrays
from models.hardware import make_cluster
from models.inputs import resolve_plan
from models.transformer import get_model

REFERENCE = Path(__file__).parent / "data" / "estimate_reference.json"
RTOL = 1e-12

# (id, model, gpu, nodes, cluster overrides, training (incl. framework), plan fields)
CASES = [
    ("gpt3-bench", "gpt3-175b", "a100-sxm-80gb", 128, {}, {},
     dict(dp=8, tp=8, pp=16, vpp=3, micro_batch_size=1, global_batch_size=1536, sp=True, recompute="selective",
          zero_stage=1, schedule="interleaved")),
    ("gpt3-1f1b-full", "gpt3-175b", "a100-sxm-80gb", 128, {}, {},
     dict(tp=8, pp=16, micro_batch_size=1, global_batch_size=512, recompute="full")),
    ("gpt3-gpipe", "gpt3-175b", "h100-sxm-80gb", 128, {}, {},
     dict(tp=8, pp=8, micro_batch_size=2, global_batch_size=1024, schedule="gpipe", sp=True)),
    ("gpt3-zb", "gpt3-175b", "h100-sxm-80gb", 128, {}, {},
     dict(tp=8, pp=8, micro_batch_size=1, global_batch_size=512, schedule="zb-h1", sp=True, recompute="selective")),
    ("gpt3-unfused-z2", "gpt3-175b", "a100-sxm-80gb", 64, {}, {"attention": "unfused"},
     dict(tp=8, pp=8, micro_batch_size=1, global_batch_size=256, zero_stage=2)),
    ("gpt3-flash1-pa", "gpt3-175b", "a100-sxm-40gb", 64, {}, {"attention": "flash1", "partition_activations": True},
     dict(tp=8, pp=8, micro_batch_size=1, global_batch_size=256, recompute="full")),
    ("llama3-8b-z3", "llama3-8b", "h100-sxm-80gb", 2, {}, {},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=64, zero_stage=3)),
    ("llama3-8b-z3-hsdp", "llama3-8b", "h100-sxm-80gb", 4, {}, {"overlap_param_gather": False},
     dict(tp=1, pp=1, micro_batch_size=2, global_batch_size=64, zero_stage=3, shard_group=8)),
    ("llama3-8b-z1-nooverlap", "llama3-8b", "a100-sxm-80gb", 2, {}, {"overlap_grad_reduce": False},
     dict(tp=2, pp=1, micro_batch_size=1, global_batch_size=32, zero_stage=1, sp=True)),
    ("llama3-8b-z0", "llama3-8b", "h200-sxm-141gb", 1, {}, {},
     dict(tp=1, pp=1, micro_batch_size=4, global_batch_size=32, zero_stage=0)),
    ("llama3-8b-fp8", "llama3-8b", "h100-sxm-80gb", 4, {}, {"dtype": "fp8"},
     dict(tp=2, pp=2, micro_batch_size=1, global_batch_size=64, zero_stage=1, sp=True)),
    ("llama3-8b-cp", "llama3-8b", "h100-sxm-80gb", 4, {}, {},
     dict(tp=2, cp=4, pp=1, micro_batch_size=1, global_batch_size=16, zero_stage=1, sp=True)),
    ("llama3-8b-cp-inner", "llama3-8b", "h100-sxm-80gb", 4, {}, {},
     dict(tp=2, cp=2, pp=2, micro_batch_size=1, global_batch_size=32, placement="cp-tp-dp-pp", sp=True)),
    ("llama3-70b-tp-outer", "llama3-70b", "h100-sxm-80gb", 16, {}, {"overlap_tp_comm": True},
     dict(tp=8, pp=4, micro_batch_size=1, global_batch_size=128, sp=True, placement="dp-tp-cp-pp",
          recompute="selective")),
    ("llama3-70b-vpp", "llama3-70b", "h100-sxm-80gb", 32, {}, {},
     dict(tp=8, pp=8, vpp=5, micro_batch_size=1, global_batch_size=256, sp=True, zero_stage=1)),
    ("llama3-70b-b200", "llama3-70b", "b200", 8, {}, {"dtype": "fp8"},
     dict(tp=4, pp=4, micro_batch_size=1, global_batch_size=128, sp=True, zero_stage=1, recompute="full")),
    ("llama3-70b-mi300x", "llama3-70b", "mi300x", 8, {}, {},
     dict(tp=8, pp=1, micro_batch_size=1, global_batch_size=64, zero_stage=3)),
    ("llama3-70b-gb200", "llama3-70b", "gb200", 1, {}, {},
     dict(tp=8, pp=3, micro_batch_size=1, global_batch_size=96, sp=True, zero_stage=1)),
    ("llama2-7b-v100-fp16", "llama2-7b", "v100-sxm-32gb", 4, {}, {"dtype": "fp16"},
     dict(tp=4, pp=2, micro_batch_size=1, global_batch_size=32, recompute="full")),
    ("gpt2-small-1gpu", "gpt2-small", "rtx-4090", 1, {"gpus_per_node": 1}, {},
     dict(tp=1, pp=1, micro_batch_size=8, global_batch_size=64)),
    ("gpt2-small-pp-uneven", "gpt2-small", "a100-sxm-80gb", 1, {}, {},
     dict(tp=1, pp=8, micro_batch_size=2, global_batch_size=16, schedule="gpipe")),
    ("mixtral-ep", "mixtral-8x7b", "h100-sxm-80gb", 8, {}, {},
     dict(tp=2, pp=4, ep=8, micro_batch_size=1, global_batch_size=128, sp=True, zero_stage=1)),
    ("mixtral-ep-overlap", "mixtral-8x7b", "h100-sxm-80gb", 8, {}, {"overlap_ep_comm": True},
     dict(tp=1, pp=4, ep=8, micro_batch_size=1, global_batch_size=128, zero_stage=2, recompute="full")),
    ("mixtral-z3-ep", "mixtral-8x7b", "a100-sxm-80gb", 4, {}, {},
     dict(tp=1, pp=1, ep=4, micro_batch_size=1, global_batch_size=64, zero_stage=3)),
    ("deepseek-v3-mla", "deepseek-v3", "h800-sxm-80gb", 256, {}, {"dtype": "fp8"},
     dict(tp=1, pp=16, ep=64, micro_batch_size=1, global_batch_size=2048, zero_stage=1, recompute="selective")),
    ("deepseek-v3-zb", "deepseek-v3", "h100-sxm-80gb", 128, {}, {},
     dict(tp=2, pp=8, ep=32, micro_batch_size=1, global_batch_size=512, schedule="zb-h1", sp=True,
          zero_stage=1)),
    ("gpt-oss-cp-ep", "gpt-oss-120b", "h200-sxm-141gb", 8, {}, {},
     dict(tp=1, cp=2, pp=2, ep=16, micro_batch_size=1, global_batch_size=64, zero_stage=2)),
    ("llama3-8b-lora", "llama3-8b", "a100-sxm-80gb", 1, {}, {"finetune": "lora", "lora_rank": 16},
     dict(tp=1, pp=1, micro_batch_size=2, global_batch_size=32)),
    ("llama3-8b-lora-all", "llama3-8b", "a100-sxm-80gb", 1, {},
     {"finetune": "lora", "lora_rank": 64, "lora_targets": "all-linear"},
     dict(tp=2, pp=1, micro_batch_size=1, global_batch_size=16, zero_stage=2, recompute="selective")),
    ("llama3-70b-qlora", "llama3-70b", "a100-sxm-80gb", 1, {}, {"finetune": "qlora", "lora_rank": 16},
     dict(tp=2, pp=4, micro_batch_size=1, global_batch_size=16, recompute="full")),
    ("llama3-70b-qlora-z3", "llama3-70b", "h100-sxm-80gb", 1, {},
     {"finetune": "qlora", "lora_targets": "q_proj,k_proj,v_proj,o_proj"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=8, zero_stage=3)),
    ("llama2-7b-dora", "llama2-7b", "a100-sxm-80gb", 1, {}, {"finetune": "dora", "lora_rank": 32},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=8, zero_stage=2)),
    ("llama3-8b-offload-opt", "llama3-8b", "a100-sxm-40gb", 1, {}, {"offload": "optimizer"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=16, zero_stage=2)),
    ("llama3-70b-offload-all", "llama3-70b", "h100-sxm-80gb", 2, {},
     {"offload": "optimizer,params,gradients,activations"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=16, zero_stage=3, recompute="full")),
    ("llama3-8b-offload-nvme", "llama3-8b", "a100-sxm-80gb", 1, {"nvme_bytes_per_s": 25e9},
     {"offload": "optimizer,params", "offload_to": "nvme"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=8, zero_stage=3)),
    ("llama3-8b-offload-acts-pp", "llama3-8b", "h100-sxm-80gb", 1, {}, {"offload": "activations"},
     dict(tp=2, pp=2, micro_batch_size=2, global_batch_size=32, recompute="full")),
    ("llama3-8b-lomo", "llama3-8b", "a100-sxm-80gb", 1, {}, {"optimizer": "lomo"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=8)),
    ("llama3-8b-adafactor-nofrag", "llama3-8b", "a100-sxm-80gb", 1, {},
     {"optimizer": "adafactor", "fragmentation": False, "constant_buffers": False},
     dict(tp=2, pp=2, micro_batch_size=1, global_batch_size=16, zero_stage=1)),
    ("fw-megatron-core", "llama3-70b", "h100-sxm-80gb", 16, {}, {"framework": "megatron-core"},
     dict(tp=8, pp=4, micro_batch_size=1, global_batch_size=128, sp=True)),
    ("fw-deepspeed", "llama3-8b", "a100-sxm-80gb", 2, {}, {"framework": "deepspeed"},
     dict(tp=1, pp=1, micro_batch_size=2, global_batch_size=64, zero_stage=2)),
    ("fw-fsdp", "llama3-8b", "h100-sxm-80gb", 4, {}, {"framework": "fsdp"},
     dict(tp=1, pp=1, micro_batch_size=1, global_batch_size=32, zero_stage=3)),
    ("fw-torchtitan", "llama3-70b", "h100-sxm-80gb", 8, {}, {"framework": "torchtitan"},
     dict(tp=8, pp=2, micro_batch_size=1, global_batch_size=64, zero_stage=3)),
    ("fw-megatron-2020", "gpt3-175b", "a100-sxm-80gb", 128, {}, {"framework": "megatron-lm-2020"},
     dict(tp=8, pp=16, micro_batch_size=1, global_batch_size=1536)),
    ("fw-maxtext", "llama3-8b", "h100-sxm-80gb", 2, {}, {"framework": "maxtext"},
     dict(tp=1, pp=1, micro_batch_size=2, global_batch_size=32, zero_stage=3, schedule="gpipe")),
    ("offload-host-too-small", "llama3-70b", "h100-sxm-80gb", 1, {"host_memory_bytes": 2**36},
     {"offload": "optimizer,gradients"},
     dict(tp=2, pp=1, micro_batch_size=1, global_batch_size=8, zero_stage=2, recompute="full")),
]


def _build(case):
    _, model_name, gpu, nodes, overrides, training, fields = case
    model, cluster = get_model(model_name), make_cluster(gpu, nodes, **overrides)
    fields = dict(fields)
    tr = {"global_batch_size": fields.pop("global_batch_size"), **training}   # a training field
    plan = resolve_plan(cluster.num_gpus, tr, **fields)
    return model, cluster, plan


def _est_dict(est) -> dict:
    d = est.as_dict()
    d.update(pcie_bytes_per_step=est.pcie_bytes_per_step, offload_s=est.offload_s,
             nvme_bytes_per_step=est.nvme_bytes_per_step, plan=repr(est.plan))
    return d


def _arr_dict(model, cluster, plan) -> dict:
    r = estimate_arrays(model, cluster, plan.dtype, **plan_arrays(plan))
    return {k: (bool(v) if np.asarray(v).dtype == bool else float(v)) for k, v in r.items()}


def _outputs():
    out = {}
    for case in CASES:
        model, cluster, plan = _build(case)
        out[case[0]] = {"estimate": _est_dict(estimate(model, cluster, plan)),
                        "arrays": _arr_dict(model, cluster, plan)}
    return out


def _same(a, b, where: str) -> list[str]:
    """Where ``a`` and ``b`` differ (floats beyond RTOL relative; anything else exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        errs = [f"{where}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        return errs + [e for k in a.keys() & b.keys() for e in _same(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [e for i, (x, y) in enumerate(zip(a, b)) for e in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        if math.isclose(a, b, rel_tol=RTOL, abs_tol=0.0) or (a == b) or (math.isnan(a) and math.isnan(b)):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(c[0] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_estimate_matches_frozen_outputs(case, reference):
    model, cluster, plan = _build(case)
    ref = reference[case[0]]
    errs = _same(json.loads(json.dumps(_est_dict(estimate(model, cluster, plan)))), ref["estimate"], "estimate")
    errs += _same(json.loads(json.dumps(_arr_dict(model, cluster, plan))), ref["arrays"], "arrays")
    assert not errs, "\n".join(errs[:20])


def test_grid_path_matches_frozen_outputs(reference):
    """The plans stacked as arrays, one call per (model, cluster, dtype), give each plan's frozen columns."""
    groups: dict = {}
    for case in CASES:
        model, cluster, plan = _build(case)
        groups.setdefault((case[1], case[2], case[3], json.dumps(case[4]), plan.dtype), []).append((case[0], plan))
    errs = []
    for (model_name, gpu, nodes, overrides, dtype), items in groups.items():
        model, cluster = get_model(model_name), make_cluster(gpu, nodes, **json.loads(overrides))
        cols = [plan_arrays(p) for _, p in items]
        arrays = {k: np.asarray([c[k] for c in cols]) for k in cols[0]}
        r = estimate_arrays(model, cluster, dtype, **arrays)
        for i, (name, _) in enumerate(items):
            got = {k: (bool(np.broadcast_to(v, (len(items),))[i]) if np.asarray(v).dtype == bool
                       else float(np.broadcast_to(v, (len(items),))[i])) for k, v in r.items()}
            errs += _same(got, reference[name]["arrays"], f"{name}/grid")
    assert not errs, "\n".join(errs[:20])


if __name__ == "__main__" and "--regenerate" in sys.argv:
    REFERENCE.write_text(json.dumps(_outputs(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")
