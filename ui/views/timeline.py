"""The simulated iteration as a Gantt chart per GPU and stream (zoom with the mouse)."""

import pandas as pd
import streamlit as st

from ui import figures, sim
from ui.pages_common import pick_plan, plot, require_setup

st.title("Simulated timeline")
setup = require_setup()
if not sim.available():
    st.info(sim.MISSING)
    st.stop()
item = pick_plan(setup, "tl_plan")
if item is None:
    st.stop()
with st.spinner(f"Simulating {item['label']} on {setup.cluster.num_gpus} GPUs..."):
    r = sim.simulated(setup.model, setup.cluster, item["plan"])
if "error" in r:
    st.error(r["error"])
    st.stop()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Simulated iteration", f"{r['step_time_s']:.3f} s")
c2.metric("Analytical iteration", f"{item['est'].step_time_s:.3f} s",
          delta=f"{item['est'].step_time_s / r['step_time_s'] - 1:+.1%} vs simulated", delta_color="off")
c3.metric("Operations simulated", f"{r['ops']:,}")
c4.metric("Simulation wall time", f"{r['wall_s']:.2f} s")
if not len(r["timeline"]):
    st.info("The simulation returned no timeline.")
    st.stop()
st.caption("One representative GPU per pipeline stage is simulated (the other data-parallel and tensor-parallel "
           "ranks do the same work); drag to zoom, double-click to reset.")
max_bars = st.select_slider("Most bars to draw", options=(500, 1000, 2000, 4000, 8000), value=figures.MAX_GANTT_BARS,
                            key="tl_max_bars")
fig, note = figures.gantt_figure(r["timeline"], max_bars=max_bars)
if r["ranks"] > r["timeline"]["rank"].nunique():
    note = f"simulated {r['ranks']} GPUs; " + note
if note:
    st.caption(note)
plot(fig, "fig_gantt")
b = r["breakdown"]
est = item["est"]
analytical = {"compute_s": est.compute_s, "bubble_s": est.bubble_s,
              **{f"{k}_s": v for k, v in est.exposed_comm_by_kind_s.items()}}
st.dataframe(pd.DataFrame([{"": "simulated", **b}, {"": "analytical", **analytical}]), hide_index=True,
             key="tl_breakdown")
