"""The dev-set comparison as Markdown: per group, per GPU generation and per framework, for each
runs file, and every record; written to docs/dev_set.md.

    python benchmarks/dev_set_table.py                 # both dev files -> docs/dev_set.md
    python benchmarks/dev_set_table.py --summary       # the summary tables only, on stdout (README)
    python benchmarks/dev_set_table.py FILE [FILE...]  # other runs files
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulator.validation.published import predict_runs

ROOT = Path(__file__).resolve().parents[1]
DEV_FILES = (ROOT.parent / "shared" / "validation" / "dev_runs.yaml",
             ROOT.parent / "shared" / "validation" / "dev_runs_2.yaml")


def _table(records: list[dict], key, title: str) -> list[str]:
    """One row per value of ``key(record)``: runs timed, skipped, MAPE, median signed error, memory."""
    groups = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    lines = [f"| {title} | runs timed | skipped | MAPE | median error (signed) | memory scored | memory MAPE |",
             "|---|---|---|---|---|---|---|"]
    for g, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        errs = [r["error"] for r in rs if "error" in r]
        mem = [r["memory_error"] for r in rs if "memory_error" in r]
        sk = sum("skipped" in r for r in rs)
        lines.append(f"| {g} | {len(errs)} | {sk} | " + (f"{np.mean(np.abs(errs)):.1%} | {np.median(errs):+.1%}"
                                                         if errs else "- | -")
                     + f" | {len(mem)} | " + (f"{np.mean(np.abs(mem)):.1%}" if mem else "-") + " |")
    return lines


def _summary(res: dict) -> list[str]:
    out = []
    for key in ("summary_high", "summary"):
        s = res.get(key)
        if s and s.get("count"):
            out.append(f"**{s['reliability']} records**: {s['count']} timed, {s['skipped']} skipped, MAPE "
                       f"{s['mape']:.1%}, median |error| {s['median_abs_error']:.1%}, max |error| "
                       f"{s['max_abs_error']:.1%}")
    oom = [r["id"] for r in res["records"] if r.get("fits") is False and "error" in r]
    out.append(f"**ran but predicted out of memory**: {len(oom)}" + (f" ({', '.join(oom)})" if oom else ""))
    f = res.get("summary_finetune")
    if f and f["count"]:
        mem = (f"GPU memory within 10% on {f['within_10pct']} of {f['memory_count']} (mean |error| "
               f"{f['mean_abs_gpu_error']:.1%}, max {f['max_abs_gpu_error']:.1%}); " if f["memory_count"] else "")
        out.append(f"**fine-tuning and offload records**: {f['count']} scored, {f['skipped']} skipped; {mem}"
                   f"stated fits/OOM reproduced {f['outcomes_reproduced']} of {f['outcomes_stated']}")
    return out


def _finetune(rows: list[dict]) -> list[str]:
    """The fine-tuning memory records (simulator/validation/finetune_records.py): GPU memory or capacity."""
    if not rows:
        return []
    out = ["| fine-tuning record | measured | predicted | error | fits stated / predicted |", "|---|---|---|---|---|"]
    fs = {True: "fits", False: "OOM", None: "-"}
    for r in rows:
        if "skipped" in r:
            out.append(f"| {r['id']} | | | skipped: {r['skipped']} | |")
        elif r.get("kind") == "capacity":
            out.append(f"| {r['id']} | {r['measured_max_params'] / 1e9:.1f} B params | <= "
                       f"{r['predicted_max_params_bound'] / 1e9:.1f} B | | {fs[r['fits_stated']]} / {fs[r['fits_predicted']]} |")
        else:
            meas = f"{r['measured_gpu_bytes'] / 2**30:.2f} GiB" if "measured_gpu_bytes" in r else "-"
            err = f"{r['gpu_error']:+.1%}" if "gpu_error" in r else ""
            out.append(f"| {r['id']} | {meas} | {r['predicted_gpu_bytes'] / 2**30:.2f} GiB | {err} | "
                       f"{fs[r['fits_stated']]} / {fs[r['fits_predicted']]} |")
    return out + [""]


def summary_lines(path: Path, res: dict) -> list[str]:
    recs = res["records"]
    gen = lambda r: r.get("gpu_generation", "(not predicted)")  # noqa: E731
    fw = lambda r: r.get("framework", "(not predicted)")  # noqa: E731
    return [f"### {path.name}", "", *_table(recs, gen, "GPU generation"), "",
            *_table(recs, fw, "framework (as the record states it)"), "", *_finetune(res.get("finetune", [])),
            *_table(recs, lambda r: f"{r.get('group')} ({r.get('reliability')})", "group"), "",
            *("- " + x for x in _summary(res)), ""]


def detail_lines(res: dict) -> list[str]:
    lines = ["| id | GPU | framework | measured s | predicted s | error | MFU | fits | memory error | defaults used |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["records"]:
        if "skipped" in r:
            lines.append(f"| {r['id']} | | | | | skipped: {r['skipped']} | | | | |")
            continue
        if "scored_on" in r:   # a fine-tuning/offload record: scored in the fine-tuning table
            lines.append(f"| {r['id']} | | | | | no time: scored on {r['scored_on']} | | | | |")
            continue
        t = (f"{r['measured_iteration_time_s']:.3f} | {r['predicted_iteration_time_s']:.3f} | {r['error']:+.1%}"
             if "error" in r else f"- | {r['predicted_iteration_time_s']:.3f} | -")
        mem = f"{r['memory_error']:+.1%}" if "memory_error" in r else ""
        lines.append(f"| {r['id']} | {r.get('gpu', '')} | {r.get('framework', '')} | {t} | {r['predicted_mfu']:.2f} | "
                     f"{r['fits']} | {mem} | {', '.join(r.get('defaults', []))} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, default=list(DEV_FILES))
    ap.add_argument("--summary", action="store_true", help="print the summary tables instead of writing the file")
    args = ap.parse_args(argv)
    results = [(p, predict_runs(p)) for p in args.files]
    summary = [line for p, res in results for line in summary_lines(p, res)]
    if args.summary:
        print("\n".join(summary).rstrip())
        return
    doc = ["# Dev set: predicted vs measured", "",
           "Generated by `python benchmarks/dev_set_table.py` from `clustersim published` on each file. Error is "
           "(predicted - measured) / measured iteration time; negative means the model is too fast. Memory error is "
           "the same for peak memory per GPU where the record measured it. No constant is fitted to these runs.", "",
           *summary]
    for p, res in results:
        doc += [f"## {p.name}: every record", "", *detail_lines(res), ""]
    out = ROOT / "docs" / "dev_set.md"
    out.write_text("\n".join(doc).rstrip() + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
