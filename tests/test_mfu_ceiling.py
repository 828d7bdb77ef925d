"""Issue 14: the planner's best dense BF16 H100 plan must not predict an MFU above the best published run
of the same model and cluster (NVIDIA DGX Cloud NeMo 25.04 records of dev_runs_2.yaml) by more than the
model's own median error on Hopper records (benchmarks/mfu_vs_published.py, shown in the README)."""

import importlib.util
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "mfu_vs_published.py"


def _bench():
    spec = importlib.util.spec_from_file_location("mfu_vs_published", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def bench_and_runs(dev_runs_path):
    return _bench(), yaml.safe_load((dev_runs_path.parent / "dev_runs_2.yaml").read_text())


@pytest.mark.parametrize("label,record_id", _bench().RECORDS, ids=[r[0] for r in _bench().RECORDS])
def test_best_plan_mfu_under_published_plus_the_models_error(bench_and_runs, label, record_id):
    mod, runs = bench_and_runs
    margin = mod.hopper_margin(runs)
    assert 0 < margin < 0.25
    c = mod.compare(runs, record_id, margin)
    assert c["ok"], f"{label}: best plan {c['best_plan']} MFU {c['best_mfu']:.1%} > ceiling {c['ceiling']:.1%}"
