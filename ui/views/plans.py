"""Compare up to five plans side by side: edit each, see the numbers, the time breakdown and
memory per pipeline stage; download the plans as a scenario YAML and the results as CSV."""

import pandas as pd
import streamlit as st

from simulator import DEFAULT_PLACEMENT, INNERMOST_PLACEMENTS, PLAN_FIELDS, Plan
from ui import figures, state
from ui.pages_common import plot, png_button, require_setup

# Drawn first, two to a row; every other plan field goes under "more" (all derived from the declaration).
FIRST = ("tp", "pp", "dp", "micro_batch_size", "zero_stage", "recompute", "schedule", "sp")


def _remove(uid: int) -> None:
    st.session_state.plans = [p for p in st.session_state.plans if p["uid"] != uid]


def _add() -> None:
    last = st.session_state.plans[-1] if st.session_state.plans else {}
    state.pin({k: v for k, v in last.items() if k != "uid"})


def _widget(spec: dict, field: str, draw):
    key = f"p{spec['uid']}_{field}"
    if key not in st.session_state:
        st.session_state[key] = spec[field]
    spec[field] = draw(key)


def plan_editor(spec: dict) -> None:
    """The widgets of one plan (one per declared plan field); they write straight back into its spec."""
    cols = st.columns(2)
    placements = tuple(dict.fromkeys((*INNERMOST_PLACEMENTS, spec.get("placement") or DEFAULT_PLACEMENT)))
    choices = {"placement": placements}
    for i, f in enumerate(FIRST):
        _widget(spec, f, lambda k, f=f, c=cols[i % 2]: state.declared_widget(Plan, f, k, where=c))
    with st.expander("more"):
        for f in (f for f in PLAN_FIELDS if f not in FIRST):
            _widget(spec, f, lambda k, f=f: state.declared_widget(Plan, f, k, choices=choices.get(f)))
    st.button("Remove", key=f"rm_{spec['uid']}", on_click=_remove, args=(spec["uid"],),
              disabled=len(st.session_state.plans) <= 1)


def fmt_time(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.3g} s"


def plan_metrics(item: dict) -> None:
    est, run = item["est"], item["run"]
    if est is None:
        for msg in item["errors"]:
            st.error(figures.markdown_escape(msg))
        return
    a, b = st.columns(2)
    a.metric("Iteration time", f"{est.step_time_s:.3f} s")
    b.metric("Tokens/s", f"{est.tokens_per_s:,.0f}")
    a, b = st.columns(2)
    a.metric("MFU", f"{est.mfu:.1%}")
    mem = f"{est.peak_memory_bytes / 2**30:.1f} / {est.hbm_bytes / 2**30:.0f} GiB"
    # a status, not a change: no arrow (an up-arrow read as "OOM went up")
    b.metric("Memory", mem, delta="fits" if est.fits else "OOM", delta_color="normal" if est.fits else "inverse",
             delta_arrow="off")
    if not est.fits:   # it never runs: no time to train, no cost; what it would need instead
        a, b = st.columns(2)
        a.metric("Time to train", "n/a", help="the plan does not fit in memory, so it cannot train")
        b.metric("Cost", "n/a", help="the plan does not fit in memory, so it cannot train")
        st.error(f"Out of memory: needs {needs_text(est)}; no time to train, cost or rank.")
    elif run:
        a, b = st.columns(2)
        a.metric("Time to train", fmt_time(run["time_to_train_s"]),
                  help=f"with failures and checkpoints (goodput {run.get('goodput', 1):.1%}); "
                       f"failure-free {fmt_time(run.get('failure_free_time_to_train_s', run['time_to_train_s']))}")
        b.metric("Cost", f"${run['cost_usd']:,.0f}", help="GPU-hours x price, failures and checkpoints included")


def needs_text(est) -> str:
    """What a plan that does not fit would need: "95.2 GiB of 80" (peak per GPU vs HBM)."""
    return f"{est.peak_memory_bytes / 2**30:.1f} GiB of {est.hbm_bytes / 2**30:.0f}"


# The results table's first columns: what a reader compares (time, cost) before the details; the long
# plan id last, so time and cost show without scrolling.
RESULT_ORDER = ("plan", "fits", "memory", "time_to_train_days", "cost_usd", "iteration_s", "mfu", "tokens_per_s",
                "peak_memory_gib")


def results_frame(items: list[dict]) -> pd.DataFrame:
    """The comparison rows, time and cost first; a plan that does not fit has no time to train, cost,
    energy or GPU-hours, and its "memory" says what it would need."""
    rows = []
    for it in items:
        row = state.result_row(it)
        if it["est"] is not None:
            row["memory"] = "fits" if it["est"].fits else f"needs {needs_text(it['est'])}"
        rows.append(row)
    df = pd.DataFrame(rows)
    first = [c for c in RESULT_ORDER if c in df.columns]
    rest = [c for c in df.columns if c not in first and c not in ("plan_id", "error")]
    return df[first + rest + [c for c in ("error", "plan_id") if c in df.columns]]


