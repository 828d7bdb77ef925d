"""Predicted vs measured: the published runs (dev set) and the local calibration runs."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

import simulator as cs
from ui import figures
from ui.pages_common import plot

ROOT = Path(__file__).resolve().parents[2]
DEV_RUNS = ROOT.parent / "shared" / "validation" / "dev_runs.yaml"
LOCAL_RESULTS = ROOT / "out" / "validate.json"


def pct(v) -> str:
    """A fraction as a percentage; a dash when there is none (no record compared, or not a number)."""
    return f"{v:.1%}" if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf") \
        else "-"


NUMERIC = ("measured_step_time_s", "predicted_step_time_s", "step_time_error", "measured_peak_memory_bytes",
           "predicted_peak_memory_bytes", "peak_memory_error")
MAX_UPLOAD_BYTES = 16 << 20


@st.cache_data(max_entries=4, show_spinner=False)
def predicted(path: str, mtime: float) -> dict:
    return cs.predict_runs(path)


st.title("Validation")
st.subheader("Published runs")
path = Path(st.session_state.get("val_path") or DEV_RUNS)
if not path.is_file():
    st.info(f"The published runs file is not here ({path}). It is read from "
            "`../shared/validation/dev_runs.yaml` next to the repository.")
else:
    try:
        res = predicted(str(path), path.stat().st_mtime)
    except ValueError as e:
        st.error(str(e))
        st.stop()
    recs = pd.DataFrame(res["records"])
    ok = recs[recs.get("error").notna()] if "error" in recs else recs.iloc[:0]
    s, sh = res["summary"], res["summary_high"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Runs predicted", f"{s['count']}")
    c2.metric("MAPE (all)", pct(s["mape"]))
    c3.metric("MAPE (high reliability)", pct(sh["mape"]))
    c4.metric("Median |error|", pct(s["median_abs_error"]))
    if len(ok):
        color = "group" if "group" in ok else None
        plot(figures.validation_figure(ok, color=color), "fig_validation")
        cols = [c for c in ("id", "group", "reliability", "measured_iteration_time_s", "predicted_iteration_time_s",
                            "error", "predicted_mfu", "fits", "plan_id") if c in ok]
        st.dataframe(ok[cols], hide_index=True, key="val_table", column_config={
            "error": st.column_config.NumberColumn("error", format="percent"),
            "predicted_mfu": st.column_config.NumberColumn("MFU", format="percent")})
    skipped = recs[recs["skipped"].notna()] if "skipped" in recs else recs.iloc[:0]
    if len(skipped):
        with st.expander(f"{len(skipped)} runs skipped"):
            st.dataframe(skipped[["id", "skipped"]], hide_index=True, key="val_skipped")

st.subheader("Local calibration runs")
st.caption("Small real training runs on this machine (`clustersim validate -o out/validate.json`): "
           "measured step time and peak memory against the prediction with the calibrated profile.")
up = st.file_uploader("validate JSON", type=["json"], key="val_upload")
local = LOCAL_RESULTS if LOCAL_RESULTS.is_file() else None
try:
    if up is not None and len(up.getvalue()) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{len(up.getvalue()):,} bytes; larger than the {MAX_UPLOAD_BYTES:,}-byte limit")
    doc = json.loads(up.getvalue()) if up is not None else (json.loads(local.read_text()) if local else None)
except (ValueError, RecursionError, OSError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
    st.error(f"{up.name if up else local}: not valid JSON ({' '.join(str(e).split())[:200]})")
    doc = None
if doc is None:
    st.info(f"No local results: run `clustersim validate -o {LOCAL_RESULTS.relative_to(ROOT)}` "
            "(needs PyTorch), then reload, or upload the JSON it wrote.")
else:
    raw = doc.get("records", []) if isinstance(doc, dict) else []
    recs = pd.DataFrame([r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else [])
    need = {"plan", "measured_step_time_s", "predicted_step_time_s"}
    if need <= set(recs.columns):   # numbers where numbers go; a record with a string there is left out
        for c in NUMERIC:
            if c in recs:
                recs[c] = pd.to_numeric(recs[c], errors="coerce")
        bad = recs["measured_step_time_s"].isna() | recs["predicted_step_time_s"].isna()
        if bad.any():
            st.warning(f"validate JSON: {int(bad.sum())} records without a numeric measured and predicted step time "
                       "left out")
        recs = recs[~bad]
        recs["plan"] = recs["plan"].astype(str)
    if not need <= set(recs.columns) or not len(recs):
        st.error(f"validate JSON: expected records with {', '.join(sorted(need))}")
    else:
        summ = doc.get("summary", {})
        if isinstance(summ, dict) and summ:
            c1, c2 = st.columns(2)
            c1.metric("Median |step-time error|", pct(summ.get("median_abs_step_time_error")))
            c2.metric("Max |peak-memory error|", pct(summ.get("max_abs_peak_memory_error")))
        fig = figures.validation_figure(recs, predicted="predicted_step_time_s", measured="measured_step_time_s",
                                        label="plan")
        fig.update_layout(title="Local runs: predicted vs measured step time")
        plot(fig, "fig_local_validation")
        cols = [c for c in ("plan", "device", "measured_step_time_s", "predicted_step_time_s", "step_time_error",
                            "measured_peak_memory_bytes", "predicted_peak_memory_bytes", "peak_memory_error")
                if c in recs]
        st.dataframe(recs[cols], hide_index=True, key="local_table", column_config={
            "step_time_error": st.column_config.NumberColumn("step error", format="percent"),
            "peak_memory_error": st.column_config.NumberColumn("memory error", format="percent")})
