"""Pipeline schedules executed by the engine with communication free, against closed forms."""

import pytest

from models.parallel.pipeline import bubble_ratio
from simulator.des import engine
from simulator.des.program import uniform_program
from simulator.des.schedules import SCHEDULES, dependency, stage_orders

TOLERANCE = 1e-9


def makespan(*args, **kw) -> float:
    return max(engine.run(uniform_program(*args, **kw), {}).end_s)


def test_1f1b_makespan_closed_form():
    # Narayanan et al. SC'21 Sec. 2.2: (m + p - 1)(t_f + t_b); p=4, m=8, t_f=1, t_b=2 -> 33
    assert makespan("1f1b", 4, 8, t_f_s=1.0, t_b_s=2.0) == pytest.approx(33.0, abs=TOLERANCE)


@pytest.mark.parametrize("p,m", [(2, 2), (4, 8), (8, 16), (3, 7)])
def test_gpipe_and_1f1b_same_makespan(p, m):
    expected = (m + p - 1) * 3.0
    assert makespan("1f1b", p, m) == pytest.approx(expected)
    assert makespan("gpipe", p, m) == pytest.approx(expected)


@pytest.mark.parametrize("p,m,v", [(4, 8, 2), (4, 16, 4), (8, 16, 3), (2, 4, 2)])
def test_interleaved_bubble_is_published(p, m, v):
    # SC'21 Sec. 2.2.2: bubble / ideal = (p - 1) / (v m)
    ideal = m * 3.0
    bubble = makespan("interleaved", p, m, v) - ideal
    assert bubble / ideal == pytest.approx((p - 1) / (v * m))
    assert bubble / ideal == pytest.approx(float(bubble_ratio(p, m, v, 2)))


@pytest.mark.parametrize("p,m", [(4, 8), (4, 16), (8, 32)])
def test_zb_h1_bubble_a_third_of_1f1b(p, m):
    # Qi et al. 2023 Sec. 3.1: ZB-H1 bubble (p-1)(t_F + t_B - t_W) vs 1F1B (p-1)(t_F + t_B + t_W);
    # with t_F = t_B = t_W = 1 that is a third.
    ideal = m * 3.0
    b_1f1b = makespan("1f1b", p, m, t_f_s=1.0, t_b_s=2.0) - ideal
    b_zb = makespan("zb-h1", p, m, t_f_s=1.0, t_b_s=2.0, t_w_s=1.0) - ideal
    assert b_zb == pytest.approx((p - 1) * (1 + 1 - 1))
    assert b_zb / b_1f1b == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_op_once_and_dependencies_exist(name):
    p, m, v = 4, 8, (2 if name == "interleaved" else 1)
    orders = stage_orders(name, p, m, v)
    phases = ("F", "B", "W") if name == "zb-h1" else ("F", "B")
    for s, ops in enumerate(orders):
        assert sorted(ops) == sorted((ph, j, c) for ph in phases for j in range(m) for c in range(v))
        for op in ops:
            dep = dependency(op, s, p, v)
            if dep is not None:
                assert dep[1] in orders[dep[0]]


def test_1f1b_holds_at_most_p_minus_stage_microbatches():
    # SC'21 Sec. 2.2: 1F1B keeps p - s micro-batches of activations in flight; GPipe keeps m
    p, m = 4, 8
    for name, bound in (("1f1b", lambda s: p - s), ("gpipe", lambda s: m)):
        for s, ops in enumerate(stage_orders(name, p, m)):
            live = peak = 0
            for ph, _, _ in ops:
                live += 1 if ph == "F" else -1
                peak = max(peak, live)
            assert peak == bound(s)


def test_bad_schedule_name():
    with pytest.raises(ValueError, match="schedule"):
        stage_orders("round-robin", 4, 8)
    with pytest.raises(ValueError, match="divisible by pp"):
        stage_orders("interleaved", 4, 6, 2)
