import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEV_RUNS = ROOT.parent / "shared" / "validation" / "dev_runs.yaml"


@pytest.fixture
def dev_runs_path():
    if not DEV_RUNS.exists():
        pytest.skip("../shared/validation/dev_runs.yaml is not beside this checkout")
    return DEV_RUNS


@pytest.fixture
def dev_runs_2_path():
    path = DEV_RUNS.with_name("dev_runs_2.yaml")
    if not path.exists():
        pytest.skip("../shared/validation/dev_runs_2.yaml is not beside this checkout")
    return path
