"""The calibration profile: run the microbenchmarks, write/read the YAML, and turn it into the
models.profile.HardwareProfile (and, for a CPU, a GpuSpec describing the CPU) that the
analytical model uses in place of datasheet defaults.

Profile YAML (format ``clustersim-profile/1``), all SI units:
  device: {kind: cpu|cuda, name, num_threads, memory_bytes, ...}
  software: {torch, python, cuda, driver, platform};  date (UTC, ISO 8601);  host
  dtype; peak_flops_per_s: {bf16: .., fp32: ..}   best GEMM rate measured per dtype
  gemm: [{m, n, k, dtype, time_s, flops_per_s}]   layer shapes (fwd, dgrad, wgrad) + squares
  attention: [{seq_len, head_dim, num_heads, fwd_s, bwd_s, fwd_flops_per_s, ...}]
  memory_ops: [{op, num_bytes, time_s, bytes_per_s}]; copy_bytes_per_s; kernel_overhead_s
  collectives: {backend, world_size, results: [...], fit: {kind: {alpha_s, busbw_bytes_per_s}}}
  target: the model shape the layer GEMMs and attention were measured for
  foreign_cpu_share: share of the CPU other programs took during the calibration (/proc/stat)
Only this module and microbench.py import torch; reading a profile needs no torch.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import socket
import statistics
from pathlib import Path

import yaml

from models.hardware import GpuSpec, NodeSpec, get_gpu, make_cluster
from models.profile import HardwareProfile

FORMAT = "clustersim-profile/1"
# Memory-bound ops whose median achieved bandwidth becomes HardwareProfile.memory_bytes_per_s:
# the elementwise ops a GPT layer and its optimizer run (the copy is reported separately).
LAYER_MEMORY_OPS = ("layernorm", "gelu", "swiglu", "softmax", "residual_add", "adam")

DEFAULT_TARGET = {"hidden": 256, "num_heads": 4, "num_kv_heads": 4, "ffn_hidden": 1024, "vocab": 512,
                  "seq_len": 512, "micro_batch": 2, "tp": 1, "ffn_matrices": 2}


# ------------------------------------------------------------------ measuring

def _device_info(device: str, threads: int) -> dict:
    import torch
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        return {"kind": "cuda", "name": p.name, "memory_bytes": int(p.total_memory),
                "num_sms": int(p.multi_processor_count), "count": torch.cuda.device_count()}
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"kind": "cpu", "name": _cpu_name(), "num_threads": threads, "logical_cpus": os.cpu_count(),
            "memory_bytes": int(mem)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _software(device: str) -> dict:
    import torch
    sw = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if device.startswith("cuda"):
        sw["cuda"] = torch.version.cuda
        try:
            import subprocess
            sw["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                          capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            sw["driver"] = "unknown"
    return sw


def run_calibration(device: str = "cpu", quick: bool = False, dtype: str = "bf16", threads: int = 1,
                    world_size: int | None = None, target: dict | None = None, progress=None) -> dict:
    """Measure everything on ``device`` and return the profile dict (see the module docstring).

    On CPU a "device" is ``threads`` cores (default 1, so that N ranks fit on N cores);
    ``world_size`` ranks run the collectives (default: cores // threads on CPU, all GPUs on CUDA;
    skipped when 1). ``quick`` shrinks the grids for CI."""
    import torch
    device = "cuda" if device.startswith("cuda") else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but torch.cuda.is_available() is False")
    from simulator.validation.calibrate.microbench import cpu_clock, foreign_cpu_share
    old = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(threads)
    start = cpu_clock()
    try:
        prof = _calibrate(device, quick, dtype, threads, world_size, target, progress or (lambda msg: None))
    finally:
        torch.set_num_threads(old)
    # share of the CPU other programs took while measuring: above ~0.15 the rates are not this hardware's
    prof["foreign_cpu_share"] = foreign_cpu_share(start, cpu_clock())
    return prof


# Seconds of back-to-back large GEMMs before a GPU is timed: long enough for the board to reach its
# power limit and the SM clock to settle (mamf-finder.py soaks until the clock stops dropping).
SOAK_S, SOAK_S_QUICK = 30.0, 5.0


def _calibrate(device, quick, dtype, threads, world_size, target, say) -> dict:
    import torch

    from simulator.validation.calibrate import microbench as mb
    tg = {**DEFAULT_TARGET, **(target or {})}
    reps = dict(warmup=1, repeats=3) if quick else dict(warmup=3, repeats=7)
    prof = {"format": FORMAT, "device": _device_info(device, threads), "software": _software(device),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "host": socket.gethostname(),
            "dtype": dtype, "target": tg, "timing": {**reps, "statistic": "median",
                                                     "method": "cuda events" if device == "cuda" else "perf_counter"}}
    dev = "cuda:0" if device == "cuda" else "cpu"
    say("GEMMs")
    shapes = mb.layer_gemm_shapes(tg["hidden"], tg["num_heads"], tg["num_kv_heads"], tg["ffn_hidden"], tg["vocab"],
                                  tg["seq_len"], tg["micro_batch"], tg["tp"], tg["ffn_matrices"])
    squares = [256, 512, 1024] if quick else [128, 256, 512, 1024, 2048]
    if device == "cuda":
        squares = [1024, 2048, 4096, 8192] if quick else [512, 1024, 2048, 4096, 8192, 16384]
        # time at the settled clock a long training run sees, not a cold GPU's boost
        say("soak (sustained clock)")
        prof["soak"] = mb.soak_gemm(SOAK_S_QUICK if quick else SOAK_S, 8192, dtype, dev)
    gemms = [dict(mb.bench_gemm(m, n, k, dtype, dev, **reps), name=name) for m, n, k, name in shapes]
    gemms += [dict(mb.bench_gemm(s, s, s, dtype, dev, **reps), name="square") for s in squares]
    peaks = {dtype: max(g["flops_per_s"] for g in gemms)}
    big = squares[-2]
    for other in ("fp32", "fp16", "bf16"):
        if other not in peaks:
            peaks[other] = mb.bench_gemm(big, big, big, other, dev, **reps)["flops_per_s"]
    prof["peak_flops_per_s"] = peaks
    prof["gemm"] = gemms
    say("attention")
    d = tg["hidden"] // tg["num_heads"]
    seqs = sorted({tg["seq_len"], 256} if quick else {tg["seq_len"], 256, 1024})
    dims = sorted({d} if quick else {d, 64, 128})
    prof["attention"] = [mb.bench_attention(s, hd, tg["num_heads"], tg["micro_batch"], tg["num_kv_heads"], dtype,
                                            dev, **reps) for s in seqs for hd in dims]
    say("memory-bound ops")
    n = (1 << 20) if quick else (1 << 22)
    if device == "cuda":
        n = 1 << 26
    ops = mb.bench_memory_ops(n, tg["hidden"], dtype, dev, **reps)
    ops.append(mb.bench_adam(n, dtype, dev, **reps))
    prof["memory_ops"] = ops
    prof["copy_bytes_per_s"] = next(o["bytes_per_s"] for o in ops if o["op"] == "copy")
    prof["kernel_overhead_s"] = mb.kernel_overhead_s(dev)
    if world_size is None:
        world_size = torch.cuda.device_count() if device == "cuda" else max(1, (os.cpu_count() or 1) // threads)
    if world_size > 1:
        say(f"collectives over {world_size} ranks")
        sizes = (1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22) if quick else tuple(1 << e for e in range(14, 25))
        if device == "cuda":
            sizes = (1 << 20, 1 << 24, 1 << 28) if quick else tuple(1 << e for e in range(16, 31, 2))
        # collectives are cheap to repeat and noisy on a shared host: at least 9 repeats each
        prof["collectives"] = mb.bench_collectives(world_size, sizes, dtype, dev, threads, warmup=reps["warmup"],
                                                   repeats=max(9, reps["repeats"]))
    return prof


# ------------------------------------------------------------------ reading and writing

def write_profile(profile: dict, path: str | Path) -> Path:
    """Write the profile as YAML (floats as Python floats); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(_plain(profile), sort_keys=False))
    return p


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, str):
        return str(x)       # torch.__version__ is a str subclass yaml cannot represent
    if hasattr(x, "item"):
        return x.item()
    return x


