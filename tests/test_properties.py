"""Invariants of the analytical model (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import memory as mem
from models.estimate import estimate, estimate_arrays, plan_arrays
from models.hardware import make_cluster
from models.plan import Plan
from models.transformer import get_model

params = st.floats(min_value=1e6, max_value=1e12)
dps = st.sampled_from([1, 2, 4, 8, 16, 64, 512])


@given(params, dps)
def test_zero_stage_never_raises_model_state_memory(n, dp):
    totals = [sum(mem.model_state_bytes(n, dp, z)) for z in range(4)]
    assert all(a >= b - 1e-6 for a, b in zip(totals, totals[1:]))


@given(params, dps)
def test_doubling_dp_under_zero3_halves_model_states(n, dp):
    assert sum(mem.model_state_bytes(n, 2 * dp, 3)) == pytest.approx(sum(mem.model_state_bytes(n, dp, 3)) / 2)


@given(params, dps)
def test_zero3_per_rank_weights_times_dp_is_total(n, dp):
    w, _, _ = mem.model_state_bytes(n, dp, 3)
    assert w * dp == pytest.approx(2 * n)


MODEL = get_model("llama2-7b")
CLUSTER = make_cluster("h100-sxm-80gb", 4)


@settings(max_examples=40, deadline=None)
@given(tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 4]), mb=st.sampled_from([1, 2, 4]),
       zero=st.integers(0, 3), rc=st.sampled_from(["none", "selective", "full"]), sp=st.booleans())
def test_estimate_is_sane_for_any_valid_plan(tp, pp, mb, zero, rc, sp):
    dp = 32 // (tp * pp)
    plan = Plan(dp=dp, tp=tp, pp=pp, micro_batch_size=mb, global_batch_size=dp * mb * 8, zero_stage=zero,
                recompute=rc, sp=sp)
    e = estimate(MODEL, CLUSTER, plan)
    assert e.step_time_s > 0 and 0 < e.mfu < 1 and e.hfu >= e.mfu - 1e-12
    assert e.step_time_s == pytest.approx(e.compute_s + e.exposed_comm_s + e.bubble_s)
    assert e.memory.total_bytes == pytest.approx(e.peak_memory_bytes)


@settings(max_examples=25, deadline=None)
@given(zero=st.integers(0, 2), tp=st.sampled_from([1, 2, 4]))
def test_higher_zero_stage_never_needs_more_memory(zero, tp):
    base = dict(dp=32 // tp, tp=tp, micro_batch_size=1, global_batch_size=32 // tp * 4)
    lo = estimate(MODEL, CLUSTER, Plan(zero_stage=zero + 1, **base)).peak_memory_bytes
    hi = estimate(MODEL, CLUSTER, Plan(zero_stage=zero, **base)).peak_memory_bytes
    assert lo <= hi + 1


def test_recompute_trades_memory_for_time():
    base = dict(dp=8, tp=4, micro_batch_size=2, global_batch_size=64)
    none = estimate(MODEL, CLUSTER, Plan(recompute="none", **base))
    full = estimate(MODEL, CLUSTER, Plan(recompute="full", **base))
    assert full.memory.activations_bytes < none.memory.activations_bytes
    assert full.step_time_s > none.step_time_s


def test_tp1_has_no_tp_traffic_and_more_dp_comm_scales():
    e = estimate(MODEL, CLUSTER, Plan(dp=32, tp=1, micro_batch_size=1, global_batch_size=64))
    assert e.exposed_comm_by_kind_s["tp"] == 0.0


def test_array_path_equals_scalar_path():
    plans = [Plan(dp=32 // (t * p), tp=t, pp=p, micro_batch_size=m, global_batch_size=32 // (t * p) * m * 4,
                  zero_stage=z) for t in (1, 2, 8) for p in (1, 4) for m in (1, 2) for z in (0, 3)]
    cols = {k: np.array([plan_arrays(p)[k] for p in plans]) for k in plan_arrays(plans[0])}
    arr = estimate_arrays(MODEL, CLUSTER, "bf16", **cols)
    for i, p in enumerate(plans):
        e = estimate(MODEL, CLUSTER, p)
        assert arr["step_time_s"][i] == pytest.approx(e.step_time_s, rel=1e-9)
        assert arr["peak_memory_bytes"][i] == pytest.approx(e.peak_memory_bytes, rel=1e-9)


def test_overlapped_ep_comm_only_hides_what_compute_covers():
    """DualPipe-style overlap (DeepSeek-V3 Sec. 3.2.1) never makes EP traffic negative and never adds time."""
    from models.transformer import get_model as gm
    m, c = gm("mixtral-8x22b"), make_cluster("h100-sxm-80gb", 8)
    base = dict(dp=8, tp=2, pp=4, ep=8, micro_batch_size=1, global_batch_size=256, sp=True, zero_stage=1)
    plain = estimate(m, c, Plan(**base))
    hidden = estimate(m, c, Plan(overlap_ep_comm=True, **base))
    assert plain.exposed_comm_by_kind_s["ep"] > 0
    assert 0 <= hidden.exposed_comm_by_kind_s["ep"] < plain.exposed_comm_by_kind_s["ep"]
    assert hidden.step_time_s < plain.step_time_s and hidden.compute_s == pytest.approx(plain.compute_s)


def test_placement_decides_which_group_uses_nvlink():
    """Rank placement: with dp innermost, the tp group spans nodes and TP traffic slows; strides nest."""
    from models.estimate import placement_strides
    from models.plan import PLACEMENTS
    m, c = get_model("llama3-70b"), make_cluster("h100-sxm-80gb", 8)
    base = dict(dp=8, tp=4, pp=2, micro_batch_size=1, global_batch_size=64, sp=True, zero_stage=1, recompute="full")
    megatron = estimate(m, c, Plan(**base))
    dp_inner = estimate(m, c, Plan(placement="dp,tp,cp,pp", **base))
    assert dp_inner.exposed_comm_by_kind_s["tp"] > 3 * megatron.exposed_comm_by_kind_s["tp"]
    assert dp_inner.exposed_comm_by_kind_s["dp"] <= megatron.exposed_comm_by_kind_s["dp"]
    assert any("spans more than one NVLink domain" in w for w in dp_inner.warnings)
    for code in range(len(PLACEMENTS)):
        strides = sorted(int(s) for s in placement_strides(code, 4, 2, 8, 2))
        assert strides[0] == 1 and all(b % a == 0 for a, b in zip(strides, strides[1:]))
