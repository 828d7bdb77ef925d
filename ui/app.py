"""clustersim dashboard: `clustersim ui` or `streamlit run ui/app.py`.

The sidebar holds the shared inputs (model, cluster, training settings); each page reads the
resulting Setup from ``st.session_state.setup`` and the pinned plans from ``st.session_state.plans``,
which the page's URL carries too (``?plans=tp:2,zero_stage:1~...``: a reload or a link keeps them).
"""

import streamlit as st

from ui import pages_common, state

st.set_page_config(page_title="clustersim", page_icon=":material/hub:", layout="wide")
pages_common.plans_from_url()   # a reload or a shared link keeps the pinned plans
state.init_state()
pages = [
    st.Page("views/plans.py", title="Compare plans", icon=":material/compare:", default=True),
    st.Page("views/timeline.py", title="Timeline", icon=":material/view_timeline:"),
    st.Page("views/network.py", title="Network", icon=":material/lan:"),
    st.Page("views/search.py", title="Search", icon=":material/travel_explore:"),
    st.Page("views/scenario.py", title="Scenario", icon=":material/description:"),
    st.Page("views/validation.py", title="Validation", icon=":material/fact_check:"),
]
nav = st.navigation(pages)
st.session_state.setup = state.sidebar()
try:
    nav.run()
finally:   # also when the page stops early (st.stop): the URL follows the plans as edited this run
    pages_common.plans_to_url()
