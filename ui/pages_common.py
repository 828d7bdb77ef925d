"""Bits the pages share: choosing one pinned plan, drawing a figure with PNG export, the pinned plans
kept in the page's URL (a reload or a shared link shows the same plans)."""

from __future__ import annotations

import streamlit as st

import simulator as cs
from ui import figures, state

# st.query_params key holding the pinned plans: each plan's fields that differ from the defaults,
# "field:value" joined by ",", plans joined by "~" (e.g. "tp:2,zero_stage:1~tp:4,pp:2,sp:true")
PLANS_PARAM = "plans"


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


def encode_plans(plans: list[dict]) -> str:
    """The pinned plans as a short URL value: the fields each plan changes from the defaults.

    >>> encode_plans([{"uid": 1, **state.DEFAULT_SPEC, "tp": 2, "zero_stage": 1}, {"uid": 2, **state.DEFAULT_SPEC}])
    'tp:2,zero_stage:1~default'
    """
    out = []
    for spec in plans:
        diff = [f"{k}:{_text(v)}" for k, v in spec.items() if k in state.DEFAULT_SPEC and v != state.DEFAULT_SPEC[k]]
        out.append(",".join(diff) or "default")
    return "~".join(out)


def decode_plans(text: str) -> list[dict]:
    """Plan fields from :func:`encode_plans`' text (typed by the declared fields); unknown fields and values
    that do not parse are left out, at most state.MAX_PLANS plans.

    >>> decode_plans("tp:2,zero_stage:1~sp:true,recompute:selective~default")
    [{'tp': 2, 'zero_stage': 1}, {'sp': True, 'recompute': 'selective'}, {}]
    """
    plans = []
    for part in str(text).split("~")[:state.MAX_PLANS]:
        fields = {}
        for item in part.split(","):
            name, sep, value = item.partition(":")
            if not sep or name not in state.DEFAULT_SPEC:
                continue
            try:
                fields[name] = _typed(name, value)
            except ValueError:
                continue
        plans.append(fields)
    return plans


def _text(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _typed(name: str, value: str):
    t = cs.field_type(cs.Plan, name)
    default = state.DEFAULT_SPEC[name]
    if t is bool or isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    if isinstance(default, int) or t is int:
        return int(value)
    if isinstance(default, float) or t is float:
        return float(value)
    return value


def plans_from_url() -> None:
    """On a session's first run, pin the plans a link or a reload carries (before state.init_state)."""
    text = st.query_params.get(PLANS_PARAM)
    if "plans" in st.session_state or not text:
        return
    plans = decode_plans(text)
    if plans:
        st.session_state.plans = [state.new_spec(p) for p in plans]


def plans_to_url() -> None:
    """Write the pinned plans into the URL (st.query_params), so a reload or a copied link keeps them."""
    plans = st.session_state.get("plans")
    if plans:
        value = encode_plans(plans)
        if st.query_params.get(PLANS_PARAM) != value:
            st.query_params[PLANS_PARAM] = value
