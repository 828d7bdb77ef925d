"""The cluster network: topology, and each link's utilisation during the simulated iteration."""

import dataclasses

import pandas as pd
import streamlit as st

import simulator as cs
from ui import figures, sim
from ui.pages_common import pick_plan, plot, require_setup

st.title("Network")
setup = require_setup()
cl = setup.cluster
st.caption(f"{figures.nodes_text(cl.num_nodes)} of {cl.node.name}: {cl.gpus_per_node} x {cl.gpu.name} per node, "
           f"{cl.gpu.nvlink_bytes_per_s / 1e9:.0f} GB/s NVLink per GPU, "
           f"{cl.node.nic_bytes_per_s_per_gpu * 8 / 1e9:.0f} Gb/s network per GPU, "
           f"oversubscription {cl.oversubscription:g}:1")
max_gpus = st.select_slider("GPUs to draw", options=(8, 16, 32, 64, 128, 256), value=32, key="net_max_gpus")
# only the nodes drawn are built (the others mirror them): a 10^6-GPU cluster must not build 10^6 vertices
drawn = dataclasses.replace(cl, num_nodes=min(cl.num_nodes, max(1, -(-max_gpus // cl.gpus_per_node)) + 1))
graph = cs.build_topology(drawn)
graph = figures.trim_topology(graph, max_gpus)   # the drawn part; other nodes mirror it
util = None
if sim.available():
    item = pick_plan(setup, "net_plan")
    if item is not None:
        with st.spinner("Simulating the iteration..."):
            r = sim.simulated(setup.model, cl, item["plan"])
        if "error" in r:
            st.error(figures.markdown_escape(r["error"]))
        else:
            util = sim.link_utilisation(graph, r["busy"], item["plan"], cl.gpus_per_node)
            crosses = {k: x for k, x in sim.crosses_nodes(item["plan"], cl.gpus_per_node).items()
                       if getattr(item["plan"], k) > 1}
            st.caption("Link colour: fraction of the simulated iteration "
                       f"({r['step_time_s']:.3f} s) that the link carries traffic. Inside a node: "
                       + (", ".join(k for k, x in crosses.items() if not x) or "nothing")
                       + "; over the network: " + (", ".join(k for k, x in crosses.items() if x) or "nothing") + ".")
            busy = {f"stage {s} {k}": x for (s, k), x in sorted(r["busy"].items())}
            if busy:
                st.dataframe(pd.DataFrame({"stream": list(busy), "busy": list(busy.values())}), hide_index=True,
                             key="net_busy", column_config={"busy": st.column_config.ProgressColumn(
                                 "busy fraction", format="percent", min_value=0, max_value=1)})
else:
    st.info(sim.MISSING + " Links are coloured by kind.")
fig = figures.topology_figure(graph, util)
plot(fig, "fig_topology")
