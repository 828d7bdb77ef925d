"""clustersim public API.

    from simulator import estimate, Plan, Cluster, Transformer
"""

from models.estimate import PlanError, StepEstimate, estimate, estimate_arrays
from models.hardware import GPUS, NODES, Cluster, GpuSpec, NodeSpec, get_gpu, make_cluster
from models.plan import DEFAULT_PLACEMENT, INNERMOST_PLACEMENTS, PLACEMENTS, Plan, Recompute, Schedule, ZeroStage, check_plan
from models.transformer import PRESETS, Transformer, get_model, load_hf_config, resolve_model

__all__ = ["estimate", "estimate_arrays", "StepEstimate", "PlanError", "Plan", "Cluster", "Transformer",
           "GpuSpec", "NodeSpec", "make_cluster", "get_gpu", "get_model", "load_hf_config", "resolve_model",
           "check_plan", "ZeroStage", "Recompute", "Schedule", "PRESETS", "GPUS", "NODES", "PLACEMENTS",
           "DEFAULT_PLACEMENT", "INNERMOST_PLACEMENTS"]

# `simulate` shares its name with the module simulator/simulate.py: importing the module would
# rebind the package attribute to the module, hiding the function, so it is imported eagerly here.
from simulator.simulate import SimResult, simulate  # noqa: E402

__all__ += ["simulate", "SimResult"]

# Names provided by later modules, imported on first use so `import simulator` stays light.
_LAZY = {
    "search": "simulator.planner", "run_scenario": "simulator.scenario", "load_scenario": "simulator.scenario",
    "time_to_train": "models.cost",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
