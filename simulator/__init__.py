"""clustersim public API: what the CLI, the dashboard and users import.

    from simulator import estimate, Plan, make_cluster, get_model

The analytical names load with numpy only. The discrete-event simulator (pandas, simpy,
networkx), the planner and the scenario runner load on first use, so ``import simulator``
stays light (PEP 562 module ``__getattr__``).
"""

from models.estimate import PlanError, StepEstimate, estimate, estimate_arrays
from models.fields import Opt, default_of, field_type, help_text, option, options
from models.hardware import GPUS, NODES, Cluster, GpuSpec, NodeSpec, get_gpu, make_cluster
from models.hf_config import load_hf_config
from models.inputs import PLAN_FIELDS, SEARCH_AXES, ClusterInputs, Inputs, Training, build_inputs, resolve_plan
from models.plan import (
    DEFAULT_PLACEMENT,
    INNERMOST_PLACEMENTS,
    PLACEMENTS,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    check_plan,
    user_value,
)
from models.transformer import PRESETS, Transformer, get_model, resolve_model

# name -> the submodule that defines it; loaded by __getattr__ on first use
_LAZY = {
    "simulate": "des", "SimResult": "des", "build_topology": "des",
    "search": "planning", "Constraints": "planning", "SearchResult": "planning", "OBJECTIVES": "planning",
    "evaluate_plan": "planning", "explain": "planning", "plan_fields": "planning",
    "load_scenario": "planning", "run_scenario": "planning", "parse_scenario": "planning",
    "ScenarioError": "planning", "build_model": "planning", "build_cluster_spec": "planning",
    "training_of": "planning", "plan_rows": "planning",
    "time_to_train": "cost", "export_plan": "export", "WRITER_FRAMEWORKS": "export",
    "predict_runs": "validation",
}

__all__ = ["estimate", "estimate_arrays", "StepEstimate", "PlanError", "Plan", "Cluster", "Transformer",
           "GpuSpec", "NodeSpec", "make_cluster", "get_gpu", "get_model", "load_hf_config", "resolve_model",
           "check_plan", "ZeroStage", "Recompute", "Schedule", "PRESETS", "GPUS", "NODES", "PLACEMENTS",
           "DEFAULT_PLACEMENT", "INNERMOST_PLACEMENTS", "user_value", "Training", "ClusterInputs", "Inputs", "build_inputs",
           "resolve_plan", "PLAN_FIELDS", "SEARCH_AXES", "Opt", "option", "options", "help_text", "field_type",
           "default_of", *_LAZY]


def _load(group: str) -> dict:
    """The lazily loaded names of one group (plain imports: no import_module)."""
    if group == "des":
        from simulator.des.simulate import SimResult, simulate
        from simulator.des.topology import build_topology
        return {"simulate": simulate, "SimResult": SimResult, "build_topology": build_topology}
    if group == "planning":
        from simulator.planning import planner, scenario
        return {"search": planner.search, "Constraints": planner.Constraints, "SearchResult": planner.SearchResult,
                "OBJECTIVES": planner.OBJECTIVES, "evaluate_plan": planner.evaluate_plan,
                "explain": planner.explain, "plan_fields": planner.plan_fields,
                "load_scenario": scenario.load_scenario, "run_scenario": scenario.run_scenario,
                "parse_scenario": scenario.parse_scenario, "ScenarioError": scenario.ScenarioError,
                "build_model": scenario.build_model, "build_cluster_spec": scenario.build_cluster_spec,
                "training_of": scenario.training_of, "plan_rows": scenario.plan_rows}
    if group == "export":
        from models.export import WRITER_FRAMEWORKS, export_plan
        return {"export_plan": export_plan, "WRITER_FRAMEWORKS": WRITER_FRAMEWORKS}
    if group == "cost":
        from models.cost import time_to_train
        return {"time_to_train": time_to_train}
    from simulator.validation.published import predict_runs
    return {"predict_runs": predict_runs}


def __getattr__(name: str):
    if name in _LAZY:
        found = _load(_LAZY[name])
        globals().update(found)
        if name in found:
            return found[name]
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
