"""Plotly figure builders shared by the dashboard and the CLI.

Each builder takes plain data (a tidy pandas DataFrame, or a dict of StepEstimates via the
``*_frame`` helpers) and returns a ``plotly.graph_objects.Figure``; none of them touches
Streamlit. Units: seconds and bytes inside, GiB / ms / USD only on axis labels.
"""

from __future__ import annotations

import math
import re

import networkx as nx
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

# The Gantt timeline (ui/figures_timeline.py), re-exported: figures.gantt_figure and the rest stay here.
from ui.figures_timeline import KIND_SHADES as KIND_SHADES
from ui.figures_timeline import MAX_GANTT_BARS as MAX_GANTT_BARS
from ui.figures_timeline import MAX_GANTT_ROWS as MAX_GANTT_ROWS
from ui.figures_timeline import OP_NAMES as OP_NAMES
from ui.figures_timeline import PALETTE as PALETTE
from ui.figures_timeline import PHASE_COLOURS as PHASE_COLOURS
from ui.figures_timeline import STREAM_ORDER as STREAM_ORDER
from ui.figures_timeline import aggregate_timeline as aggregate_timeline
from ui.figures_timeline import gantt_figure as gantt_figure
from ui.figures_timeline import phase_colours as phase_colours
from ui.figures_timeline import pick_ranks as pick_ranks
from ui.figures_timeline import tidy_timeline as tidy_timeline

