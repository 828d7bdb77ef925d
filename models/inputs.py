"""The inputs of a run, declared once: the model, the cluster, the training settings and the plan.

Calculon's split: the model (``models.transformer``), the execution plan (:class:`models.plan.Plan`,
its per-plan fields), the training settings shared by every plan of a run (:class:`Training`:
Plan's ``training`` fields plus the run's tokens, price and failure model) and the system
(:class:`ClusterInputs`). Each field carries its metadata once (:mod:`models.fields`); the CLI,
the scenario schema, the dashboard and the planner are derived from these classes.

:func:`resolve_plan` is the one step that turns partial input into a full :class:`Plan`:
dp fills the cluster, the schedule defaults to interleaved when vpp > 1, the global batch
defaults to one micro-batch per data-parallel rank.

    >>> t = Training(global_batch_size=64, dtype="bf16")
    >>> p = resolve_plan(num_gpus=16, training=t, tp=2, pp=2, vpp=2)
    >>> p.dp, p.schedule.name, p.num_microbatches
    (4, 'INTERLEAVED', 16)
"""

from __future__ import annotations

import dataclasses

from models.fields import check_value, default_of, opt, option, options
from models.frameworks import FRAMEWORK_CHOICES, apply_defaults, framework_errors, get_profile
from models.hardware import Cluster, get_gpu, make_cluster
from models.plan import Plan
from models.transformer import Transformer, resolve_model

# ---------------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True, slots=True)
class _RunFields:
    """Training settings that are not Plan fields (the run around the iteration)."""
    seq_len: int | None = opt(None, "training sequence length", "training", unit="tokens", minimum=1,
                              maximum=1 << 34, optional="the model's")
    tokens: float | None = opt(None, "tokens to train, for time to train, cost and energy", "training",
                               unit="tokens", minimum=1, maximum=1e16,
                               optional="pre-training: Chinchilla, 20 tokens per parameter (Hoffmann et al. "
                               "2022); fine-tuning (--finetune lora/qlora/dora, --optimizer lomo/adalomo): one epoch "
                               "of 52,002 sequences of the run's length (Stanford Alpaca's examples), since "
                               "fine-tuning data does not scale with the model; give your dataset's size")
    price_per_gpu_hour: float | None = opt(None, "price of one GPU-hour", "training", unit="USD", minimum=0,
                                           maximum=1e6, optional="the GPU's catalog price")
    failures: bool = opt(False, "time to train, cost and energy with failures, checkpoints and restarts "
                         "(Llama 3 failure rates) instead of failure-free", "training",
                         commands=("search", "run"))
    framework: str | None = opt(None, "training framework whose defaults fill what is left unstated and whose "
                                "limits the plan must meet (models/frameworks.py)", "training",
                                choices=FRAMEWORK_CHOICES, optional="none: the generic defaults")


def _training_fields() -> list:
    plan_fields = {f.name: f for f in dataclasses.fields(Plan)}
    out = [(name, plan_fields[name].type,
            dataclasses.field(default=None if o.optional else plan_fields[name].default,
                              metadata=plan_fields[name].metadata))
           for name, o in options(Plan).items() if o.section == "training"]
    return out + [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
                  for f in dataclasses.fields(_RunFields)] + [
        # Which of Plan's training fields were left unset (None): filled with the framework's default (or the
        # declared one) here and re-resolved against the layout by resolve_plan. None: not known (fields built
        # without None, e.g. a scenario's): a value equal to the declared default may take the framework's.
        ("unset", "frozenset | None", dataclasses.field(default=None, repr=False, compare=False))]


def _training_post_init(self) -> None:
    unset = set(self.unset or ())
    for name in options(type(self)):
        value = getattr(self, name)
        optional = options(type(self))[name].optional
        if value is None and name in _TRAINING_PLAN_FIELDS and not optional and _GENERIC[name] is not None:
            unset.add(name)   # unset: the framework's default (without the layout) or the declared one
            d = get_profile(self.framework).defaults.get(name) if self.framework else None
            value = d.resolve({}) if d is not None else _GENERIC[name]
            if name == "attention" and getattr(self, "dtype", None) == "fp32":
                value = "unfused"   # the only attention kernel that takes fp32 inputs (Plan: check_plan)
        elif value is None and not optional and default_of(type(self), name) is not None:
            value = default_of(type(self), name)   # a run field left unset: its declared default
        object.__setattr__(self, name, check_value(type(self), name, value))
    if unset or self.unset is not None:
        object.__setattr__(self, "unset", frozenset(unset))


def _plan_kwargs(self, layout: dict | None = None) -> dict:
    """The Plan fields these settings fix (global batch, dtype, attention kernel, overlaps). With a framework,
    its defaults (models/frameworks.py, resolved against ``layout``: tp, pp, zero_stage...) fill the fields
    left unset (``unset``); when that is not known, those left at the generic default."""
    out = {name: getattr(self, name) for name in _TRAINING_PLAN_FIELDS}
    if getattr(self, "framework", None):
        if self.unset is None:   # the training fields only (a default tied to a plan field is resolve_plan's)
            out, _ = apply_defaults(out, self.framework, {k: v for k, v in _GENERIC.items() if k in out})
        else:
            merged, _ = apply_defaults({**(layout or {}), **out, **{k: None for k in self.unset}}, self.framework, {})
            out |= {k: merged[k] for k in self.unset if merged.get(k) is not None}
        out = {k: v for k, v in out.items() if k in _TRAINING_PLAN_FIELDS}
    return out


