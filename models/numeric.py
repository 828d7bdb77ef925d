"""Number-or-array versions of the numpy calls the cost formulas use (issue 19).

The formulas of models/ take plan fields as numpy arrays (a planner grid) or as plain numbers (one
plan). numpy on one number costs ~0.3-1 us a call (it wraps it in a 0-d array) against ~30 ns for
float arithmetic, and one estimate makes a few hundred such calls; these helpers run the same
operation in Python when every argument is one number and call numpy otherwise, so one formula
serves both (one cost path). Numbers are Python and numpy scalars; a 0-d array takes the numpy branch.

>>> where(True, 1.5, 0.0), maximum(2, 3.0), select([False, True], [1.0, 2.0], 3.0)
(1.5, 3.0, 2.0)
>>> [float(x) for x in where(np.array([True, False]), 1.5, 0.0)]
[1.5, 0.0]
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Types taken as one number (a 0-d ndarray is not: it takes the numpy branch).
NUMBER_TYPES = frozenset((int, float, bool, np.float64, np.float32, np.int64, np.int32, np.int16, np.int8,
                          np.uint64, np.uint32, np.uint16, np.uint8, np.bool_))


_NUMPY_SCALAR_TYPES = frozenset(t for t in NUMBER_TYPES if issubclass(t, np.generic))


def is_num(x) -> bool:
    """True when ``x`` is one number (Python or numpy scalar)."""
    return type(x) in NUMBER_TYPES


def nums(*xs) -> bool:
    """True when every argument is one number."""
    for x in xs:
        if type(x) not in NUMBER_TYPES:
            return False
    return True


def item(x):
    """A numpy scalar or 0-d array as its Python number; anything else unchanged."""
    t = type(x)
    if t is np.ndarray:
        return x.item() if x.ndim == 0 else x
    return x.item() if t in _NUMPY_SCALAR_TYPES else x


def arr(x):
    """``x`` itself when it is one number, else np.asarray(x) (lists in doctests and callers)."""
    return x if type(x) in NUMBER_TYPES else np.asarray(x)


def as_float(x):
    """float(x) for one number, else a float array (np.asarray(x, dtype=float))."""
    return float(x) if type(x) in NUMBER_TYPES else np.asarray(x, dtype=float)


def as_bool(x):
    """bool(x) for one number, else a bool array."""
    return bool(x) if type(x) in NUMBER_TYPES else np.asarray(x, dtype=bool)


def logical_not(x):
    """not x for one number (``~`` on a Python bool is -2), else ~(bool array)."""
    return (not x) if type(x) in NUMBER_TYPES else ~np.asarray(x, dtype=bool)


def any_nonzero(x) -> bool:
    """Whether any element of ``x`` is non-zero (np.any(x != 0))."""
    return bool(x != 0) if type(x) in NUMBER_TYPES else bool(np.any(np.asarray(x) != 0))


def where(cond, x, y):
    """np.where(cond, x, y); ``x if cond else y`` when ``cond`` is one number (then not broadcast against
    the other branch: the composition's arithmetic broadcasts it, and its callers broadcast the results)."""
    if type(cond) in NUMBER_TYPES:
        return x if cond else y
    return np.where(cond, x, y)


def maximum(x, y):
    """np.maximum(x, y); the larger number when both are numbers."""
    if type(x) in NUMBER_TYPES and type(y) in NUMBER_TYPES:
        return y if y > x else x
    return np.maximum(x, y)


def minimum(x, y):
    """np.minimum(x, y); the smaller number when both are numbers."""
    if type(x) in NUMBER_TYPES and type(y) in NUMBER_TYPES:
        return y if y < x else x
    return np.minimum(x, y)


def ceil(x):
    """np.ceil(x) (a float for one number)."""
    return float(math.ceil(x)) if type(x) in NUMBER_TYPES else np.ceil(x)


def log2(x):
    """np.log2(x) (math.log2 for one number)."""
    return math.log2(x) if type(x) in NUMBER_TYPES else np.log2(x)


def select(conds, choices, default):
    """np.select(conds, choices, default); the first choice whose condition holds when all are numbers."""
    if all(type(c) in NUMBER_TYPES for c in conds) and all(type(v) in NUMBER_TYPES for v in choices) \
            and type(default) in NUMBER_TYPES:
        for c, v in zip(conds, choices):
            if c:
                return v
        return default
    return np.select(conds, choices, default)


def zeros_like(x):
    """0.0 for one number, else np.zeros_like(x)."""
    return 0.0 if type(x) in NUMBER_TYPES else np.zeros_like(x)


def per_spec(fn):
    """``fn(spec)`` computed once per spec object (a frozen model or cluster spec): keyed by identity (a
    frozen dataclass hashes all its fields, ~1 us), holding the spec so that its id is not reused."""
    cache: dict = {}

    @functools.wraps(fn)
    def cached(spec):
        hit = cache.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        value = fn(spec)
        if len(cache) >= 256:
            cache.clear()
        cache[id(spec)] = (spec, value)
        return value
    cached.cache = cache
    return cached


# The caches keyed on plan values (memo's, the kernel model's times by shape): clear_plan_caches() empties them,
# so that a benchmark can time an estimate of a plan never seen (benchmarks/bench_estimate.py).
_PLAN_CACHES: list = []


def plan_cache(cache: dict) -> dict:
    """Register ``cache`` (keyed on plan values) with clear_plan_caches; returns it."""
    _PLAN_CACHES.append(cache)
    return cache


def clear_plan_caches() -> None:
    """Empty every cache keyed on plan values (the per-model and per-cluster ones stay)."""
    for cache in _PLAN_CACHES:
        cache.clear()


def memo(fn):
    """``fn`` cached on its arguments when they are hashable (codes, names, numbers; its value as a Python
    number when it is one); arrays pass through. For pure functions of a plan's codes and small integers
    whose numpy formulas cost microseconds on one number (offload mask bits, optimizer bytes per parameter,
    layers per pipeline stage)."""
    cache: dict = plan_cache({})

    @functools.wraps(fn)
    def cached(*args):
        try:
            return cache[args]
        except KeyError:
            value = fn(*args)
            value = cache[args] = tuple(item(v) for v in value) if type(value) is tuple else item(value)
            if len(cache) > 4096:
                cache.clear()
            return value
        except TypeError:   # an unhashable argument (an array)
            return fn(*args)
    return cached


def by_stage(index, branches):
    """np.select([index == 0, index == 1, ...], [b() for b in branches[:-1]], branches[-1]()): the value of
    branch ``index`` (the last branch for any other index), each branch a function; for one number only its
    own branch is computed (a ZeRO stage's formula, models.parallel.zero).

    >>> by_stage(1, (lambda: 0.0, lambda: 1.0, lambda: 2.0)), [float(x) for x in by_stage(np.array([0, 5]),
    ...                                                        (lambda: 0.0, lambda: 1.0, lambda: 2.0))]
    (1.0, [0.0, 2.0])
    """
    if type(index) in NUMBER_TYPES:
        for i in range(len(branches) - 1):
            if index == i:
                return branches[i]()
        return branches[-1]()
    index = np.asarray(index)
    return np.select([index == i for i in range(len(branches) - 1)], [b() for b in branches[:-1]], branches[-1]())
