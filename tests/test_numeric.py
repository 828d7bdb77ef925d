"""models.numeric (issue 19): the number branch of each helper gives what numpy gives, element by element,
and the caches pass arrays through and hold Python numbers."""
from __future__ import annotations

import numpy as np
import pytest

from models import numeric as num

XS = [0, 1, 2, 3, -1.5, 2.5, True, False, np.float64(1.25), np.int64(3), np.bool_(True)]


@pytest.mark.parametrize("x", XS)
@pytest.mark.parametrize("y", [0, 2, -0.5, 7.0, np.float64(2.5)])
def test_number_branch_matches_numpy(x, y):
    assert num.maximum(x, y) == np.maximum(x, y)
    assert num.minimum(x, y) == np.minimum(x, y)
    assert num.where(x, y, 4.0) == np.where(x, y, 4.0)
    assert num.where(x > 1, x, y) == np.where(np.asarray(x) > 1, x, y)


@pytest.mark.parametrize("x", [0.0, 0.2, 1.0, 5.5, 1e9, 3])
def test_ceil_log2_float(x):
    assert num.ceil(x) == np.ceil(x) and isinstance(num.ceil(x), float)
    if x > 0:
        assert num.log2(x) == pytest.approx(float(np.log2(x)), rel=1e-15)
    assert num.as_float(x) == float(np.asarray(x, dtype=float))


def test_arrays_take_numpy():
    a = np.array([0, 1, 2, 3])
    np.testing.assert_array_equal(num.where(a > 1, a, -1), np.where(a > 1, a, -1))
    np.testing.assert_array_equal(num.maximum(a, 2), np.maximum(a, 2))
    np.testing.assert_array_equal(num.minimum(2.5, a), np.minimum(2.5, a))
    np.testing.assert_array_equal(num.ceil(a / 2), np.ceil(a / 2))
    np.testing.assert_array_equal(num.logical_not(a > 1), ~(a > 1))
    assert num.any_nonzero(a) and not num.any_nonzero(np.zeros(3))
    assert num.logical_not(True) is False and num.logical_not(0) is True   # not ~True (-2)


def test_where_with_number_condition_is_not_broadcast():
    """A number condition picks its branch as it is; the caller's arithmetic broadcasts it."""
    a = np.arange(3.0)
    assert num.where(True, 1.0, a) == 1.0
    np.testing.assert_array_equal(num.where(False, 1.0, a), a)


@pytest.mark.parametrize("z", [0, 1, 2, 3, 7])
def test_by_stage_and_select_match_np_select(z):
    branches = (lambda: 10.0, lambda: 11.0, lambda: 12.0, lambda: 13.0)
    ref = float(np.select([np.asarray(z) == i for i in range(3)], [10.0, 11.0, 12.0], 13.0))
    assert num.by_stage(z, branches) == ref
    assert num.select([z == 0, z == 1, z == 2], [10.0, 11.0, 12.0], 13.0) == ref
    zs = np.array([0, 1, 2, 3, 7])
    np.testing.assert_array_equal(num.by_stage(zs, branches), [10.0, 11.0, 12.0, 13.0, 13.0])


def test_by_stage_runs_only_its_branch_for_one_number():
    ran = []
    branches = tuple((lambda i=i: ran.append(i) or float(i)) for i in range(4))
    assert num.by_stage(2, branches) == 2.0 and ran == [2]


def test_memo_caches_numbers_and_passes_arrays():
    calls = []

    def f(x, k):
        calls.append(x)
        return np.asarray(x) * k

    g = num.memo(f)
    assert g(3, 2) == 6 and type(g(3, 2)) is int and len(calls) == 1   # a Python number, computed once
    np.testing.assert_array_equal(g(np.array([1, 2]), 2), [2, 4])      # arrays: not cached
    assert len(calls) == 2
    num.clear_plan_caches()
    g(3, 2)
    assert len(calls) == 3


def test_per_spec_by_identity():
    calls = []
    f = num.per_spec(lambda spec: calls.append(spec) or len(calls))

    class Spec:
        def __hash__(self):
            raise AssertionError("per_spec must not hash the spec")
    s, t = Spec(), Spec()
    assert f(s) == f(s) == 1 and f(t) == 2 and len(calls) == 2


def test_item():
    assert type(num.item(np.float64(1.5))) is float and type(num.item(np.asarray(2))) is int
    a = np.arange(2)
    assert num.item(a) is a