GENERIC_DEFAULTS = {name: default_of(Plan, name) for name in options(Plan)}  # the declared defaults
_GENERIC = GENERIC_DEFAULTS
_TRAINING_PLAN_FIELDS = tuple(name for name, o in options(Plan).items() if o.section == "training")

Training = dataclasses.make_dataclass(
    "Training", _training_fields(), frozen=True, slots=True,
    namespace={"__post_init__": _training_post_init, "plan_kwargs": _plan_kwargs,
               "__doc__": "Training settings shared by every plan of a run: Plan's training fields "
                          "(global batch, dtype, attention kernel, overlaps) and the run's seq_len, tokens, "
                          "price and failure model. Derived from the declarations, not written again."})
Training.__module__ = __name__

# ---------------------------------------------------------------------------------- cluster


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterInputs:
    """The cluster as a user names it; :meth:`build` makes the :class:`models.hardware.Cluster`."""
    gpu: str = opt("a100-sxm-80gb", "GPU from the catalog (`clustersim presets`), e.g. h100-sxm-80gb", "cluster")
    nodes: int = opt(1, "number of nodes", "cluster", minimum=1, maximum=1 << 20)
    node: str | None = opt(None, "node preset, e.g. dgx-h100", "cluster", optional="the GPU's usual server")
    gpus_per_node: int | None = opt(None, "GPUs per node (and the NVLink domain size)", "cluster", minimum=1,
                                    maximum=1024, optional="the node preset's")
    nic_gbit_per_s: float | None = opt(None, "network line rate per GPU", "cluster", unit="Gbit/s", minimum=1e-3,
                                       maximum=1e6, optional="the node preset's")
    oversubscription: float = opt(1.0, "fat-tree oversubscription above the leaf (1 = full bisection)", "cluster",
                                  minimum=1.0, maximum=1e3)
    pue: float = opt(1.2, "data-centre power usage effectiveness (energy figures)", "cluster", minimum=1.0,
                     maximum=10.0)
    power_limit_w: float | None = opt(None, "GPU board power limit (nvidia-smi -pl); below TDP the sustained "
                                      "matmul and attention rates fall as (limit/TDP)^(1/3)", "cluster", unit="W",
                                      minimum=1.0, maximum=1e5, optional="the GPU's TDP")
    host_memory_gib: float | None = opt(None, "CPU memory per node (offload capacity)", "cluster", unit="GiB",
                                        minimum=1e-3, maximum=1e7, optional="the node preset's datasheet figure")
    nvme_gb_per_s: float | None = opt(None, "NVMe read/write bandwidth per node (offload_to nvme needs it: no "
                                      "datasheet states it)", "cluster", unit="GB/s", minimum=1e-3, maximum=1e5,
                                      optional="none: no NVMe offload")

    def __post_init__(self) -> None:
        for name in options(ClusterInputs):
            object.__setattr__(self, name, check_value(ClusterInputs, name, getattr(self, name)))

    def build(self, price_per_gpu_hour: float | None = None) -> Cluster:
        """The Cluster; ``price_per_gpu_hour`` (USD) overrides the catalog price."""
        over = {}
        if self.gpus_per_node:
            over["gpus_per_node"] = self.gpus_per_node
        if self.nic_gbit_per_s:
            over["nic_bytes_per_s_per_gpu"] = self.nic_gbit_per_s * 1e9 / 8
        if self.host_memory_gib:
            over["host_memory_bytes"] = self.host_memory_gib * 2**30
        if self.nvme_gb_per_s:
            over["nvme_bytes_per_s"] = self.nvme_gb_per_s * 1e9
        try:
            gpu = get_gpu(self.gpu)
            gpu = dataclasses.replace(gpu, power_limit_w=self.power_limit_w) if self.power_limit_w else gpu
            return make_cluster(gpu, self.nodes, self.node, price_usd_per_gpu_hour=price_per_gpu_hour,
                                oversubscription=self.oversubscription, pue=self.pue, **over)
        except KeyError as e:
            raise ValueError(str(e).strip("'\"")) from None


# ---------------------------------------------------------------------------------- resolve

PLAN_FIELDS = tuple(name for name, o in options(Plan).items() if o.section == "plan")
SEARCH_AXES = tuple(name for name, o in options(Plan).items() if o.search is not None)