def results_table(items: list[dict]) -> pd.DataFrame:
    df = results_frame(items)
    st.dataframe(df, hide_index=True, key="results_table", column_config={
        "mfu": st.column_config.ProgressColumn("MFU", format="percent", min_value=0, max_value=1),
        "iteration_s": st.column_config.NumberColumn("iteration (s)", format="%.3f"),
        "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.0f"),
        "tflops_per_gpu": st.column_config.NumberColumn("TFLOP/s per GPU", format="%.0f"),
        "peak_memory_gib": st.column_config.NumberColumn("peak memory (GiB)", format="%.1f"),
        "time_to_train_days": st.column_config.NumberColumn("time to train (days)", format="%.1f"),
        "cost_usd": st.column_config.NumberColumn("cost (USD)", format="%.0f"),
        "gpu_hours": st.column_config.NumberColumn("GPU-hours", format="%.0f"),
        "energy_mwh": st.column_config.NumberColumn("energy (MWh)", format="%.1f"),
        "goodput": st.column_config.ProgressColumn("goodput", format="percent", min_value=0, max_value=1),
        "checkpoint_interval_min": st.column_config.NumberColumn("checkpoint every (min)", format="%.1f"),
    })
    return df


def charts(items: list[dict], setup) -> None:
    ok = {it["label"]: it["est"] for it in items if it["est"] is not None}
    if not ok:
        st.info("No valid plan to chart: fix the plans above.")
        return
    t1, t2, t3 = st.tabs(["Time breakdown", "Memory per stage", "Warnings"])
    with t1:
        fig = figures.time_breakdown_figure(figures.breakdown_frame(ok))
        plot(fig, "fig_breakdown")
        png_button(fig, "fig_breakdown", "time_breakdown")
    with t2:
        fig = figures.memory_figure(figures.memory_frame(ok), setup.cluster.gpu.hbm_bytes)
        plot(fig, "fig_memory")
        png_button(fig, "fig_memory", "memory_per_stage")
    with t3:
        for label, est in ok.items():
            for w in est.warnings:
                st.warning(figures.markdown_escape(f"{label}: {w}"))


def export_launch_config(items: list[dict], setup) -> None:
    """A download of one plan as the sidebar framework's launch settings (models/export/; `clustersim export`),
    or why it cannot be written."""
    from simulator import WRITER_FRAMEWORKS, export_plan
    framework = getattr(setup.training, "framework", None)
    ok = [it for it in items if it["plan"] is not None]
    if not framework or not ok:
        st.caption(f"Choose a framework in the sidebar ({', '.join(WRITER_FRAMEWORKS)}) to download a plan as its "
                   "launch settings.")
        return
    label = st.selectbox("Launch config of", [it["label"] for it in ok], key="export_plan")
    item = next(it for it in ok if it["label"] == label)
    try:
        exp = export_plan(item["plan"], setup.model, setup.cluster, framework)
    except ValueError as e:
        st.warning(figures.markdown_escape(f"{label} cannot be exported for {framework}: {e}"))
        return
    mime = {".json": "application/json", ".yaml": "application/x-yaml", ".toml": "application/toml"}
    st.download_button(f"{label} as {exp.framework} launch config ({exp.suffix})", exp.text,
                       file_name=f"clustersim_{exp.writer}{exp.suffix}", mime=mime.get(exp.suffix, "text/plain"),
                       key="dl_export")
    for note in exp.notes:
        st.caption(figures.markdown_escape(f"note: {note}"))


st.title("Compare plans")
setup = require_setup()
m, cl = setup.model, setup.cluster
st.caption(f"{m.name}, {m.num_params / 1e9:.1f} B parameters, seq {m.seq_len} · {cl.num_gpus} x {cl.gpu.name} "
           f"({figures.nodes_text(cl.num_nodes)}) · "
           f"global batch {setup.training.global_batch_size} · {setup.training.tokens / 1e9:,.0f} B tokens")

plans = st.session_state.plans
boxes = []
for i, (col, spec) in enumerate(zip(st.columns(len(plans), border=True), plans)):
    with col:
        st.subheader(f"P{i + 1}")
        boxes.append(st.container())   # the numbers go above the editor, filled once all plans are read
        with st.expander("edit plan", expanded=True):
            plan_editor(spec)
items = state.plan_results(setup)
for box, item in zip(boxes, items):
    with box:
        plan_metrics(item)
st.button("Add plan", key="add_plan", on_click=_add, disabled=len(plans) >= state.MAX_PLANS,
          help=f"copy the last plan (at most {state.MAX_PLANS})")

st.subheader("Results")
df = results_table(items)
charts(items, setup)
c1, c2 = st.columns(2)
c1.download_button("Results as CSV", df.to_csv(index=False), file_name="clustersim_results.csv", mime="text/csv",
                   key="dl_csv")
c2.download_button("Plans as scenario YAML", state.scenario_yaml(setup, plans), file_name="clustersim_scenario.yaml",
                   mime="application/x-yaml", key="dl_yaml")
export_launch_config(items, setup)