GIB = 2**30
COMM_KINDS = ("tp", "cp", "ep", "pp", "dp")
MEMORY_COMPONENTS = ("params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "other_bytes")


# ---------------------------------------------------------------- time breakdown
def breakdown_frame(estimates: dict) -> pd.DataFrame:
    """Long frame (plan, component, seconds) of each plan's step time split: compute,
    exposed communication by kind, pipeline bubble. ``estimates`` maps a label to a StepEstimate."""
    rows = []
    for label, est in estimates.items():
        rows.append({"plan": label, "component": "compute", "seconds": est.compute_s})
        for kind in COMM_KINDS:
            rows.append({"plan": label, "component": f"{kind} comm",
                         "seconds": float(est.exposed_comm_by_kind_s.get(kind, 0.0))})
        rows.append({"plan": label, "component": "bubble", "seconds": est.bubble_s})
    return pd.DataFrame(rows, columns=["plan", "component", "seconds"])


def drop_zero_components(df: pd.DataFrame, value: str, component: str = "component") -> pd.DataFrame:
    """``df`` without the components that are zero in every row (so no legend entry for them).

    >>> d = pd.DataFrame({"component": ["compute", "tp comm", "compute", "tp comm"], "s": [1.0, 0.0, 2.0, 0.0]})
    >>> sorted(drop_zero_components(d, "s")["component"].unique())
    ['compute']
    """
    used = df.groupby(component)[value].apply(lambda v: bool((v.abs() > 0).any()))
    return df[df[component].map(used)]


def time_breakdown_figure(df: pd.DataFrame) -> go.Figure:
    """Stacked bars of the iteration time per plan: compute, exposed comm by kind, bubble (components
    that are zero for every plan are left out of the bars and the legend)."""
    d = drop_zero_components(df, "seconds").assign(ms=lambda x: x["seconds"] * 1e3)
    fig = px.bar(d, x="plan", y="ms", color="component", barmode="stack",
                 labels={"ms": "time per iteration (ms)", "plan": "plan"},
                 category_orders={"component": ["compute", *[f"{k} comm" for k in COMM_KINDS], "bubble"]},
                 color_discrete_sequence=PALETTE,
                 title="Where the iteration time goes")
    fig.update_layout(legend_title_text="")
    return fig


# The seconds of the Timeline page's table, in order; each row adds up to its iteration time.
BREAKDOWN_COLUMNS = ("compute_s", "tp_s", "cp_s", "ep_s", "pp_s", "dp_s", "bubble_s", "idle_s")
BREAKDOWN_NOTE = (
    "Each row adds up to its iteration time. Simulated: the pipeline stage on most of the critical path; "
    "bubble = the seconds it waited for a neighbouring stage's activations or gradients, idle = the seconds it "
    "finished before the slowest stage. Analytical: the schedule's closed form (bubble = (p-1) x the slowest "
    "stage's forward+backward per micro-batch, Narayanan et al. 2021; 0 without pipeline parallelism), no "
    "idle. They differ when stages are unequal (the first and last stages hold the embedding and the loss), "
    "when pipeline sends take time or share links, and with the stage's place in the pipeline.")


def breakdown_table(simulated: dict, simulated_step_s: float, est) -> pd.DataFrame:
    """Two rows (simulated, analytical) of seconds that each add up to the row's iteration time:
    compute, exposed communication by kind, pipeline bubble and idle (the simulated seconds not in the
    other terms: the stage finished before the slowest one). Columns zero in both rows are left out."""
    sim = {k: float(simulated.get(k, 0.0)) for k in BREAKDOWN_COLUMNS}
    sim["idle_s"] = max(0.0, simulated_step_s - sum(v for k, v in sim.items() if k != "idle_s"))
    ana = {"compute_s": est.compute_s, "bubble_s": est.bubble_s, "idle_s": 0.0,
           **{f"{k}_s": float(v) for k, v in est.exposed_comm_by_kind_s.items()}}
    rows = [{"source": "simulated", **sim, "iteration_s": simulated_step_s},
            {"source": "analytical", **{k: float(ana.get(k, 0.0)) for k in BREAKDOWN_COLUMNS},
             "iteration_s": est.step_time_s}]
    df = pd.DataFrame(rows, columns=["source", *BREAKDOWN_COLUMNS, "iteration_s"])
    keep = [c for c in df.columns if c in ("source", "iteration_s") or (df[c].abs() > 0).any()]
    return df[keep]


# ---------------------------------------------------------------- memory
def memory_frame(estimates: dict) -> pd.DataFrame:
    """Long frame (plan, stage, component, gib) of one rank's memory per pipeline stage."""
    rows = []
    for label, est in estimates.items():
        for stage, mb in enumerate(est.memory_by_stage):
            d = mb.as_dict()
            for comp in MEMORY_COMPONENTS:
                rows.append({"plan": label, "stage": stage, "component": comp.removesuffix("_bytes"),
                             "gib": d[comp] / GIB})
    return pd.DataFrame(rows, columns=["plan", "stage", "component", "gib"])


def memory_figure(df: pd.DataFrame, hbm_bytes: float) -> go.Figure:
    """Stacked bars of memory per pipeline stage by component (one panel per plan), with the
    GPU's HBM capacity as a horizontal line (components zero everywhere are left out of the legend)."""
    df = drop_zero_components(df, "gib")
    facet = "plan" if df["plan"].nunique() > 1 else None
    fig = px.bar(df, x="stage", y="gib", color="component", barmode="stack", facet_col=facet,
                 color_discrete_sequence=PALETTE,
                 labels={"gib": "memory per GPU (GiB)", "stage": "pipeline stage"},
                 title="Memory per pipeline stage")
    fig.add_hline(y=hbm_bytes / GIB, line_dash="dash", line_color="red",
                  annotation_text=f"HBM {hbm_bytes / GIB:.0f} GiB", annotation_position="top left")
    fig.update_xaxes(type="category", matches=None)
    fig.update_layout(legend_title_text="")
    return fig


# ---------------------------------------------------------------- topology
# Most nodes of one kind (GPUs, NICs, switches) labelled on the drawing; beyond it the labels overlap
# and the names are on hover only.
MAX_NODE_LABELS = 40


def node_label(name, data: dict) -> str:
    """A readable name for a topology node: "GPU 3", "NVSwitch 0", "NIC 5", "leaf 0.1", "spine 0".

    >>> node_label("gpu3", {"kind": "gpu", "node": 0}), node_label("nvsw1", {"kind": "nvswitch"})
    ('GPU 3 (node 0)', 'NVSwitch (node 1)')
    """
    s = str(name)
    kind = data.get("kind", "")
    num = re.sub(r"^[a-z_/]+", "", s)
    if kind == "gpu":
        return f"GPU {num}" + (f" (node {data['node']})" if "node" in data else "")
    if kind == "nvswitch":
        return f"NVSwitch (node {num})" if num else "NVSwitch"
    if kind == "nic":
        return f"NIC {num}"
    return re.sub(r"^([a-z]+)", r"\1 ", s).strip()


def nodes_text(n: int) -> str:
    """ "1 node", "4 nodes".

    >>> nodes_text(1), nodes_text(4)
    ('1 node', '4 nodes')
    """
    return f"{n} node" if n == 1 else f"{n} nodes"


def markdown_escape(text: str) -> str:
    r"""Text shown through Streamlit's markdown (st.error, st.caption...) with its characters kept:
    ``tp*pp*cp`` would render as "tpppcp" (emphasis), ``$`` starts LaTeX (``_`` inside words, as in
    field names, is left alone: it is no emphasis there).

    >>> print(markdown_escape("tp*pp*cp = 32 [global_batch_size]"))
    tp\*pp\*cp = 32 \[global_batch_size\]
    """
    return re.sub(r"([\\`*\[\]<>#|~$])", r"\\\1", str(text))


def cluster_graph(num_nodes: int, gpus_per_node: int, max_nodes: int = 16):
    """A networkx graph of the cluster: GPUs -> NVSwitch per node -> leaf switch(es) -> spine.
    Draws at most ``max_nodes`` nodes (the rest are identical); node attribute ``kind``."""
    g = nx.Graph()
    shown = min(num_nodes, max_nodes)
    leaves = max(1, math.ceil(shown / 8))
    if num_nodes > 1:
        g.add_node("spine", kind="switch")
        for lf in range(leaves):
            g.add_node(f"leaf{lf}", kind="switch")
            g.add_edge(f"leaf{lf}", "spine", kind="network")
    for n in range(shown):
        sw = f"n{n}/nvswitch"
        g.add_node(sw, kind="nvswitch")
        for k in range(gpus_per_node):
            gpu = f"n{n}/gpu{k}"
            g.add_node(gpu, kind="gpu")
            g.add_edge(gpu, sw, kind="nvlink")
        if num_nodes > 1:
            g.add_edge(sw, f"leaf{n // 8}", kind="network")
    g.graph["hidden_nodes"] = num_nodes - shown
    return g


def _natural(name) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name)))


