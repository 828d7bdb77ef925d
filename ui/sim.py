"""Cached, picklable views of the discrete-event simulator's result (simulator.des.simulate, loaded
lazily so the dashboard runs without it), and link utilisation derived from its streams."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import simulator as cs
from ui import figures

MISSING = ("The discrete-event simulator (`simulator.des.simulate`) is not available in this installation, "
           "so there is no simulated timeline yet. The analytical views on *Compare plans* work without it.")
COMM_KINDS = ("tp", "cp", "ep", "pp", "dp")


def available() -> bool:
    return callable(getattr(cs, "simulate", None))


def busy_time_s(starts, ends) -> float:
    """Length of the union of intervals [start, end), seconds.

    >>> busy_time_s([0, 1, 5], [2, 3, 6])
    4.0
    """
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts)
    s, e = np.asarray(starts, float)[order], np.asarray(ends, float)[order]
    reach = np.maximum.accumulate(e)
    new = np.concatenate([[True], s[1:] > reach[:-1]])
    idx = np.flatnonzero(new)
    last = np.concatenate([idx[1:] - 1, [len(s) - 1]])
    return float(np.sum(reach[last] - s[idx]))


def stream_busy(timeline: pd.DataFrame, step_s: float) -> dict:
    """{(stage, kind): fraction of the iteration that stage's communication of ``kind`` is in flight}."""
    out = {}
    tl = timeline[timeline["kind"].isin(COMM_KINDS)] if "kind" in timeline.columns else timeline.iloc[:0]
    for (stage, kind), g in tl.groupby(["stage", "kind"]):
        out[(int(stage), str(kind))] = busy_time_s(g["start_s"].to_numpy(), g["end_s"].to_numpy()) / step_s
    return out


def crosses_nodes(plan, gpus_per_node: int) -> dict:
    """Which communication kinds leave the node under Megatron placement (tp innermost, pp outermost)."""
    tp, cp, dp, ep = plan.tp, plan.cp, plan.dp, plan.ep
    return {"tp": tp > gpus_per_node, "cp": tp * cp > gpus_per_node, "ep": tp * ep > gpus_per_node,
            "dp": tp * cp * dp > gpus_per_node, "pp": tp * cp * dp >= gpus_per_node}


def link_utilisation(graph, busy: dict, plan, gpus_per_node: int) -> dict:
    """{(u, v): busy fraction} for the edges of a topology graph (simulator.des.topology names:
    gpu{r}, nvsw{d}, nic{r}, leaf*, spine*): every GPU takes its pipeline stage's values (the
    simulator runs one representative GPU per stage); NVLink carries the kinds that stay in the
    node, the NIC and the fabric above it the kinds that leave it."""
    inter = crosses_nodes(plan, gpus_per_node)
    per_stage = max(1, plan.tp * plan.cp * plan.dp)
    util = {}
    for u, v, data in graph.edges(data=True):
        gpu = next((n for n in (u, v) if str(n).startswith(("gpu", "nic"))), None)
        if gpu is None:
            continue
        stage = int(str(gpu)[3:]) // per_stage
        kind = data.get("kind")
        if kind == "nvlink":
            kinds = [k for k in COMM_KINDS if not inter[k]]
        else:
            kinds = [k for k in COMM_KINDS if inter[k]]
        util[(u, v)] = min(1.0, sum(busy.get((stage, k), 0.0) for k in kinds))
    # fabric uplinks: the busiest of the NICs under them (an upper bound on the share they carry)
    for u, v, data in graph.edges(data=True):
        if data.get("kind") == "uplink":
            leaf = u if str(u).startswith("leaf") else v
            below = [util.get((a, b), 0.0) for a, b in graph.edges(leaf) if str(b).startswith("nic") or
                     str(a).startswith("nic")]
            util[(u, v)] = max(below, default=0.0)
    return util


@st.cache_data(max_entries=8, show_spinner=False)
def simulated(model, cluster, plan) -> dict:
    """{"timeline" (the rows the Gantt can draw), "ranks", "ops", "step_time_s", "busy"} or {"error": msg}."""
    simulate = cs.simulate
    try:
        res = simulate(model, cluster, plan)
    except ValueError as e:  # PlanError is a ValueError
        return {"error": "; ".join(getattr(e, "errors", [str(e)]))}
    tl = res.timeline
    step = float(res.step_time_s)
    ranks = figures.pick_ranks(tl) if len(tl) else []
    return {"timeline": tl[tl["rank"].isin(ranks)].reset_index(drop=True), "ranks": int(tl["rank"].nunique()),
            "ops": int(len(tl)), "step_time_s": step, "busy": stream_busy(tl, step) if len(tl) else {},
            "wall_s": float(getattr(res, "wall_s", 0.0)),
            "breakdown": {"compute_s": float(res.compute_s), "bubble_s": float(res.bubble_s),
                          **{f"{k}_s": float(v) for k, v in res.exposed_comm_by_kind_s.items()}}}
