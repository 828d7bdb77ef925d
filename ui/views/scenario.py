"""Load a scenario YAML (model, cluster, training, plans) into the dashboard, run a whole scenario
(plans, sweep and search rows), or download the current inputs and pinned plans as one."""

import tempfile
from pathlib import Path

import streamlit as st

import simulator as cs
from ui import state
from ui.pages_common import require_setup

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios"


def load(data: bytes, name: str, uploaded: bool = True):
    """A validated Scenario from uploaded bytes; errors name the uploaded file, line and field. An
    uploaded scenario may name its model by preset or inline only: a path (``model: /etc/x.json``,
    ``config: ...``) or a Hub id would be read on this server, so it is refused."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / (Path(name).name or "scenario.yaml")
        p.write_bytes(data)
        try:
            scn = cs.load_scenario(p)
        except ValueError as e:
            raise ValueError(str(e).replace(str(p), name)) from None
    if uploaded:
        check_uploaded_model(scn.model, name)
    return scn


def check_uploaded_model(model, name: str) -> None:
    """ValueError unless an uploaded scenario's model is a preset name or an inline mapping."""
    if isinstance(model, str) and model not in cs.PRESETS:
        raise ValueError(f"{name}: model: {model!r} is not a preset; an uploaded scenario may not name a file or a "
                         "Hub id on the server: use a preset name or an inline mapping (or upload the config.json "
                         "in the sidebar)")
    if isinstance(model, dict) and "config" in model:
        raise ValueError(f"{name}: model.config: an uploaded scenario may not name a file on the server; use "
                         "{preset: NAME, ...} or an inline mapping")


def apply(scn) -> list[str]:
    """Queue the scenario's inputs and plans; they take effect on the next run (st.rerun)."""
    vals, specs, custom, notes = state.inputs_from_scenario(scn)
    st.session_state["_pending_inputs"] = vals
    st.session_state["_scenario_model"] = custom
    if specs:
        st.session_state.plans = [state.new_spec(s) for s in specs]
    else:
        notes.insert(0, "it lists no plans: the pinned plans are kept")
    return notes


@st.cache_data(max_entries=4, show_spinner=False)
def run_all(data: bytes, name: str, uploaded: bool = True):
    scn = load(data, name, uploaded)
    return cs.run_scenario(scn)


st.title("Scenario")
msg = st.session_state.pop("_scenario_msg", None)
if msg:
    st.success(msg)

if True:  # scenario files: load one, or run it whole
    c1, c2 = st.columns(2)
    up = c1.file_uploader("Scenario YAML", type=["yaml", "yml"], key="sc_upload")
    examples = sorted(p.name for p in EXAMPLES.glob("*.yaml")) if EXAMPLES.is_dir() else []
    example = c2.selectbox("or an example from scenarios/", ["(none)", *examples], key="sc_example")
    source = (up.getvalue(), up.name, True) if up is not None else (
        ((EXAMPLES / example).read_bytes(), example, False) if example != "(none)" else None)
    b1, b2 = st.columns(2)
    if source and b1.button("Load into the dashboard", key="sc_load", type="primary"):
        try:
            notes = apply(load(*source))
        except ValueError as e:
            st.error(str(e))
        else:
            st.session_state["_scenario_msg"] = (f"Loaded {source[1]}: {len(st.session_state.plans)} plans pinned"
                                                 + ("; " + "; ".join(notes) if notes else "") + ".")
            st.rerun()
    if source and b2.button("Run the whole scenario", key="sc_run"):
        try:
            with st.spinner(f"Running {source[1]}..."):
                df = run_all(*source)
        except ValueError as e:
            st.error(str(e))
        else:
            st.dataframe(df, hide_index=True, key="sc_results")
            st.download_button("Scenario results as CSV", df.to_csv(index=False), key="sc_results_csv",
                               file_name=f"{Path(source[1]).stem}.csv", mime="text/csv")

setup = require_setup()
st.subheader("The dashboard as a scenario")
text = state.scenario_yaml(setup, st.session_state.plans)
st.download_button("Download as scenario YAML", text, file_name="clustersim_scenario.yaml",
                   mime="application/x-yaml", key="sc_download")
st.code(text, language="yaml")
