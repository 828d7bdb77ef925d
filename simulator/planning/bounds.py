"""Bounds on the work one search or one scenario may ask for, checked before any of it: the
dashboard, the CLI and the Python API all go through them (planner.search, scenario.run_scenario)."""

from __future__ import annotations

# Most grid points one search may score (the 405B default search is ~3.6M points, ~1 s per 3.6M on a
# 2-core box), and most (tp, cp, pp, nodes) candidates it may enumerate before that.
MAX_SEARCH_POINTS = 50_000_000
MAX_SEARCH_LAYOUTS = 1_000_000


def check_search_candidates(model, cluster, cons, where: str = "search") -> None:
    """ValueError when enumerating the (nodes, tp, cp, pp) candidates alone would exceed MAX_SEARCH_LAYOUTS
    (cheap: counts, no layout is built)."""
    nodes = cons.num_nodes or (cluster.num_nodes,)
    per_node = cluster.gpus_per_node
    raw = len(nodes) * len(cons.tp or range(11)) * len(cons.cp or range(6)) * max(
        len(cons.pp) if cons.pp else 0, max(sum(1 for d in range(1, min(n * per_node, 1 << 16) + 1)
                                                 if (n * per_node) % d == 0) for n in nodes[:64]))
    if raw > MAX_SEARCH_LAYOUTS:
        raise ValueError(f"{where}: {raw:,} (nodes, tp, cp, pp) combinations to enumerate; more than the "
                         f"{MAX_SEARCH_LAYOUTS:,} one search may try: give fewer values")


def check_search_points(n_layouts: int, space, model, cluster, training, cons, where: str = "search") -> int:
    """The grid's size (valid layouts x points per layout); ValueError when no layout is valid or the grid
    exceeds MAX_SEARCH_POINTS."""
    import math
    nodes = cons.num_nodes or (cluster.num_nodes,)
    points = n_layouts * space.points_per_layout
    if n_layouts == 0:
        raise ValueError(f"{where}: no valid plan: no (tp, pp, cp, dp) layout with the allowed values divides "
                         f"{', '.join(str(n * cluster.gpus_per_node) for n in nodes)} GPUs, the heads and layers of "
                         f"{model.name} and the global batch of {training.global_batch_size}; allow other values")
    if points > MAX_SEARCH_POINTS:
        raise ValueError(f"{where}: {points:,} grid points ({n_layouts:,} layouts x "
                         f"{math.prod(len(v) for _, v in space.axes) * len(space.sched_vpp):,} choices); more than the "
                         f"{MAX_SEARCH_POINTS:,} one search may score: give fewer values or node counts")
    return points


def check_search_size(model, cluster, training, cons, where: str = "search") -> int:
    """Grid points the planner would score for ``cons`` (exactly: valid layouts x points per layout);
    ValueError naming the count and the limit above MAX_SEARCH_POINTS, or when no layout is valid."""
    import dataclasses

    from simulator.planning.grid import layouts, search_space
    check_search_candidates(model, cluster, cons, where)
    nodes = cons.num_nodes or (cluster.num_nodes,)
    n_layouts = sum(len(layouts(model, dataclasses.replace(cluster, num_nodes=n), training, cons)) for n in nodes)
    return check_search_points(n_layouts, search_space(model, cons), model, cluster, training, cons, where)


def check_scenario_size(scn, mode: str | None = None) -> None:
    """Refuse, before the work, a scenario whose simulations or search would not end in reasonable time:
    every simulated plan within MAX_SIM_OPS (simulate.check_simulation_size), the search section's grid
    within MAX_SEARCH_POINTS. Rows whose plan is invalid are left to the run (they become error rows)."""
    from simulator.des.bounds import check_simulation_size
    from simulator.planning.planner import Constraints
    from simulator.planning.scenario import build_cluster_spec, build_model, plan_from_spec, plan_rows, training_of
    simulated = (mode or scn.mode).lower() != "estimate"
    if not simulated and scn.search is None:
        return
    try:
        model, cluster = build_model(scn), build_cluster_spec(scn)
    except ValueError:
        return  # run_scenario reports it with the file's line
    if simulated:
        for src, i, spec in plan_rows(scn):
            try:
                plan = plan_from_spec({k: v for k, v in spec.items() if k != "name"}, model, cluster, scn.training)
            except ValueError:
                continue
            check_simulation_size(plan, f"{scn.source}: {src}[{i}]")
    if scn.search is not None:
        try:
            cons = Constraints(**{k: v for k, v in scn.search.model_dump().items()
                                  if k in Constraints.__dataclass_fields__})
        except ValueError:
            return
        check_search_size(model, cluster, training_of(scn), cons, where=f"{scn.source}: search")
