"""Readable text reports of estimates and published-run comparisons (shared by the CLI)."""

from __future__ import annotations

import math

from models.estimate import StepEstimate
from models.units import GIB


def _gib(x: float) -> str:
    return f"{x / GIB:8.2f} GiB"


def estimate_report(model, cluster, est: StepEstimate) -> str:
    p = est.plan
    lines = [
        f"clustersim estimate: {model.name} ({model.num_params / 1e9:.1f}B params"
        + (f", {model.num_active_params / 1e9:.1f}B active" if model.is_moe else "") + f", seq {model.seq_len})"
        f" on {cluster.num_gpus} x {cluster.gpu.name} ({cluster.num_nodes} x {cluster.node.name})",
        f"plan {p.plan_id}: {p.num_microbatches} micro-batches of {p.micro_batch_size}, global batch "
        f"{p.global_batch_size}, {p.dtype}, attention {p.attention}",
        "",
        f"iteration time      {est.step_time_s:10.3f} s",
        f"  compute           {est.compute_s:10.3f} s  ({est.compute_s / est.step_time_s:5.1%})",
        f"  exposed comm      {est.exposed_comm_s:10.3f} s  ({est.exposed_comm_s / est.step_time_s:5.1%})  "
        + ", ".join(f"{k} {v:.3f}" for k, v in est.exposed_comm_by_kind_s.items() if v > 0),
        f"  pipeline bubble   {est.bubble_s:10.3f} s  ({est.bubble_s / est.step_time_s:5.1%})",
        f"tokens/s            {est.tokens_per_s:12,.0f}",
        f"model TFLOP/s/GPU   {est.tflops_per_gpu:10.1f}",
        f"MFU / HFU           {est.mfu:9.1%} / {est.hfu:.1%}",
        "",
        f"memory per GPU (largest rank) vs HBM {_gib(est.hbm_bytes).strip()}:",
    ]
    for k, v in est.memory.as_dict().items():
        lines.append(f"  {k.replace('_bytes', ''):14s} {_gib(v)}")
    lines.append(f"  {'total':14s} {_gib(est.peak_memory_bytes)}  -> "
                 + ("fits" if est.fits else "OUT OF MEMORY"))
    lines += _finetune_lines(cluster, est)
    if len(est.memory_by_stage) > 1:
        lines.append("memory by pipeline stage (GiB): params grads optim activ other | total")
        for i, s in enumerate(est.memory_by_stage):
            d = s.as_dict()
            lines.append(f"  stage {i:3d}: " + " ".join(f"{v / GIB:6.2f}" for v in d.values())
                         + f" | {s.total_bytes / GIB:6.2f}" + ("  OOM" if s.total_bytes > est.hbm_bytes else ""))
    lines.append("")
    lines.append("verdict: " + ("fits in memory" if est.fits else
                                f"OUT OF MEMORY by {(est.peak_memory_bytes - est.hbm_bytes) / GIB:.1f} GiB"
                                if est.peak_memory_bytes > est.hbm_bytes else "OUT OF HOST MEMORY (see warning)"))
    for w in est.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def _finetune_lines(cluster, est: StepEstimate) -> list[str]:
    """Trainable parameters, host memory, PCIe/NVMe traffic and offload time, when fine-tuning or offloading."""
    p, out = est.plan, []
    if p.finetune != "none" or p.optimizer != "adamw":
        out.append(f"trainable params    {est.trainable_params:16,.0f}  of {est.params:,.0f} "
                   f"({est.trainable_params / est.params:.3%}; {p.finetune}, optimizer {p.optimizer})")
    if p.offload != "none":
        cap = cluster.node.host_memory_bytes
        out += [f"host memory / node  {_gib(est.host_memory_bytes)}  of {_gib(cap).strip() if cap else 'unstated'}"
                f" ({p.offload} -> {p.offload_to})"
                + ("" if not cap or est.host_memory_bytes <= cap else "  DOES NOT FIT"),
                f"PCIe per GPU/step   {est.pcie_bytes_per_step / 1e9:10.2f} GB"
                + (f";  NVMe per node/step {est.nvme_bytes_per_step / 1e9:.2f} GB" if p.offload_to == "nvme" else ""),
                f"offload time        {est.offload_s:10.3f} s  (not hidden behind compute)"]
    return out


def published_table(result: dict):
    """The `published` comparison as a rich Table: full run ids and reliability, one row per record."""
    from rich.table import Table
    t = Table(title="published runs: measured vs predicted iteration time")
    for col, just in (("id", "left"), ("reliability", "left"), ("measured s", "right"), ("predicted s", "right"),
                      ("error", "right"), ("MFU", "right"), ("fits", "left")):
        t.add_column(col, justify=just, overflow="fold")
    for r in result["records"]:
        rel = str(r.get("reliability", ""))
        if "skipped" in r:
            t.add_row(r["id"], rel, "", "", "", "", f"skipped: {r['skipped']}")
            continue
        if "scored_on" in r:   # a fine-tuning/offload record: no time, scored on memory below
            t.add_row(r["id"], rel, "", "", "", "", f"no time: scored on {r['scored_on']}")
            continue
        t.add_row(r["id"], rel, f"{r['measured_iteration_time_s']:.3f}", f"{r['predicted_iteration_time_s']:.3f}",
                  f"{r['error']:+.1%}", f"{r['predicted_mfu']:.2f}", "yes" if r["fits"] else "NO")
    return t


