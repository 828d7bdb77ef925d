"""Bits the pages share: choosing one pinned plan, drawing a figure with PNG export."""

from __future__ import annotations

import streamlit as st

from ui import figures, state


def require_setup():
    """The shared inputs from the sidebar; stops the page with a message when they are invalid."""
    setup = st.session_state.get("setup")
    if setup is None:
        st.error("Fix the inputs in the sidebar first.")
        st.stop()
    return setup


def pick_plan(setup, key: str) -> dict | None:
    """A selectbox of the pinned plans that are valid; the chosen plan's result item."""
    items = [it for it in state.plan_results(setup) if it["est"] is not None]
    if not items:
        st.error("No valid plan pinned: fix the plans on *Compare plans*.")
        return None
    labels = [f"{it['label']}: {it['plan'].plan_id}" for it in items]
    if st.session_state.get(key) not in labels:
        st.session_state.pop(key, None)
    choice = st.selectbox("Plan", labels, key=key)
    return items[labels.index(choice)]


def plot(fig, key: str, **kw):
    """st.plotly_chart whose toolbar camera saves a PNG named after the chart."""
    png = {"format": "png", "scale": 2, "filename": key.removeprefix("fig_")}
    return st.plotly_chart(fig, key=key, width="stretch", config={"displaylogo": False, "toImageButtonOptions": png},
                           **kw)


def png_button(fig, key: str, name: str) -> None:
    """A button that renders the figure to PNG with kaleido (a few seconds: it starts a browser) and
    offers the file; the chart's toolbar camera does the same in the browser without kaleido."""
    if st.button("PNG file", key=f"{key}_png", help="render with kaleido; the chart toolbar's camera also saves PNG"):
        with st.spinner("Rendering PNG..."):
            data = figures.figure_png(fig)
        if data is None:
            st.info("kaleido could not render a PNG here; use the camera button of the chart's toolbar.")
        else:
            st.download_button("Download PNG", data, file_name=f"{name}.png", mime="image/png", key=f"{key}_dl",
                               on_click="ignore")