def _level(name, kind: str) -> int:
    s = str(name)
    if "spine" in s:
        return 4
    if "leaf" in s or kind == "switch":
        return 3
    return {"nic": 2, "gpu": 1, "nvswitch": 0}.get(kind, 1)


def _layout(g) -> dict:
    """Layered layout: spines on top, then leaves, NICs, GPUs, NVSwitches at the bottom."""
    by_level: dict[int, list] = {}
    for n, data in g.nodes(data=True):
        by_level.setdefault(_level(n, data.get("kind", "gpu")), []).append(n)
    pos = {}
    width = max(len(v) for v in by_level.values())
    for lvl, nodes in by_level.items():
        for i, n in enumerate(sorted(nodes, key=_natural)):
            pos[n] = ((i + 0.5) * width / len(nodes), float(lvl))
    return pos


def trim_topology(g, max_gpus: int = 64):
    """The part of a big topology graph worth drawing: the GPUs of the first nodes (at most
    ``max_gpus``), their NVSwitches and NICs, and every switch above them. Sets
    ``graph["hidden_nodes"]`` to the number of nodes left out."""
    gpus = [n for n, d in g.nodes(data=True) if d.get("kind") == "gpu"]
    if len(gpus) <= max_gpus:
        return g
    node_of = {n: g.nodes[n].get("node", i // 8) for i, n in enumerate(sorted(gpus, key=_natural))}
    per_node = max(1, len(gpus) // (max(node_of.values()) + 1))
    keep_nodes = max(1, max_gpus // per_node)
    keep = {n for n, nd in node_of.items() if nd < keep_nodes}
    for n in list(keep):
        keep.update(m for m in g.neighbors(n) if g.nodes[m].get("kind") in ("nvswitch", "nic"))
    for n in list(keep):
        keep.update(m for m in g.neighbors(n) if g.nodes[m].get("kind") == "switch")
    keep.update(n for n, d in g.nodes(data=True) if "spine" in str(n))
    sub = g.subgraph(keep).copy()
    sub.graph["hidden_nodes"] = g.graph.get("hidden_nodes", 0) + max(node_of.values()) + 1 - keep_nodes
    return sub


def topology_figure(g, utilisation: dict | None = None, pos: dict | None = None) -> go.Figure:
    """The network as drawn from a networkx graph: links coloured by utilisation during the
    iteration (0..1, busy time / iteration time) where ``utilisation`` maps an edge (u, v) to it,
    else by link kind. Positions from the nodes' ``pos`` attribute, ``pos`` or a tree layout."""
    if pos is None:
        attr = nx.get_node_attributes(g, "pos")
        pos = attr if len(attr) == g.number_of_nodes() else _layout(g)
    util = {}
    for (u, v), x in (utilisation or {}).items():
        util[(u, v)] = util[(v, u)] = float(x)
    fig = go.Figure()
    buckets = [(0.0, 0.25, "#2c7bb6"), (0.25, 0.5, "#abd9e9"), (0.5, 0.75, "#fdae61"), (0.75, 1.01, "#d7191c")]
    mids_x, mids_y, mids_u, mids_t = [], [], [], []
    groups: dict[str, tuple[list, list]] = {}
    for u, v, data in g.edges(data=True):
        x0, y0 = pos[u]
        x1, y1 = pos[v]
        if utilisation is not None:
            x = util.get((u, v), 0.0)
            name = next(f"{lo:.0%}-{min(hi, 1):.0%} busy" for lo, hi, _ in buckets if lo <= min(x, 1.0) < hi)
            mids_x.append((x0 + x1) / 2)
            mids_y.append((y0 + y1) / 2)
            mids_u.append(x)
            mids_t.append(f"{u} - {v}: {x:.0%} busy")
        else:
            name = str(data.get("kind", "link"))
        xs, ys = groups.setdefault(name, ([], []))
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    colours = {f"{lo:.0%}-{min(hi, 1):.0%} busy": c for lo, hi, c in buckets}
    colours.update({"nvlink": "#9467bd", "pcie": "#bbbbbb", "nic": "#8c564b", "network": "#8c564b",
                    "uplink": "#444444"})
    for name, (xs, ys) in sorted(groups.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                                 line={"width": 2, "color": colours.get(name)}))
    if mids_x:
        fig.add_trace(go.Scatter(x=mids_x, y=mids_y, mode="markers", name="link utilisation", text=mids_t,
                                 hoverinfo="text", marker={"size": 7, "color": mids_u, "colorscale": "RdYlBu_r",
                                                           "cmin": 0, "cmax": 1, "showscale": True,
                                                           "colorbar": {"title": "busy"}}))
    kinds: dict[str, tuple[list, list, list]] = {}
    for n, data in g.nodes(data=True):
        xs, ys, ts = kinds.setdefault(str(data.get("kind", "node")), ([], [], []))
        xs.append(pos[n][0])
        ys.append(pos[n][1])
        ts.append(node_label(n, data))
    symbols = {"gpu": "square", "nvswitch": "diamond", "switch": "circle", "nic": "triangle-up"}
    node_colours = {"gpu": "#2ca02c", "nvswitch": "#9467bd", "switch": "#444444", "nic": "#8c564b"}
    for kind, (xs, ys, ts) in kinds.items():
        labelled = len(ts) <= MAX_NODE_LABELS      # a label on every node of the kind, else hover only
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text" if labelled else "markers", name=kind, text=ts,
                                 hoverinfo="text", textposition="bottom center" if kind != "nvswitch" else "top center",
                                 textfont={"size": 9},
                                 marker={"size": 10 if kind != "gpu" else 8, "symbol": symbols.get(kind, "circle"),
                                         "color": node_colours.get(kind, "#17becf")}))
    hidden = g.graph.get("hidden_nodes", 0)
    title = "Cluster topology" + (f" ({hidden} more identical nodes not drawn)" if hidden else "")
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False}, hovermode="closest",
                      legend={"orientation": "h", "y": -0.05})
    return fig


