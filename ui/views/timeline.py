"""The simulated iteration as a Gantt chart per GPU and stream (zoom with the mouse)."""

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
    st.error(figures.markdown_escape(r["error"]))
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
est = item["est"]
table = figures.breakdown_table(r["breakdown"], r["step_time_s"], est)
st.subheader("Where the iteration goes")
st.dataframe(table, hide_index=True, key="tl_breakdown",
             column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if c != "source"})
st.caption(figures.markdown_escape(figures.BREAKDOWN_NOTE))
