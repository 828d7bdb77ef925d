"""Dashboard state: the shared inputs (model, cluster, training), the pinned plans, and cached
pure wrappers around the public API. Only ``simulator``'s public names are used; every input
widget is derived from the declared fields (``simulator.options``): a field added to the plan or
the training settings appears here without a line of its own."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import simulator as cs
from simulator import (
    GPUS,
    NODES,
    PLAN_FIELDS,
    PRESETS,
    Cluster,
    ClusterInputs,
    Plan,
    Training,
    Transformer,
    estimate,
    time_to_train,
)
from ui.figures import markdown_escape

MAX_PLANS = 5
MODEL_FIELDS = ("num_layers", "hidden", "num_heads", "num_kv_heads", "ffn_hidden", "vocab")
# Training fields the sidebar draws elsewhere or in its own units (seq_len with the model, price with
# the cluster, tokens in billions); ``failures``: the dashboard always shows both figures.
SPECIAL_TRAINING = ("seq_len", "price_per_gpu_hour", "tokens", "failures", "global_batch_size")


def widget_key(cls, name: str) -> str:
    """The session-state key of a declared input: ``in_`` + its CLI flag (in_global_batch, in_gpu)."""
    return "in_" + cs.option(cls, name).flag[2:].replace("-", "_")


def widget_default(cls, name: str):
    """A declared default as a widget holds it: enums by name; optional numbers as 0 ('default')."""
    v = cs.user_value(cs.default_of(cls, name))
    if v is None or (cs.option(cls, name).optional and cs.field_type(cls, name) in (int, float)):
        t = cs.field_type(cls, name)
        return {int: 0, float: 0.0, str: "auto"}.get(t, v)
    return v


# The fields of one plan (as a scenario file's plans[] entries); dp 0 = fill the cluster.
DEFAULT_SPEC = {name: widget_default(Plan, name) for name in PLAN_FIELDS}
DEFAULT_PLANS = ({"tp": 2, "zero_stage": 1}, {"tp": 4, "pp": 2, "sp": True, "recompute": "selective"})
TRAINING_WIDGETS = tuple(n for n in cs.options(Training) if n not in SPECIAL_TRAINING)
DEFAULT_INPUTS = {"in_source": "preset", "in_preset": "llama2-7b", "in_edit": False, "in_tokens_b": 1000.0,
                  "in_global_batch": 256,
                  **{widget_key(ClusterInputs, n): widget_default(ClusterInputs, n) for n in cs.options(ClusterInputs)},
                  **{widget_key(Training, n): widget_default(Training, n) for n in TRAINING_WIDGETS}}
DEFAULT_INPUTS.update(in_gpu="h100-sxm-80gb", in_nodes=2)


def declared_widget(cls, name: str, key: str, where=st, choices: tuple | None = None, label: str | None = None):
    """The widget of one declared field, from its metadata: a toggle for a flag, a select box for
    a choice, a number input with the declared range (0 = the default, for optional numbers)."""
    o, t = cs.option(cls, name), cs.field_type(cls, name)
    label = label or name.replace("_", " ") + (f" ({o.unit})" if o.unit else "")
    helptext = cs.help_text(cls, name)
    if t is bool:
        return where.toggle(label, key=key, help=helptext)
    if choices or o.choices:
        opts = tuple(choices or o.choices)
        if o.optional and "auto" not in opts:   # an optional choice (e.g. framework): "auto" leaves it unset
            v = where.selectbox(label, ("auto", *opts), key=key, help=helptext)
            return None if v == "auto" else v
        return where.selectbox(label, opts, key=key, help=helptext)
    if t in (int, float):
        lo = 0 if o.optional else o.minimum
        value = where.number_input(label + (" (0 = default)" if o.optional else ""), key=key, help=helptext,
                                   min_value=t(lo) if lo is not None else None,
                                   max_value=t(o.maximum) if o.maximum is not None else None,
                                   step=t(1) if t is int else None)
        return t(value)
    v = where.text_input(label, key=key, help=helptext)
    return None if o.optional and v.strip() in ("", "auto") else v


@dataclass(frozen=True, slots=True)
class Setup:
    model: Transformer
    cluster: Cluster
    training: Training


# ------------------------------------------------------------------ cached pure wrappers
@st.cache_data(max_entries=1024, show_spinner=False)
def evaluate(model: Transformer, cluster: Cluster, plan: Plan, tokens: float) -> dict:
    """{"est": StepEstimate, "run": {...}} or {"errors": [...]}. The run figures count failures,
    checkpoints and restarts (models.cost.time_to_train, default reliability spec, optimal
    checkpoint interval); ``failure_free_*`` keys keep the figures without them."""
    try:
        est = estimate(model, cluster, plan)
    except ValueError as e:  # PlanError (a ValueError) lists every reason
        return {"errors": list(getattr(e, "errors", [str(e)]))}
    if not est.fits:   # a plan that does not fit never runs: no time to train, no cost (issue 18)
        return {"est": est, "run": {}}
    tr = time_to_train(model, cluster, plan, tokens, est=est)
    run = {"time_to_train_s": tr.time_to_train_s, "gpu_hours": tr.gpu_hours, "cost_usd": tr.cost_usd,
           "energy_kwh": tr.energy_kwh, "goodput": tr.goodput, "expected_failures": tr.expected_failures,
           "checkpoint_interval_s": tr.checkpoint_interval_s, "failure_free_time_to_train_s": tr.failure_free_s,
           "failure_free_cost_usd": tr.failure_free_cost_usd}
    return {"est": est, "run": {k: float(v) for k, v in run.items()}}


@st.cache_data(max_entries=32, show_spinner=False)
def model_from_config(data: bytes, name: str) -> Transformer:
    """A Transformer from the bytes of an uploaded Hugging Face config.json."""
    stem = Path(name).stem
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / (stem if stem and stem != "config" else "uploaded") / "config.json"
        p.parent.mkdir(parents=True)
        p.write_bytes(data)
        try:
            return cs.load_hf_config(p)
        except ValueError as e:
            raise ValueError(str(e).replace(str(p), name)) from None


# ------------------------------------------------------------------ session state
def init_state() -> None:
    """Defaults for every input key, the pinned plans, and any pending update from a loaded
    scenario or a pinned search result (applied before the widgets are drawn)."""
    ss = st.session_state
    for k, v in DEFAULT_INPUTS.items():
        ss.setdefault(k, v)
    if "plans" not in ss:
        ss.plans = [new_spec(d) for d in DEFAULT_PLANS]
    pending = ss.pop("_pending_inputs", None)
    if pending:
        for k, v in pending.items():
            ss[k] = v


def new_spec(fields: dict | None = None) -> dict:
    """A plan spec (the editor's fields) with a fresh id for widget keys."""
    ss = st.session_state
    ss["_uid"] = ss.get("_uid", 0) + 1
    return {**DEFAULT_SPEC, **(fields or {}), "uid": ss["_uid"]}


def pin(plan_fields: dict) -> bool:
    """Pin a plan (editor fields); False when five are pinned already."""
    plans = st.session_state.plans
    if len(plans) >= MAX_PLANS:
        return False
    plans.append(new_spec(plan_fields))
    return True


def build_plan(spec: dict, setup: Setup) -> Plan:
    """The Plan for an editor spec under the shared training settings; ValueError says why not."""
    fields = {k: v for k, v in spec.items() if k in PLAN_FIELDS}
    if not fields.get("dp"):
        fields.pop("dp", None)  # 0: fill the cluster
    return cs.resolve_plan(setup.cluster.num_gpus, setup.training, **fields)


def plan_results(setup: Setup) -> list[dict]:
    """For each pinned plan: {"label", "spec", "plan", "est", "run", "errors"}."""
    out = []
    for i, spec in enumerate(st.session_state.plans):
        item = {"label": f"P{i + 1}", "spec": spec, "plan": None, "est": None, "run": {}, "errors": []}
        try:
            item["plan"] = build_plan(spec, setup)
        except ValueError as e:
            item["errors"] = [str(e)]
            out.append(item)
            continue
        r = evaluate(setup.model, setup.cluster, item["plan"], setup.training.tokens)
        item.update(est=r.get("est"), run=r.get("run", {}), errors=r.get("errors", []))
        out.append(item)
    return out


def result_row(item: dict) -> dict:
    """One row of the comparison table (units in the column names)."""
    row = {"plan": item["label"], "plan_id": item["plan"].plan_id if item["plan"] else ""}
    est, run = item["est"], item["run"]
    if est is None:
        return row | {"error": "; ".join(item["errors"])}
    return row | {
        "iteration_s": est.step_time_s, "tokens_per_s": est.tokens_per_s, "mfu": est.mfu,
        "tflops_per_gpu": est.tflops_per_gpu, "peak_memory_gib": est.peak_memory_bytes / 2**30, "fits": est.fits,
        "time_to_train_days": run.get("time_to_train_s", float("nan")) / 86400,
        "gpu_hours": run.get("gpu_hours", float("nan")), "cost_usd": run.get("cost_usd", float("nan")),
        "energy_mwh": run.get("energy_kwh", float("nan")) / 1e3, "goodput": run.get("goodput", float("nan")),
        "checkpoint_interval_min": run.get("checkpoint_interval_s", float("nan")) / 60, "num_gpus": est.num_gpus,
        "num_microbatches": est.num_microbatches, "error": "",
    }


# ------------------------------------------------------------------ inputs -> Setup
def model_inputs() -> Transformer:
    """The model chosen in the sidebar (preset or uploaded config.json, optionally edited)."""
    ss = st.session_state
    loaded = ss.get("_scenario_model")
    sources = ("preset", "config.json") + (("scenario",) if loaded is not None else ())
    if ss.get("in_source") not in sources:
        ss["in_source"] = "preset"
    src = st.radio("Model from", sources, key="in_source", horizontal=True)
    if src == "preset":
        base = PRESETS[st.selectbox("Preset", list(PRESETS), key="in_preset")]
    elif src == "scenario":
        base = loaded
        st.caption(f"{base.name} from the loaded scenario")
    else:
        up = st.file_uploader("Hugging Face config.json", type=["json"], key="in_upload")
        if up is None:
            raise ValueError("model: upload a Hugging Face config.json, or pick a preset")
        base = model_from_config(up.getvalue(), up.name)
    seq_key = f"in_seq_len_{base.name}"
    ss.setdefault(seq_key, base.seq_len)
    seq_len = st.number_input("Sequence length (tokens)", min_value=1, max_value=int(cs.option(Training, "seq_len").maximum),
                              step=512, key=seq_key)
    model = base.with_seq_len(int(seq_len))
    if st.toggle("Edit model fields", key="in_edit"):
        vals = {}
        cols = st.columns(2)
        for i, f in enumerate(MODEL_FIELDS):
            key = f"in_m_{f}_{base.name}"
            ss.setdefault(key, getattr(base, f))
            vals[f] = int(cols[i % 2].number_input(f, min_value=1, max_value=MAX_MODEL_FIELD, step=1, key=key))
        model = dataclasses.replace(model, **vals)
    st.caption(f"{model.num_params / 1e9:.2f} B parameters"
               + (f" ({model.num_active_params / 1e9:.2f} B active)" if model.is_moe else ""))
    return model


# Largest value of an edited model field (layers, widths, heads, vocabulary): the config.json bound.
MAX_MODEL_FIELD = 1 << 40

CLUSTER_CHOICES = {"gpu": tuple(GPUS), "node": ("auto", *NODES)}


def cluster_inputs() -> Cluster:
    ss = st.session_state
    vals = {}
    for name in cs.options(ClusterInputs):
        v = declared_widget(ClusterInputs, name, widget_key(ClusterInputs, name), choices=CLUSTER_CHOICES.get(name))
        vals[name] = None if v in (0, 0.0, "auto") and cs.option(ClusterInputs, name).optional else v
    gpu = vals["gpu"]
    price_key = f"in_price_{gpu}"
    ss.setdefault(price_key, float(GPUS[gpu].price_usd_per_hour))
    price = st.number_input("Price per GPU-hour (USD)", min_value=0.0,
                            max_value=float(cs.option(Training, "price_per_gpu_hour").maximum), step=0.1, key=price_key,
                            help=cs.help_text(Training, "price_per_gpu_hour"))
    cl = ClusterInputs(**vals).build(float(price))
    st.caption(f"{cl.num_gpus} GPUs, {cl.gpus_per_node} per node ({cl.node.name})")
    return cl


def training_inputs() -> Training:
    gb = int(st.number_input("Global batch (sequences)", min_value=1, max_value=int(cs.option(Training,
                             "global_batch_size").maximum), step=8, key="in_global_batch",
                             help=cs.help_text(Training, "global_batch_size")))
    tokens_b = st.number_input("Tokens to train (billions)", min_value=0.001, max_value=1e7, step=100.0,
                               key="in_tokens_b", help=cs.help_text(Training, "tokens"))
    vals = {name: declared_widget(Training, name, widget_key(Training, name)) for name in TRAINING_WIDGETS}
    return Training(global_batch_size=gb, tokens=float(tokens_b) * 1e9, **vals)


def sidebar() -> Setup | None:
    """Draw the shared inputs in the sidebar; None (with the reason shown) when they are invalid."""
    parts = {}
    with st.sidebar:
        for name, fn in (("Model", model_inputs), ("Cluster", cluster_inputs), ("Training", training_inputs)):
            with st.expander(name, expanded=True):
                try:
                    parts[name] = fn()
                except ValueError as e:  # every section still draws, so no widget loses its value
                    st.error(markdown_escape(str(e)))   # "tp*pp*cp" keeps its stars
    if len(parts) < 3:
        return None
    return Setup(parts["Model"], parts["Cluster"], parts["Training"])


# ------------------------------------------------------------------ scenario files
def scenario_dict(setup: Setup, plans: list[dict]) -> dict:
    """The inputs and pinned plans in the scenario file format of simulator.planning.scenario
    (`clustersim scenario` runs it)."""
    m, cl, tr = setup.model, setup.cluster, setup.training
    preset = next((k for k, v in PRESETS.items() if v.with_seq_len(m.seq_len) == m), None)
    if preset:
        model = preset
    else:
        base = PRESETS.get(m.name)
        fields = [f for f in Transformer.__dataclass_fields__ if f not in ("seq_len", "note")]
        model = ({"preset": m.name, **{f: getattr(m, f) for f in fields if getattr(m, f) != getattr(base, f)}}
                 if base else {f: getattr(m, f) for f in (*fields, "seq_len") if getattr(m, f) not in (None, "")})
    cluster = {"gpu": cl.gpu.name, "nodes": cl.num_nodes, "node": cl.node.name}
    if cl.gpus_per_node != NODES[cl.node.name].gpus_per_node:
        cluster["gpus_per_node"] = cl.gpus_per_node
    if cl.node.nic_bytes_per_s_per_gpu != NODES[cl.node.name].nic_bytes_per_s_per_gpu:
        cluster["nic_gbit_per_s"] = cl.node.nic_bytes_per_s_per_gpu * 8 / 1e9
    cluster.update(oversubscription=cl.oversubscription, pue=cl.pue)
    training = {n: getattr(tr, n) for n in cs.options(Training) if getattr(tr, n) is not None}
    training.update(seq_len=m.seq_len, price_per_gpu_hour=cl.price_per_gpu_hour_usd)
    out_plans = []
    for i, spec in enumerate(plans):
        p = {"name": f"P{i + 1}", "tp": int(spec["tp"]), "pp": int(spec["pp"])}
        p.update({k: v for k, v in spec.items() if k in DEFAULT_SPEC and k not in p and v != DEFAULT_SPEC[k]})
        if p.get("schedule") == "1f1b" or (p.get("schedule") == "interleaved" and p.get("vpp", 1) > 1):
            p.pop("schedule")
        out_plans.append(p)
    return {"name": "dashboard", "description": "plans pinned in the clustersim dashboard", "model": model,
            "cluster": cluster, "training": training, "objective": "time", "plans": out_plans}


def scenario_yaml(setup: Setup, plans: list[dict]) -> str:
    import yaml
    return yaml.safe_dump(scenario_dict(setup, plans), sort_keys=False)


def inputs_from_scenario(scn) -> tuple[dict, list[dict], object | None, list[str]]:
    """(sidebar values, plan specs, Transformer for the 'scenario' model source or None, notes)
    from a loaded scenario; ValueError (ScenarioError) names the field."""
    model = cs.build_model(scn)
    vals: dict = {}
    notes: list[str] = []
    custom = None
    if isinstance(scn.model, str) and model.name in PRESETS:
        vals.update(in_source="preset", in_preset=model.name, in_edit=False)
    else:
        custom = model
        vals.update(in_source="scenario", in_edit=False)
    vals[f"in_seq_len_{model.name}"] = model.seq_len
    gpu = cs.build_cluster_spec(scn).gpu.name
    for name, v in scn.cluster.model_dump().items():
        vals[widget_key(ClusterInputs, name)] = widget_default(ClusterInputs, name) if v is None else v
    vals[widget_key(ClusterInputs, "gpu")] = gpu
    tr = cs.training_of(scn)
    vals.update({widget_key(Training, n): getattr(tr, n) for n in TRAINING_WIDGETS})
    vals["in_global_batch"] = int(tr.global_batch_size)
    if tr.tokens:
        vals["in_tokens_b"] = float(tr.tokens) / 1e9
    if tr.price_per_gpu_hour is not None:
        vals[f"in_price_{gpu}"] = float(tr.price_per_gpu_hour)
    specs = []
    for p in scn.plans[:MAX_PLANS]:
        d = {k: v for k, v in p.model_dump(exclude_none=True).items() if k in DEFAULT_SPEC}
        d.setdefault("schedule", "interleaved" if d.get("vpp", 1) > 1 else "1f1b")
        specs.append(d)
    if len(scn.plans) > MAX_PLANS:
        notes.append(f"the scenario lists {len(scn.plans)} plans; the first {MAX_PLANS} are pinned")
    if scn.sweep is not None or scn.search is not None:
        notes.append("its sweep / search rows appear when you run the whole scenario below")
    return vals, specs, custom, notes