# ---------------------------------------------------------------- Pareto
def pareto_mask(x, y) -> np.ndarray:
    """True for points on the lower-left Pareto frontier of (x, y), both minimised.

    >>> pareto_mask([1, 2, 3, 4], [4, 1, 2, 0.5]).tolist()
    [True, True, False, True]
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.lexsort((y, x))
    best = np.minimum.accumulate(y[order])
    prev = np.concatenate([[np.inf], best[:-1]])
    on = y[order] < prev
    mask = np.zeros(len(x), bool)
    mask[order[on]] = True
    return mask


def pareto_figure(df: pd.DataFrame, x: str = "time_to_train_s", y: str = "cost_usd",
                  label: str = "plan_id", color: str | None = None) -> go.Figure:
    """Scatter of the plans (time vs cost) with the Pareto frontier as a step line
    (sort by x, cumulative minimum of y). Each point's customdata holds its row position."""
    d = df.reset_index(drop=True).assign(row=np.arange(len(df)))
    xlab = {"time_to_train_s": "time to train (days)", "step_time_s": "iteration time (s)"}.get(x, x)
    scale = 1 / 86400 if x == "time_to_train_s" else 1.0
    d = d.assign(_x=d[x] * scale)
    fig = px.scatter(d, x="_x", y=y, color=color, color_discrete_sequence=PALETTE,
                     hover_name=label if label in d.columns else None,
                     custom_data=["row"], labels={"_x": xlab, y: y.replace("_usd", " (USD)")},
                     title="Plans: time vs cost (click a point to pin it)")
    front = d[pareto_mask(d["_x"], d[y])].sort_values("_x")
    fig.add_trace(go.Scatter(x=front["_x"], y=front[y].cummin(), mode="lines", line_shape="hv",
                             name="Pareto frontier", line={"color": "black", "dash": "dot"}, hoverinfo="skip"))
    return fig


