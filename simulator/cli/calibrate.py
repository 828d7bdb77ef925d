"""`clustersim calibrate` and `clustersim validate` (issue 5); registered by simulator/cli/app.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

from simulator.cli.app import Force, Option, app, echo, output_format
from simulator.files import check_output_path, input_files, output_json, strict_json, write_output

Device = Annotated[str, Option("--device", help="cpu | cuda")]
Threads = Annotated[int, Option("--threads", help="CPU threads per device (rank); ignored on cuda")]


def _need_torch(command: str) -> None:
    if importlib.util.find_spec("torch") is None:
        raise ValueError(f"{command}: needs PyTorch; install it with `pip install -e .[torch]`")


def _check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: {device!r} unknown; choose cpu or cuda")
    return device


# Bounds of the small model shape calibrate/validate measure on one machine.
SHAPE_LIMITS = {"layers": 1024, "hidden": 65536, "heads": 1024, "kv-heads": 1024, "ffn-hidden": 1 << 18,
                "vocab": 1 << 20, "seq-len": 1 << 20, "micro-batch": 4096, "tp": 1024, "steps": 100_000,
                "threads": 1024, "ranks": 1024}


def check_shape(**values) -> None:
    """ValueError naming the flag when a shape option is not a whole number in [1, its limit]
    (``warmup`` may be 0); None means the option was left out."""
    for name, v in values.items():
        flag = name.replace("_", "-")
        lo = 0 if flag == "warmup" else 1
        hi = SHAPE_LIMITS.get(flag, 100_000)
        if v is not None and not lo <= v <= hi:
            raise ValueError(f"{flag}: must be in [{lo}, {hi:,}], got {v}")
    heads, kv = values.get("heads"), values.get("kv_heads")
    if heads and values.get("hidden") and values["hidden"] % heads:
        raise ValueError(f"heads: {heads} does not divide hidden={values['hidden']}")
    if heads and kv and heads % kv:
        raise ValueError(f"kv-heads: {kv} does not divide heads={heads}")


def profile_summary(d: dict) -> list[str]:
    """Human-readable lines about a profile dict."""
    from simulator.validation.calibrate.profile import hardware_profile
    hp = hardware_profile(d)
    lines = [f"device:     {hp.device}", f"provenance: {hp.source}",
             "peak GEMM:  " + ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in d["peak_flops_per_s"].items()),
             "GEMM efficiency vs size: " + ", ".join(f"2^{x:g} FLOP {e:.2f}" for x, e in
                                                      zip(hp.gemm_log2_flops, hp.gemm_efficiency))]
    soak = d.get("soak") or {}
    if soak.get("sustained_flops_per_s"):
        lines.append(f"sustained GEMM after a {soak['seconds']:g} s soak ({soak['size']}^3 {soak['dtype']}): "
                     f"{soak['sustained_flops_per_s'] / 1e12:.1f} TFLOP/s")
    if hp.attn_fwd_efficiency:
        lines.append(f"attention (SDPA, causal): fwd {hp.attn_fwd_efficiency:.3f}, bwd {hp.attn_bwd_efficiency:.3f} of peak")
    ops = ", ".join(f"{o['op']} {o['bytes_per_s'] / 1e9:.1f}" for o in d.get("memory_ops", []))
    lines.append(f"memory-bound ops (GB/s): {ops}")
    if hp.memory_bytes_per_s:
        lines.append(f"memory-bound rate used by the model: {hp.memory_bytes_per_s / 1e9:.2f} GB/s (median of layer ops)")
    lines.append(f"smallest-op overhead: {d.get('kernel_overhead_s', 0) * 1e6:.1f} us")
    coll = d.get("collectives")
    if coll:
        fits = ", ".join(f"{k} alpha {v['alpha_s'] * 1e6:.0f} us busbw {v['busbw_bytes_per_s'] / 1e9:.2f} GB/s"
                         for k, v in coll.get("fit", {}).items())
        lines.append(f"collectives ({coll['backend']}, {coll['world_size']} ranks): {fits}")
    return lines


@app.command("calibrate")
def calibrate_cmd(
    device: Device = "cpu",
    output: Annotated[Path, Option("-o", "--output", help="profile YAML to write")] = Path("profile.yaml"),
    quick: Annotated[bool, Option("--quick", help="small grids and few repeats (CI)")] = False,
    dtype: Annotated[str, Option("--dtype", help="bf16 | fp16 | fp32 for the GEMM table")] = "bf16",
    threads: Threads = 1,
    ranks: Annotated[int | None, Option("--ranks", help="processes/GPUs for the collectives "
                                                 "(default: cores/threads or all GPUs; 1 skips them)")] = None,
    hidden: Annotated[int, Option("--hidden", help="model shape the layer GEMMs are taken from")] = 256,
    heads: Annotated[int, Option("--heads")] = 4,
    kv_heads: Annotated[int | None, Option("--kv-heads")] = None,
    ffn_hidden: Annotated[int | None, Option("--ffn-hidden")] = None,
    vocab: Annotated[int, Option("--vocab")] = 512,
    seq_len: Annotated[int, Option("--seq-len")] = 512,
    micro_batch: Annotated[int, Option("--micro-batch")] = 2,
    tp: Annotated[int, Option("--tp")] = 1,
    swiglu: Annotated[bool, Option("--swiglu/--gelu", help="three FFN matrices (SwiGLU) or two")] = False,
    force: Force = False,
) -> None:
    """Measure GEMMs, attention, memory-bound ops, copies and collectives; write a profile YAML."""
    _check_device(device)
    check_shape(hidden=hidden, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn_hidden, vocab=vocab, seq_len=seq_len,
                micro_batch=micro_batch, tp=tp, threads=threads, ranks=ranks)
    check_output_path(output, "profile", (), force)  # before the measurements
    _need_torch("calibrate")
    from simulator.validation.calibrate.microbench import DTYPES
    from simulator.validation.calibrate.profile import run_calibration, write_profile
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} unknown; choose one of {', '.join(DTYPES)}")
    if threads < 1:
        raise ValueError("threads: must be >= 1")
    target = {"hidden": hidden, "num_heads": heads, "num_kv_heads": kv_heads or heads,
              "ffn_hidden": ffn_hidden or 4 * hidden, "vocab": vocab, "seq_len": seq_len,
              "micro_batch": micro_batch, "tp": tp, "ffn_matrices": 3 if swiglu else 2}
    d = run_calibration(device, quick=quick, dtype=dtype, threads=threads, world_size=ranks, target=target,
                        progress=lambda m: echo(f"measuring {m} ...", err=True))
    write_output(output, lambda t: write_profile(d, t), "profile", (), force)
    for line in profile_summary(d):
        echo(line)
    foreign = d.get("foreign_cpu_share")
    if foreign is not None and foreign > 0.15:
        echo(f"warning: other programs took {foreign:.0%} of the CPU while measuring; the rates may be low. "
                   "Calibrate again on an idle machine.", err=True)
    echo(f"wrote {output}")

@app.command("validate")
def validate_cmd(
    device: Device = "cpu",
    profile: Annotated[Path | None, Option("--profile", help="profile YAML from `clustersim calibrate` "
                                                    "(default: run a quick calibration first)")] = None,
    json_out: Annotated[bool, Option("--json", help="print {\"records\": [...]} as JSON on stdout instead of "
                                           "the table")] = False,
    output: Annotated[Path | None, Option("-o", "--output", help="write {\"records\": [...]} here (.json)")] = None,
    plans: Annotated[str | None, Option("--plans", help="comma list of impls to run: "
                                                 "single,ddp,zero1,fsdp (default: all that fit)")] = None,
    layers: Annotated[int, Option("--layers")] = 4,
    hidden: Annotated[int, Option("--hidden")] = 256,
    heads: Annotated[int, Option("--heads")] = 4,
    kv_heads: Annotated[int | None, Option("--kv-heads", help="GQA: fewer K/V heads")] = None,
    ffn_hidden: Annotated[int | None, Option("--ffn-hidden")] = None,
    vocab: Annotated[int, Option("--vocab")] = 512,
    seq_len: Annotated[int, Option("--seq-len")] = 512,
    activation: Annotated[str, Option("--activation", help="gelu | swiglu")] = "gelu",
    steps: Annotated[int, Option("--steps", help="timed steps per plan (after warm-up)")] = 4,
    warmup: Annotated[int, Option("--warmup")] = 2,
    threads: Annotated[int | None, Option("--threads", help="CPU threads per rank "
                                                   "(default: the profile's)")] = None,
    force: Force = False,
) -> None:
    """Train a small GPT under each plan the machine runs; measured vs predicted step time and memory."""
    _check_device(device)
    check_shape(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn_hidden, vocab=vocab,
                seq_len=seq_len, steps=steps, warmup=warmup, threads=threads)
    inputs = input_files(profile)
    if output is not None:
        output_format(output, (".json",), "output")
        check_output_path(output, "validate", inputs, force, "output")  # before the runs
    _need_torch("validate")
    from simulator.validation import validate as v
    from simulator.validation import validate_report as vr
    from simulator.validation.calibrate.gpt import GPTConfig
    if steps < 1 or warmup < 0:
        raise ValueError("steps: must be >= 1 (and warmup >= 0)")
    cfg = GPTConfig(num_layers=layers, hidden=hidden, num_heads=heads, num_kv_heads=kv_heads or heads,
                    ffn_hidden=ffn_hidden or (4 * hidden if activation == "gelu" else _swiglu_ffn(hidden)),
                    vocab=vocab, seq_len=seq_len, activation=activation)
    run = None
    if plans:
        wanted = [p.strip() for p in plans.split(",") if p.strip()]
        bad = [p for p in wanted if p not in v.IMPLS]
        if bad:
            raise ValueError(f"plans: {', '.join(bad)} unknown; choose from {', '.join(v.IMPLS)}")
        run = wanted
    records = v.validate(cfg, None, device, profile, steps, warmup, threads,
                         progress=lambda m: echo(m, err=True), impls=run)
    doc = {"model": v.config_dict(cfg), "summary": vr.summary(records), "records": records}
    echo(strict_json(doc) if json_out else vr.format_table(records))
    if output is not None:
        write_output(output, output_json(doc, "validate"), "validate", inputs, force, "output")
        if not json_out:
            echo(f"wrote {output}")


def _swiglu_ffn(hidden: int) -> int:
    """Llama's SwiGLU width: 8h/3 rounded up to a multiple of 64 (Touvron et al. 2023)."""
    return -(-8 * hidden // 3 // 64) * 64