def resolve_plan(num_gpus: int, training, **fields) -> Plan:
    """The full Plan from per-plan ``fields`` (any of PLAN_FIELDS; missing ones take their
    defaults) and the run's ``training`` settings (a Training, or a dict of Plan's training
    fields). dp fills ``num_gpus``; schedule is interleaved when vpp > 1, else 1F1B; a global
    batch of None is one micro-batch per data-parallel rank. ValueError names the field."""
    unknown = set(fields) - set(PLAN_FIELDS)
    if unknown:
        raise ValueError(f"plan: unknown field(s) {', '.join(sorted(unknown))}; fields: {', '.join(PLAN_FIELDS)}")
    f = {k: v for k, v in fields.items() if v is not None}
    tr = training.plan_kwargs() if hasattr(training, "plan_kwargs") else dict(training)
    framework = tr.pop("framework", None) or getattr(training, "framework", None)
    for k in ("tp", "pp", "cp"):
        f[k] = check_value(Plan, k, f.get(k, 1), where="plan")
    if "dp" not in f:
        denom = f["tp"] * f["pp"] * f["cp"]
        if num_gpus % denom:
            raise ValueError(f"dp: the cluster's {num_gpus} GPUs are not divisible by tp*pp*cp = "
                             f"{f['tp']}*{f['pp']}*{f['cp']} = {denom}")
        f["dp"] = num_gpus // denom
    if f.get("schedule") is None:
        f["schedule"] = "interleaved" if (f.get("vpp") or 1) > 1 else "1f1b"
    if framework:  # the framework's defaults for what is unset (or at the generic default), then its limits
        merged, used = apply_defaults({**_GENERIC, **{k: v for k, v in tr.items() if v is not None}, **f}, framework,
                                      _GENERIC)
        f.update({k: merged[k] for k in PLAN_FIELDS if k not in f and merged.get(k) != _GENERIC[k]})
        if getattr(training, "unset", None) is not None:   # explicit stays explicit; unset: against the layout
            chosen = {u.split("=")[0] for u in used} & set(PLAN_FIELDS)   # plan fields the profile chose
            tr.update({k: v for k, v in training.plan_kwargs({**_GENERIC, **f, "_defaulted": chosen}).items()
                       if tr.get(k) is not None})
        else:   # settings given as a dict: the profile's training-field defaults fill what it leaves out
            tr.update({k: merged[k] for k in tr if tr[k] is not None})
            tr.update({k: merged[k] for k in _TRAINING_PLAN_FIELDS if k not in tr and k in merged})
    if tr.get("global_batch_size") is None:
        per_stage = f["pp"] if framework and get_profile(framework).microbatches == "stages" else 1
        tr["global_batch_size"] = check_value(Plan, "dp", f["dp"], where="plan") * (
            f.get("micro_batch_size") or default_of(Plan, "micro_batch_size")) * per_stage
    plan = Plan(**f, **tr)
    errors = framework_errors(plan, framework)
    if errors:
        raise ValueError("; ".join(errors))
    return plan


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    model: Transformer
    cluster: Cluster
    plan: Plan
    training: Training


def _flag_names() -> dict:
    """CLI flag spelled as a keyword (``global_batch`` for --global-batch) -> field name."""
    out = {}
    for cls in (ClusterInputs, Training, Plan):
        for name in options(cls):
            alias = option(cls, name).flag[2:].replace("-", "_")
            if alias != name:
                out[alias] = name
    return out


def split_inputs(kw: dict) -> tuple[dict, dict, dict]:
    """(cluster, training, plan) keyword arguments out of one flat dict of declared fields (by
    field name or by CLI flag: ``global_batch=`` for --global-batch); ValueError names a key that
    none declares."""
    aliases = _flag_names()
    kw = {aliases.get(k, k): v for k, v in kw.items()}
    cl, tr, pl = options(ClusterInputs), options(Training), options(Plan)
    unknown = set(kw) - set(cl) - set(tr) - set(pl)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown input")
    return ({k: v for k, v in kw.items() if k in cl}, {k: v for k, v in kw.items() if k in tr},
            {k: v for k, v in kw.items() if k in PLAN_FIELDS})


def build_inputs(model: str | Transformer = "gpt3-175b", **kw) -> Inputs:
    """Model, cluster, training settings and resolved plan from flat declared fields (what the
    CLI's options give): names are resolved, defaults filled (see :func:`resolve_plan`)."""
    cl_kw, tr_kw, pl_kw = split_inputs(kw)
    # a field absent or None is unset (the framework's default, else the declared one); a value is explicit,
    # even one equal to the declared default
    training = Training(**{**{k: None for k in _TRAINING_PLAN_FIELDS}, **tr_kw}, unset=frozenset())
    m = model if isinstance(model, Transformer) else resolve_model(model, training.seq_len)
    if isinstance(model, Transformer) and training.seq_len:
        m = m.with_seq_len(training.seq_len)
    prof = get_profile(training.framework)
    if prof is not None and "dropout" in prof.defaults:  # dropout layers are the framework's choice
        m = dataclasses.replace(m, dropout=bool(prof.defaults["dropout"].value))
    cluster = ClusterInputs(**{k: v for k, v in cl_kw.items() if v is not None}).build(training.price_per_gpu_hour)
    return Inputs(m, cluster, resolve_plan(cluster.num_gpus, training, **pl_kw), training)


__all__ = ["Training", "ClusterInputs", "Inputs", "resolve_plan", "build_inputs", "split_inputs", "PLAN_FIELDS",
           "SEARCH_AXES"]