def read_profile(path: str | Path) -> dict:
    """Load and check a profile YAML; ValueError naming the file and field when it is malformed."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"profile: no such file {str(p)!r}; run `clustersim calibrate -o {p}` first")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{p}: format: expected {FORMAT!r} (a file written by `clustersim calibrate`)")
    for key in ("device", "dtype", "peak_flops_per_s", "gemm"):
        if key not in d:
            raise ValueError(f"{p}: missing field {key!r}")
    if d["device"].get("kind") not in ("cpu", "cuda"):
        raise ValueError(f"{p}: device.kind: expected cpu or cuda, got {d['device'].get('kind')!r}")
    bad = [g for g in d["gemm"] if not (g.get("time_s", 0) > 0 and g.get("flops_per_s", 0) > 0)]
    if bad or not d["gemm"]:
        raise ValueError(f"{p}: gemm: every entry needs time_s > 0 and flops_per_s > 0")
    return d


def _gemm_table(gemms, dtype, peak, bin_log2=0.25):
    """(log2 FLOPs, efficiency) ascending; GEMMs in one bin merged as total FLOPs / total time."""
    bins: dict[float, list] = {}
    for g in gemms:
        if g.get("dtype", dtype) != dtype:
            continue
        flops = 2.0 * g["m"] * g["n"] * g["k"]
        key = round(math.log2(flops) / bin_log2) * bin_log2
        b = bins.setdefault(key, [0.0, 0.0])
        b[0] += flops
        b[1] += g["time_s"]
    xs = sorted(bins)
    return tuple(xs), tuple(min(1.0, bins[x][0] / bins[x][1] / peak) for x in xs)


def _attention_at(d: dict, peak: float):
    """(fwd, bwd) efficiency at the target shape if measured, else the median over the grid."""
    att = d.get("attention") or []
    if not att:
        return None, None
    tg = d.get("target") or {}
    hd = tg.get("hidden", 0) // max(tg.get("num_heads", 1), 1)
    at = [a for a in att if a["seq_len"] == tg.get("seq_len") and a["head_dim"] == hd] or att
    fwd = statistics.median(a["fwd_flops_per_s"] for a in at) / peak
    bwd = statistics.median(a["bwd_flops_per_s"] for a in at) / peak
    return fwd, bwd


def provenance(d: dict) -> str:
    sw = d.get("software", {})
    parts = [f"measured by clustersim calibrate on {d['device'].get('name')}", f"torch {sw.get('torch')}"]
    if sw.get("cuda"):
        parts.append(f"CUDA {sw['cuda']}, driver {sw.get('driver')}")
    if d["device"].get("kind") == "cpu":
        parts.append(f"{d['device'].get('num_threads')} thread(s) per device")
    parts += [f"date {d.get('date')}", f"host {d.get('host')}"]
    return "; ".join(parts)


def hardware_profile(d: dict) -> HardwareProfile:
    """The models.profile.HardwareProfile of a profile dict."""
    dtype = d["dtype"]
    peak = float(d["peak_flops_per_s"][dtype])
    xs, effs = _gemm_table(d["gemm"], dtype, peak)
    fwd, bwd = _attention_at(d, peak)
    ops = {o["op"]: o["bytes_per_s"] for o in d.get("memory_ops", [])}
    layer_ops = [ops[k] for k in LAYER_MEMORY_OPS if k in ops]
    fits = (d.get("collectives") or {}).get("fit") or {}
    fit = fits.get("all_reduce") or {}
    per_kind = tuple((k, float(v["busbw_bytes_per_s"])) for k, v in sorted(fits.items())
                     if isinstance(v, dict) and v.get("busbw_bytes_per_s"))
    alphas = tuple((k, float(v["alpha_s"])) for k, v in sorted(fits.items())
                   if isinstance(v, dict) and v.get("alpha_s") is not None)
    return HardwareProfile(
        device=f"{d['device']['kind']}: {d['device'].get('name')}", source=provenance(d), dtype=dtype,
        peak_flops_per_s=peak, gemm_log2_flops=xs, gemm_efficiency=effs, attn_fwd_efficiency=fwd,
        attn_bwd_efficiency=bwd, memory_bytes_per_s=statistics.median(layer_ops) if layer_ops else None,
        kernel_overhead_s=d.get("kernel_overhead_s"), allreduce_alpha_s=fit.get("alpha_s"),
        allreduce_busbw_bytes_per_s=fit.get("busbw_bytes_per_s"), collective_busbw_bytes_per_s=per_kind,
        collective_alpha_s=alphas, collective_world=int((d.get("collectives") or {}).get("world_size") or 0),
        collective_points=_collective_points(d))


def _collective_points(d: dict) -> tuple:
    """((kind, ((bytes, seconds), ...)), ...): the timed collectives of the profile, one median per size."""
    by_kind: dict[str, dict[int, float]] = {}
    for r in (d.get("collectives") or {}).get("results") or []:
        if r.get("time_s", 0) > 0 and r.get("num_bytes", 0) > 0:
            by_kind.setdefault(r["kind"], {})[int(r["num_bytes"])] = float(r["time_s"])
    return tuple((k, tuple(sorted(v.items()))) for k, v in sorted(by_kind.items()))


def cpu_gpu_spec(d: dict) -> GpuSpec:
    """A GpuSpec describing one CPU "device" of the profile: peak = best measured GEMM rate per
    dtype, capacity = RAM, bandwidth = measured copy rate, link = measured gloo all-reduce bus
    bandwidth (the copy rate when no collective was measured); gemm_efficiency 1 because the
    peak is itself measured."""
    dev = d["device"]
    peaks = d["peak_flops_per_s"]
    bf16 = float(peaks.get("bf16") or peaks[d["dtype"]])
    copy = float(d.get("copy_bytes_per_s") or 1e10)
    fit = ((d.get("collectives") or {}).get("fit") or {}).get("all_reduce") or {}
    link = float(fit.get("busbw_bytes_per_s") or copy)
    fp32 = float(peaks.get("fp32") or bf16)
    return GpuSpec(name=f"cpu-{dev.get('num_threads', 1)}t", hbm_bytes=float(dev["memory_bytes"]),
                   hbm_bytes_per_s=copy, peak_fp32_flops_per_s=fp32, peak_tf32_flops_per_s=fp32,
                   peak_bf16_flops_per_s=bf16, peak_fp16_flops_per_s=float(peaks.get("fp16") or bf16),
                   peak_fp8_flops_per_s=0.0, nvlink_bytes_per_s=link, nvlink_busbw_bytes_per_s=link,
                   gemm_efficiency=1.0, num_sms=int(dev.get("num_threads", 1)), tdp_w=0.0, price_usd_per_hour=0.0,
                   source=provenance(d))


def cpu_cluster(d: dict, num_ranks: int = 1):
    """A one-node cluster of ``num_ranks`` CPU devices (processes) described by the profile."""
    node = NodeSpec("cpu-host", num_ranks, num_ranks, nic_bytes_per_s_per_gpu=cpu_gpu_spec(d).nvlink_bytes_per_s,
                    nic_efficiency=1.0, node_overhead_w=0.0, source="the calibrated host (one node)")
    return make_cluster(cpu_gpu_spec(d), 1, node=node, profile=hardware_profile(d))


def catalog_gpu_name(device_name: str) -> str | None:
    """Catalog GPU of a CUDA device name ("NVIDIA H100 80GB HBM3" -> h100-sxm-80gb), or None."""
    t = device_name.upper().replace(" ", "")
    for key, name in (("H800", "h800"), ("H200", "h200"), ("H100", "h100"), ("GB200", "gb200"), ("B200", "b200"),
                      ("A10080GB", "a100-80gb"), ("A100-SXM4-80GB", "a100-80gb"), ("A100", "a100-40gb"),
                      ("V100", "v100"), ("MI300X", "mi300x")):
        if key in t:
            return get_gpu(name).name
    return None


def cluster_with_profile(cluster, profile):
    """``cluster`` with the measured profile attached when it was measured on the cluster's GPU
    model; unchanged otherwise (``clustersim published --profile`` uses this per run).

    ``profile``: a path, a profile dict, or a list of them (the first of the cluster's GPU wins)."""
    if isinstance(profile, (list, tuple)):
        for one in profile:
            new = cluster_with_profile(cluster, one)
            if new is not cluster:
                return new
        return cluster
    d = profile if isinstance(profile, dict) else read_profile(profile)
    if d["device"]["kind"] != "cuda" or catalog_gpu_name(d["device"].get("name", "")) != cluster.gpu.name:
        return cluster
    hp = hardware_profile(d)
    gpu = cluster.gpu
    if hp.allreduce_busbw_bytes_per_s:   # measured NCCL bus bandwidth inside one node replaces the datasheet's
        gpu = dataclasses.replace(gpu, nvlink_busbw_bytes_per_s=hp.allreduce_busbw_bytes_per_s,
                                  source=f"{gpu.source}; NVLink busbw {provenance(d)}")
    return dataclasses.replace(cluster, gpu=gpu, profile=hp)


def apply_profile(inputs, path: str | Path):
    """Inputs with the profile applied (``clustersim estimate --profile``).

    CUDA profile: attached to the cluster when its GPU is the one measured; ValueError otherwise
    (a profile of one GPU model says nothing about another). CPU profile: the cluster's devices
    become the calibrated CPU (cpu_gpu_spec), one node holding all ranks of the plan."""
    d = read_profile(path)
    cl = inputs.cluster
    if d["device"]["kind"] == "cuda":
        new = cluster_with_profile(cl, d)
        if new is cl:
            raise ValueError(f"profile: {path} was measured on {d['device'].get('name')!r} but --gpu is "
                             f"{cl.gpu.name}; use a profile of that GPU or drop --profile")
        return dataclasses.replace(inputs, cluster=new)
    node = dataclasses.replace(cl.node, name="cpu-host", gpus_per_node=cl.num_gpus, nvlink_domain_gpus=cl.num_gpus)
    new = dataclasses.replace(cl, gpu=cpu_gpu_spec(d), num_nodes=1, node=node, profile=hardware_profile(d))
    return dataclasses.replace(inputs, cluster=new)
