"""Golden outputs: every scenarios/*.yaml run through the CLI must reproduce scenarios/expected/<name>.csv.

Numbers are compared with a relative tolerance and a readable diff on failure (SimPy docs/conftest.py
style). After an intended change to the model, regenerate with

    CLUSTERSIM_REGEN_GOLDEN=1 python -m pytest tests/test_scenario_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
EXPECTED = ROOT / "scenarios" / "expected"
RTOL = 1e-6          # the model is deterministic; this only absorbs float formatting
MAX_DIFF_LINES = 25


def diff_frames(got: pd.DataFrame, want: pd.DataFrame, rtol: float = RTOL) -> list[str]:
    """Human-readable differences: missing/extra columns, row counts, then cell by cell."""
    out = []
    if set(got.columns) != set(want.columns):
        out.append(f"columns: missing {sorted(set(want.columns) - set(got.columns))}, "
                   f"extra {sorted(set(got.columns) - set(want.columns))}")
    if len(got) != len(want):
        out.append(f"rows: got {len(got)}, expected {len(want)}")
    for col in [c for c in want.columns if c in got.columns]:
        for i in range(min(len(got), len(want))):
            g, w = got[col].iloc[i], want[col].iloc[i]
            if _same(g, w, rtol):
                continue
            label = want["plan_id"].iloc[i] if "plan_id" in want.columns else i
            rel = ""
            if _num(g) and _num(w) and float(w) != 0:
                rel = f" ({(float(g) - float(w)) / abs(float(w)):+.3%})"
            out.append(f"row {i} [{label}] {col}: got {_fmt(g)}, expected {_fmt(w)}{rel}")
    return out


def _fmt(x) -> str:
    return repr(float(x)) if _num(x) else repr(str(x))


def _num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _same(g, w, rtol) -> bool:
    if _num(g) and _num(w):
        if np.isnan(float(g)) and np.isnan(float(w)):
            return True
        return bool(np.isclose(float(g), float(w), rtol=rtol, atol=0.0))
    return str(g) == str(w)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_matches_golden(scenario: Path, tmp_path: Path):
    out = tmp_path / f"{scenario.stem}.csv"
    assert main(["run", str(scenario), "-o", str(out), "--quiet"]) == 0
    expected = EXPECTED / f"{scenario.stem}.csv"
    if os.environ.get("CLUSTERSIM_REGEN_GOLDEN"):
        EXPECTED.mkdir(parents=True, exist_ok=True)
        expected.write_bytes(out.read_bytes())
        pytest.skip(f"regenerated {expected.relative_to(ROOT)}")
    assert expected.exists(), f"no golden file {expected}; run with CLUSTERSIM_REGEN_GOLDEN=1"
    diffs = diff_frames(_read(out), _read(expected))
    assert not diffs, f"{scenario.name} differs from {expected.name} ({len(diffs)} differences):\n" + "\n".join(
        diffs[:MAX_DIFF_LINES])


def test_diff_is_readable():
    want = pd.DataFrame({"plan_id": ["a", "b"], "step_time_s": [1.0, 2.0]})
    got = pd.DataFrame({"plan_id": ["a", "b"], "step_time_s": [1.0, 2.1]})
    lines = diff_frames(got, want)
    assert lines == ["row 1 [b] step_time_s: got 2.1, expected 2.0 (+5.000%)"]
    assert diff_frames(want, want) == []