def pareto_point_row(point: dict, df: pd.DataFrame, x: str = "time_to_train_s", y: str = "cost_usd") -> int | None:
    """The row of ``df`` behind a point clicked on :func:`pareto_figure` (a Streamlit selection point):
    its customdata (plotly.js sends it as a list, a dict or a bare number), else the nearest (x, y).

    >>> pareto_point_row({"customdata": [2]}, pd.DataFrame({"time_to_train_s": [1, 2, 3], "cost_usd": [3, 2, 1]}))
    2
    """
    cd = point.get("customdata")
    if isinstance(cd, dict):
        cd = next(iter(cd.values()), None)
    if isinstance(cd, (list, tuple)):
        cd = cd[0] if cd else None
    if isinstance(cd, (int, float)) and 0 <= int(cd) < len(df):
        return int(cd)
    px_, py_ = point.get("x"), point.get("y")
    if px_ is None or py_ is None or not len(df):
        return None
    scale = 1 / 86400 if x == "time_to_train_s" else 1.0
    dist = ((df[x] * scale - float(px_)).abs() / max(abs(float(px_)), 1e-12)
            + (df[y] - float(py_)).abs() / max(abs(float(py_)), 1e-12))
    return int(np.argmin(dist.to_numpy()))


# ---------------------------------------------------------------- validation
def validation_figure(df: pd.DataFrame, predicted: str = "predicted_iteration_time_s",
                      measured: str = "measured_iteration_time_s", label: str = "id",
                      color: str | None = None, band: float = 0.2) -> go.Figure:
    """Predicted vs measured scatter on log axes with the y = x line and a +-``band`` corridor."""
    fig = px.scatter(df, x=measured, y=predicted, color=color, color_discrete_sequence=PALETTE, hover_name=label,
                     log_x=True, log_y=True,
                     labels={measured: "measured (s)", predicted: "predicted (s)"},
                     title="Predicted vs measured iteration time")
    vals = pd.concat([df[measured], df[predicted]]).astype(float)
    lo, hi = float(vals.min()) / 1.5, float(vals.max()) * 1.5
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"color": "black"}))
    for f, name in ((1 + band, f"+{band:.0%}"), (1 - band, f"-{band:.0%}")):
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", name=name,
                                 line={"color": "grey", "dash": "dash"}))
    return fig


def figure_png(fig: go.Figure) -> bytes | None:
    """PNG bytes of a figure through kaleido, or None when kaleido (or its browser) is missing."""
    try:
        return fig.to_image(format="png")
    except Exception:  # kaleido missing or cannot start a browser: the modebar still saves PNGs
        return None
