"""Planner search: every valid plan scored analytically; a time-vs-cost scatter with the Pareto
frontier. Click a point (or pick it below) to pin it as a plan."""

import dataclasses

import pandas as pd
import streamlit as st

import simulator as cs
from simulator import Plan
from ui import figures, state
from ui.pages_common import plot, require_setup

PLAN_KEYS = tuple(state.DEFAULT_SPEC)
# values offered for the axes whose planner default depends on the model and cluster
AXIS_VALUES = {"tp": (1, 2, 4, 8), "pp": (1, 2, 4, 8, 16, 32), "ep": (1, 2, 4, 8, 16, 32, 64)}


@st.cache_data(max_entries=16, show_spinner=False)
def run_search(model, cluster, training, constraints, objective: str, top: int) -> dict:
    """The planner's best ``top`` plans for each node count in ``constraints.num_nodes`` (ranking all
    counts together would keep only the biggest cluster's plans: no time/cost trade-off to see)."""
    counts = constraints.num_nodes or (cluster.num_nodes,)
    frames, whys, evaluated, fit, elapsed, errors = [], [], 0, 0, 0.0, []
    for n in counts:
        c = dataclasses.replace(constraints, num_nodes=(n,))
        try:
            # serial: no process pool inside the (multi-threaded) Streamlit server; these grids take < 1 s
            r = cs.search(model, cluster, training, c, objective=objective, top=max(1, top // len(counts)),
                               backend="serial")
        except ValueError as e:
            errors.append(f"{figures.nodes_text(n)}: {e}")
            continue
        frames.append(r.plans)
        whys.append((r.plans[cs.OBJECTIVES[objective]].iloc[0], n, r.why))
        evaluated, fit, elapsed = evaluated + r.plans_evaluated, fit + r.plans_fit, elapsed + r.elapsed_s
    if not frames:
        return {"error": "; ".join(errors)}
    plans = pd.concat(frames, ignore_index=True).sort_values(cs.OBJECTIVES[objective], kind="stable")
    plans["rank"] = range(1, len(plans) + 1)
    best = min(whys, key=lambda w: w[0])
    return {"plans": plans.reset_index(drop=True), "why": f"({figures.nodes_text(best[1])}) {best[2]}", "evaluated": evaluated,
            "fit": fit, "elapsed_s": elapsed, "skipped": errors}


def pin_row(row: dict) -> None:
    """Pin a search result row; switch the sidebar's node count to the plan's when it differs."""
    spec = {k: (bool(row[k]) if isinstance(state.DEFAULT_SPEC[k], bool) else row[k]) for k in PLAN_KEYS if k in row}
    spec = {k: (int(v) if isinstance(state.DEFAULT_SPEC[k], int) and not isinstance(v, bool) else v)
            for k, v in spec.items()}
    if not state.pin(spec):
        st.session_state["_search_msg"] = "Five plans are pinned already; remove one on *Compare plans* first."
        return
    msg = f"Pinned {row.get('plan_id', '')} as P{len(st.session_state.plans)}."
    nodes = int(row.get("num_nodes", st.session_state.in_nodes))
    if nodes != st.session_state.in_nodes:
        st.session_state["_pending_inputs"] = {"in_nodes": nodes}
        msg += f" Nodes set to {nodes} to match it."
    st.session_state["_search_msg"] = msg


def on_select() -> None:
    ev = st.session_state.get("fig_pareto")
    pts = (ev or {}).get("selection", {}).get("points", []) if isinstance(ev, dict) else \
        getattr(getattr(ev, "selection", None), "points", [])
    df = st.session_state.get("_search_df")
    if not pts or df is None:
        return
    row = figures.pareto_point_row(dict(pts[0]), df)
    if row is None:
        st.session_state["_search_msg"] = "Could not tell which plan was clicked; pick it in the list below."
        return
    pin_row(df.iloc[row].to_dict())


st.title("Search plans")
setup = require_setup()

cl = setup.cluster
c1, c2, c3 = st.columns(3)
objective = c1.selectbox("Rank by", list(cs.OBJECTIVES), key="s_objective")
node_opts = sorted({max(1, cl.num_nodes // 2), cl.num_nodes, cl.num_nodes * 2, cl.num_nodes * 4})
nodes = c2.multiselect("Node counts", node_opts, default=node_opts, key="s_nodes")
top = int(c3.number_input("Plans to keep", min_value=5, max_value=2000, value=200, step=50, key="s_top"))
with st.expander("Constraints"):
    # one multiselect per search axis declared on the plan (models/plan.py ``search``); empty: every valid value
    cols, allowed = st.columns(3), {}
    for i, name in enumerate(cs.SEARCH_AXES):
        values = AXIS_VALUES.get(name) or cs.option(Plan, name).search
        allowed[name] = cols[i % 3].multiselect(name, list(values), key=f"s_{name}", help=cs.help_text(Plan, name))
    mem_frac = st.slider("Fits when peak memory is below this fraction of HBM", 0.5, 1.0, 0.95, key="s_memfrac")
try:
    constraints = cs.Constraints(**{k: tuple(v) or None for k, v in allowed.items()}, num_nodes=tuple(nodes) or None,
                                 max_memory_fraction=float(mem_frac))
except ValueError as e:
    st.error(str(e))
    st.stop()
training = setup.training

with st.spinner("Searching..."):
    r = run_search(setup.model, cl, training, constraints, objective, top)
if "error" in r:
    st.error(r["error"])
    st.stop()
msg = st.session_state.pop("_search_msg", None)
if msg:
    st.success(msg)
df = r["plans"].reset_index(drop=True)
st.session_state["_search_df"] = df
st.caption(f"{r['evaluated']:,} valid plans scored, {r['fit']:,} fit in memory, in {r['elapsed_s']:.2f} s; "
           f"showing the best {len(df)} by {objective} (best first, up to {top // max(1, len(nodes))} per node count).")
st.markdown(f"**Why the best plan wins:** {r['why']}")
for msg in r["skipped"]:
    st.warning(msg)
fig = figures.pareto_figure(df.assign(nodes=df["num_nodes"].map(figures.nodes_text)), x="time_to_train_s",
                            y="cost_usd", label="plan_id", color="nodes")
plot(fig, "fig_pareto", on_select=on_select, selection_mode="points")

labels = [f"#{i + 1} {row.plan_id} ({figures.nodes_text(row.num_nodes)})" for i, row in enumerate(df.itertuples())]
p1, p2 = st.columns([3, 1])
choice = p1.selectbox("Plan to pin", labels, key="s_pick")
if p2.button("Pin plan", key="s_pin", disabled=len(st.session_state.plans) >= state.MAX_PLANS):
    pin_row(df.iloc[labels.index(choice)].to_dict())
    st.rerun()
cols = [c for c in ("rank", "plan_id", "num_nodes", "num_gpus", "step_time_s", "mfu", "peak_memory_bytes",
                    "time_to_train_s", "cost_usd", "energy_kwh") if c in df]
show = df[cols].assign(peak_memory_gib=df["peak_memory_bytes"] / 2**30,
                       time_to_train_days=df["time_to_train_s"] / 86400)
st.dataframe(show.drop(columns=["peak_memory_bytes", "time_to_train_s"]), hide_index=True, key="s_table",
             column_config={"mfu": st.column_config.ProgressColumn("MFU", format="percent", min_value=0, max_value=1),
                            "cost_usd": st.column_config.NumberColumn("cost (USD)", format="%.0f")})
st.download_button("Search results as CSV", df.to_csv(index=False), file_name="clustersim_search.csv",
                   mime="text/csv", key="s_csv")