def published_report(result: dict, width: int = 200) -> str:
    """The `published` report as text: the rich table (ids and reliability never cut), then the summaries."""
    import io

    from rich.console import Console
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(published_table(result))
    lines = [buf.getvalue().rstrip("\n")]
    for key in ("summary", "summary_high"):
        s = result.get(key)
        if s and not s["count"]:   # nothing compared: no error statistics (not "MAPE nan%")
            lines.append(f"{s['reliability']} records: none compared (skipped {s['skipped']})")
        elif s:
            lines.append(f"{s['reliability']} records: count {s['count']}, skipped {s['skipped']}, MAPE {s['mape']:.1%}, "
                         f"median abs error {s['median_abs_error']:.1%}, max abs error {s['max_abs_error']:.1%}")
    if result.get("finetune"):
        from simulator.validation.finetune_records import table_lines
        f = result["summary_finetune"]
        lines += ["", "fine-tuning and offload records: GPU memory, capacity and fits/OOM", *table_lines(result["finetune"])]
        mem = (f"GPU memory within 10% on {f['within_10pct']} of {f['memory_count']} (mean |error| "
               f"{f['mean_abs_gpu_error']:.1%}, max {f['max_abs_gpu_error']:.1%}); " if f["memory_count"] else "")
        lines.append(f"fine-tuning records: {f['count']} scored, {f['skipped']} skipped; {mem}fits/OOM reproduced "
                     f"{f['outcomes_reproduced']} of {f['outcomes_stated']}")
    return "\n".join(lines)


def _dur(s: float) -> str:
    if not math.isfinite(s):
        return "inf"
    if s >= 2 * 86400:
        return f"{s / 86400:.1f} days"
    if s >= 2 * 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _g(x: float) -> str:
    """A readable number: thousands separators from 1,000, else 3 significant figures."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def run_report_lines(run) -> list[str]:
    """Text lines describing a TrainingRun (shared by `estimate` and `train-time`)."""
    if run.iters_per_checkpoint >= run.iterations:
        interval = "none: the whole run is shorter than the optimum interval"
    else:
        interval = f"every {run.iters_per_checkpoint:,} iterations = {_dur(run.checkpoint_interval_s)}"
    return [
        f"time to train {run.tokens:.3g} tokens ({run.iterations:,} iterations) on {run.num_gpus:,} GPUs:",
        f"  failure-free        {_dur(run.failure_free_s):>12s}",
        f"  with failures       {_dur(run.time_to_train_s):>12s}  (goodput {run.goodput:.1%}; "
        f"checkpoints {_dur(run.checkpoint_s)}, lost work {_dur(run.lost_work_s)}, restarts {_dur(run.restart_total_s)})",
        f"  expected failures   {run.expected_failures:12.3g}  (job MTBF {_dur(run.mtbf_s)})",
        f"  GPU-hours           {_g(run.gpu_hours):>12s}",
        f"  cost                {'$' + _g(run.cost_usd):>12s}  (failure-free ${_g(run.failure_free_cost_usd)})",
        f"  energy              {_g(run.energy_kwh):>12s} kWh  (failure-free {_g(run.failure_free_energy_kwh)} kWh)",
        f"checkpoint: {run.checkpoint_bytes / 1e9:,.4g} GB, write {_dur(run.checkpoint_write_s)}, stall "
        f"{_dur(run.checkpoint_blocking_s)} ({'async' if run.async_checkpoint else 'blocking'}), restart "
        f"{_dur(run.restart_s)}",
        f"  interval: {interval} (optimum exact {_dur(run.exact_interval_s)}, Young {_dur(run.young_interval_s)}, "
        f"Daly {_dur(run.daly_interval_s)})",
    ]


def cost_report_lines(cost: dict, run, price_per_gpu_hour_usd: float) -> list[str]:
    """The cost lines `clustersim estimate` prints after the step report."""
    lines = ["", f"cost per iteration  ${_g(cost['cost_usd_per_iteration'])} at ${price_per_gpu_hour_usd:.2f}/GPU-hour, "
             f"{_g(cost['energy_kwh_per_iteration'])} kWh; ${_g(cost['cost_usd_per_million_tokens'])} per million tokens",
             f"(tokens: {cost['default_tokens_rule']}; `--tokens N` for another budget)"]
    return lines + run_report_lines(run)
