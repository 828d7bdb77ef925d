"""Expert tensor parallelism and parallel folding (issue 15): Megatron-Core --expert-tensor-parallel-size;
Liu et al. 2025, "MoE Parallel Folding" (arXiv 2504.14960): the expert layers re-partition the tp x cp x dp
ranks as expert_tp x ep x expert-dp, so EP can take tensor-parallel ranks instead of data-parallel ones."""

import pytest

from models.estimate import estimate
from models.hardware import make_cluster
from models.parallel import expert
from models.plan import Plan, check_plan
from models.transformer import get_model

MIXTRAL = get_model("mixtral-8x7b")


def _plan(**kw):
    return Plan(**{"global_batch_size": 64, "micro_batch_size": 1, "zero_stage": 1, "sp": True, **kw})


def test_ep_over_tensor_parallel_ranks_needs_expert_tp_below_tp():
    # one 8-GPU node, tp 8: no data-parallel ranks to carve ep 8 out of, unless the experts fold into tp
    errs = check_plan(_plan(tp=8, ep=8, dp=1, global_batch_size=8), MIXTRAL)
    assert errs and errs[0].startswith("ep:") and "expert_tp" in errs[0]
    assert check_plan(_plan(tp=8, ep=8, expert_tp=1, dp=1, global_batch_size=8), MIXTRAL) == []
    bad = check_plan(_plan(tp=8, ep=8, expert_tp=2, dp=1, global_batch_size=8), MIXTRAL)
    assert bad and bad[0].startswith("expert_tp:")


def test_expert_dp_and_token_share_as_megatron_lays_them_out():
    assert int(expert.expert_dp_size(8, 1, 4, 8, 1)) == 4      # 32 ranks / (ep 8 x etp 1)
    assert int(expert.expert_dp_size(2, 1, 16, 8, 2)) == 2     # unfolded (expert_tp = tp): dp*cp/ep
    assert float(expert.tokens_share(8, 1)) == 0.125


def test_folding_keeps_expert_weights_per_rank_and_moves_all_to_all_onto_nvlink():
    """tp 8 with the experts split 8 ways by tp (ep 1) and tp 8 with the experts spread over the same 8 ranks
    by ep (expert_tp 1) hold the same expert weights per rank; the folded plan runs the expert GEMMs whole
    (no expert TP collectives) and its all-to-all stays inside the node."""
    c = make_cluster("h100-sxm-80gb", 4)
    split = estimate(MIXTRAL, c, _plan(tp=8, ep=1, dp=4))
    folded = estimate(MIXTRAL, c, _plan(tp=8, ep=8, expert_tp=1, dp=4))
    assert folded.memory.params_bytes == pytest.approx(split.memory.params_bytes)
    assert folded.exposed_comm_by_kind_s["tp"] < split.exposed_comm_by_kind_s["tp"]
    assert folded.step_time_s < split.step_time_s
    assert "etp1" in _plan(tp=8, ep=8, expert_tp=1, dp=4).plan_id


def test_simulator_agrees_with_the_estimate_on_a_folded_plan():
    from simulator import simulate
    c = make_cluster("h100-sxm-80gb", 4)
    p = _plan(tp=8, ep=8, expert_tp=1, dp=4)
    assert simulate(MIXTRAL, c, p).step_time_s == pytest.approx(estimate(MIXTRAL, c, p).step_time_s, rel=0.03)


def test_export_writes_expert_tensor_parallel_size():
    from models.export import export_plan
    c = make_cluster("h100-sxm-80gb", 4)
    p = _plan(tp=8, ep=8, expert_tp=1, dp=4)
    mlm = export_plan(p, MIXTRAL, c, "megatron-lm").text
    assert "--expert-tensor-parallel-size 1" in mlm
    assert "expert_tensor_parallel_size: 1" in export_plan(p, MIXTRAL, c, "nemo").text


def test_the_planner_searches_folding_where_the_framework_has_it():
    """The planner's expert_tp axis: MoE plans with the experts on the tensor-parallel ranks (0) or folded to
    expert TP 1 (Megatron-Core's usual MoE layout, Liu et al. 2025); each folded plan costs in the grid what
    estimate() gives it; a framework without folding (DeepSpeed) searches only 0; a dense model has no such axis."""
    from models.inputs import Training
    from simulator.planning.grid import Constraints
    from simulator.planning.planner import search
    cl = make_cluster("h100-sxm-80gb", 2)
    res = search(MIXTRAL, cl, Training(global_batch_size=64), Constraints(tp=(2,), pp=(1,)), top=40)
    folded = [r for r in res.records if r["expert_tp"] == 1]
    assert folded and any(r["expert_tp"] == 0 for r in res.records)
    r = folded[0]
    plan = Plan(**{k: r[k] for k in ("dp", "tp", "pp", "cp", "ep", "expert_tp", "vpp", "micro_batch_size", "sp",
                                     "zero_stage", "recompute", "schedule", "placement", "global_batch_size")})
    assert plan.plan_id == r["plan_id"] and "-etp1" in r["plan_id"]
    assert estimate(MIXTRAL, cl, plan).step_time_s == pytest.approx(r["step_time_s"], rel=1e-9)
    ds = search(MIXTRAL, cl, Training(global_batch_size=64, framework="deepspeed"), Constraints(tp=(2,), pp=(1,)))
    assert all(r["expert_tp"] == 0 for r in ds.records)
    dense = search(get_model("gpt-tiny"), make_cluster("a100", 1), Training(global_batch_size=32), top=50)
    assert {r["expert_tp"] for r in dense.records} == {0}


def test_moe_token_permutation_is_costed_as_megatrons_unfused_dispatcher():
    """Megatron-Core's all-to-all dispatcher (moe_utils.py@core_r0.12.0, moe_permute_fusion off): permute, the
    chunk sort by local expert (only with more than one local expert), unpermute's probability multiply and
    scatter_add: 5R + 3T rows of h (+ 4R when sorting) each way. A dense layer pays none of it; an MoE layer's
    forward and backward each pay exactly moe_permute_s."""
    from models import layer
    km = layer.kernels(make_cluster("h100-sxm-80gb", 1), "bf16")
    one = layer.moe_permute_s(km, 4096, 2, 4096, 1)
    many = layer.moe_permute_s(km, 4096, 2, 4096, 8)
    from models.efficiency import KERNEL_OVERHEAD_S
    bw = (float(layer.moe_permute_s(km, 1e9, 2, 1, 1)) - 6 * KERNEL_OVERHEAD_S) / (2 * (5 * 2e9 + 3e9))
    assert float(many - one) == pytest.approx(2 * 4096 * 4 * 8192 * bw, rel=1e-9)
    a = {"tp": 1, "cp": 1, "ep": 8, "micro_batch_size": 1, "attn_kernel": 0, "flash": True, "flash1": False,
         "sp": False, "recompute": 0}
    f_moe, b_moe = layer.layer_times(MIXTRAL, km, a, moe=True)[:2]
    saved = layer.moe_permute_s
    try:
        layer.moe_permute_s = lambda *args, **kw: 0.0
        f0, b0 = layer.layer_times(MIXTRAL, km, a, moe=True)[:2]
    finally:
        layer.moe_permute_s = saved
    want = float(saved(km, MIXTRAL.seq_len, MIXTRAL.top_k * MIXTRAL.capacity_factor, MIXTRAL.hidden, 1))
    assert float(f_moe - f0) == pytest.approx(want) and float(b_moe - b0) == pytest.approx(want)
