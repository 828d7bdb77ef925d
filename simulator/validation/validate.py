"""Validation against real small runs: train the project's small GPT for a few steps under each
plan the machine can run, measure step time and peak memory, and compare with clustersim's
prediction (models.estimate with the calibration profile applied).

Plans on CPU (one "device" = ``threads`` cores; gloo between processes):
  single   one device, micro-batches with gradient accumulation, recompute off/on
  ddp      torch DistributedDataParallel over N processes (gradient buckets as views)
  zero1    the project's ZeRO-1 optimizer over N processes: fp32 master weights and Adam
           moments sharded, gradients reduce-scattered, weights all-gathered
  fsdp     torch FSDP2 ``fully_shard`` per block (ZeRO-3): fp32 sharded weights, bf16 compute
           and reduction (MixedPrecisionPolicy), torch Adam on the shards
  tp       Megatron tensor parallelism over N processes (column/row-parallel layers, f/g
           all-reduces, vocab-parallel embedding, output layer and cross-entropy)
On CUDA the single-device plans run on GPU 0, and ddp/zero1 over all GPUs with NCCL.

Measurements. Step time: median over steps after warm-up (CUDA: synchronised). Peak memory:
on CUDA ``torch.cuda.max_memory_allocated`` during one step; on CPU :class:`LiveBytesTracker`,
a TorchDispatchMode that adds the bytes of every new storage an op returns and subtracts them
when the storage is freed (weak references), so it is exact for tensors made by ATen ops.
Weights, gradients and optimizer state exist before the step and are counted from their
storages; the tracker's peak during the step is the activation (+ transient) memory, which
is compared with models.memory's activation bytes.

The tracker is simulator.validation.live_bytes; the tolerances, the disturbance checks, the summary
and the table are simulator.validation.validate_report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

from models.estimate import estimate
from models.memory import zero3_gather_buffer_bytes
from models.plan import Plan
from simulator.validation.live_bytes import _ptr, _storage, live_bytes_tracker

IMPLS = ("single", "ddp", "zero1", "fsdp", "tp")
ZERO_STAGE = {"single": 0, "ddp": 0, "zero1": 1, "fsdp": 3, "tp": 0}


@dataclass(frozen=True, slots=True)
class RunPlan:
    impl: str = "single"              # single | ddp | zero1 | fsdp | tp
    dp: int = 1                       # processes (data-parallel ranks)
    micro_batch_size: int = 2
    num_microbatches: int = 1         # gradient-accumulation steps
    recompute: bool = False           # full recompute of every block (torch.utils.checkpoint)
    tp: int = 1                       # tensor-parallel processes (impl tp)

    def __post_init__(self) -> None:
        if self.impl not in IMPLS:
            raise ValueError(f"plan.impl: {self.impl!r} unknown; choose one of {', '.join(IMPLS)}")
        if (self.impl in ("single", "tp")) != (self.dp == 1):
            raise ValueError(f"plan.dp: impl={self.impl} needs dp {'= 1' if self.impl in ('single', 'tp') else '> 1'}")
        if (self.impl == "tp") != (self.tp > 1):
            raise ValueError(f"plan.tp: impl={self.impl} needs tp {'> 1' if self.impl == 'tp' else '= 1'}")
        for f in ("dp", "tp", "micro_batch_size", "num_microbatches"):
            if getattr(self, f) < 1:
                raise ValueError(f"plan.{f}: must be >= 1")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    @property
    def name(self) -> str:
        tp = f"-tp{self.tp}" if self.tp > 1 else ""
        return (f"{self.impl}-dp{self.dp}{tp}-mb{self.micro_batch_size}-ga{self.num_microbatches}"
                f"-rc{'full' if self.recompute else 'none'}")

    def plan(self, device: str = "cpu") -> Plan:
        """The models.plan.Plan clustersim predicts this run with. Overlap of communication with
        compute needs separate streams: on CUDA, torch DDP and FSDP overlap gradient reduction
        with backward (and FSDP prefetches the next layer's all-gather); on CPU each rank's one
        core runs gloo's communication and the compute in turn, so nothing overlaps."""
        return Plan(dp=self.dp, tp=self.tp, micro_batch_size=self.micro_batch_size,
                    global_batch_size=self.micro_batch_size * self.dp * self.num_microbatches,
                    zero_stage=ZERO_STAGE[self.impl], recompute="full" if self.recompute else "none",
                    dtype="bf16", attention="flash",
                    # our ZeRO-1 reduces after backward
                    overlap_grad_reduce=self.impl in ("ddp", "fsdp") and device.startswith("cuda"),
                    overlap_param_gather=self.impl == "fsdp" and device.startswith("cuda"))


def default_plans(device: str = "cpu", num_devices: int = 2) -> list[RunPlan]:
    plans = [RunPlan("single", 1, 2, 1, False), RunPlan("single", 1, 1, 2, False), RunPlan("single", 1, 2, 1, True)]
    if num_devices >= 2:
        plans += [RunPlan("ddp", num_devices, 1, 1, False), RunPlan("zero1", num_devices, 1, 1, False),
                  RunPlan("fsdp", num_devices, 1, 1, False), RunPlan("tp", 1, 2, 1, False, tp=2)]
    return plans


# ------------------------------------------------------------------ running one plan

def _train_step(model, opt, batches, rp: RunPlan, ddp=None):
    """One optimizer step over ``rp.num_microbatches`` micro-batches (gradient accumulation)."""
    import contextlib
    m = rp.num_microbatches
    for i, (ids, tg) in enumerate(batches):
        ctx = ddp.no_sync() if ddp is not None and i < m - 1 else contextlib.nullcontext()
        with ctx:
            loss = (ddp or model)(ids, tg) / m
            loss.backward()
        del loss
    if rp.impl == "zero1":
        opt.reduce_scatter_grads()
    opt.step()


class _ShardedAdam:
    """torch.optim.Adam over FSDP2's fp32 shards; gradients kept allocated (zeroed in place)."""

    def __init__(self, model):
        import torch
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-4, betas=(0.9, 0.95), foreach=False)

    def step(self):
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)

    def state_bytes(self) -> int:
        tensors = [p for p in self.params] + [p.grad for p in self.params if p.grad is not None]
        tensors += [v for st in self.opt.state.values() for v in st.values() if hasattr(v, "untyped_storage")]
        return sum({_ptr(t): _storage(t).nbytes() for t in tensors}.values())


def _fsdp_model(cfg, device, rp, seed):
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from simulator.validation.calibrate.gpt import build_gpt
    model = build_gpt(cfg, torch.float32, device, recompute=rp.recompute, seed=seed)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)
    for blk in model.blocks:
        fully_shard(blk, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model, _ShardedAdam(model)


def _measure(cfg, rp: RunPlan, device: str, rank: int, steps: int, warmup: int, seed: int = 0) -> dict:
    import torch

    from simulator.validation.calibrate.gpt import MixedPrecisionAdam, build_gpt, random_batch
    dist = None
    if rp.world_size > 1:
        import torch.distributed as dist
    if rp.impl == "fsdp":
        model, opt = _fsdp_model(cfg, device, rp, seed)
    else:
        model = build_gpt(cfg, torch.bfloat16, device, recompute=rp.recompute, seed=seed,
                          tp=(rank, rp.tp) if rp.impl == "tp" else (0, 1))
        opt = MixedPrecisionAdam(model.parameters(), own_grads=rp.impl != "ddp",
                                 shard=(rank, rp.dp) if rp.impl == "zero1" else (0, 1))
    ddp = None
    if rp.impl == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        ddp = DDP(model, gradient_as_bucket_view=True, device_ids=[rank] if device.startswith("cuda") else None)
    gen = torch.Generator().manual_seed(seed + 1 + (0 if rp.impl == "tp" else rank))   # TP ranks see one batch
    batches = [random_batch(cfg, rp.micro_batch_size, device, gen) for _ in range(rp.num_microbatches)]
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()
        if dist is not None:
            dist.barrier()
    times, cpu_s = [], 0.0
    for i in range(warmup + steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        _train_step(model, opt, batches, rp, ddp)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_s += time.process_time() - c0
    state = opt.state_bytes()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _train_step(model, opt, batches, rp, ddp)
        torch.cuda.synchronize()
        peak_total = torch.cuda.max_memory_allocated()
        act = peak_total - base
    else:
        with live_bytes_tracker() as tr:
            _train_step(model, opt, batches, rp, ddp)
        act = tr.peak_bytes
        peak_total = state + act
    # CPU seconds this rank used per wall second per thread (waits for other ranks lower it)
    busy = cpu_s / (sum(times) * torch.get_num_threads())
    return {"measured_step_time_s": statistics.median(times), "step_times_s": times, "cpu_share": busy,
            "measured_peak_memory_bytes": int(peak_total), "measured_activation_bytes": int(act),
            "measured_state_bytes": int(state)}


def _dist_worker(rank, cfg, rp, device, steps, warmup, threads, port, out_dir):
    import warnings

    import torch
    import torch.distributed as dist

    from simulator.validation.calibrate.microbench import init_process_group
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(threads)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    init_process_group(rank, rp.world_size, port, backend)
    dev = f"cuda:{rank}" if backend == "nccl" else "cpu"
    res = _measure(cfg, rp, dev, rank, steps, warmup)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.barrier()
    dist.destroy_process_group()


def measure_plan(cfg, rp: RunPlan, device: str = "cpu", steps: int = 4, warmup: int = 2, threads: int = 1) -> dict:
    """Train ``cfg`` under ``rp``; measured step time (median), peak memory (rank 0's) and the
    share of the CPU other programs took meanwhile (``foreign_cpu_share``)."""
    from simulator.validation.calibrate.microbench import cpu_clock, foreign_cpu_share
    start = cpu_clock()
    res = _measure_plan(cfg, rp, device, steps, warmup, threads)
    res["foreign_cpu_share"] = foreign_cpu_share(start, cpu_clock())
    return res


def _measure_plan(cfg, rp: RunPlan, device: str, steps: int, warmup: int, threads: int) -> dict:
    import torch
    if rp.world_size == 1:
        old = torch.get_num_threads()
        if not device.startswith("cuda"):
            torch.set_num_threads(threads)
        try:
            return _measure(cfg, rp, "cuda:0" if device.startswith("cuda") else "cpu", 0, steps, warmup)
        finally:
            torch.set_num_threads(old)
    from simulator.validation.calibrate.microbench import spawn_ranks
    with tempfile.TemporaryDirectory() as tmp:
        spawn_ranks(_dist_worker, (tmp,), rp.world_size, f"validate: plan {rp.name}",
                    args_before_port=(cfg, rp, device, steps, warmup, threads))
        ranks = []
        for r in range(rp.world_size):
            with open(os.path.join(tmp, f"rank{r}.json")) as f:
                ranks.append(json.load(f))
    res = dict(ranks[0])
    res["measured_step_time_s"] = max(r["measured_step_time_s"] for r in ranks)
    res["cpu_share"] = min(r["cpu_share"] for r in ranks)
    return res


# ------------------------------------------------------------------ prediction and comparison

def predict_plan(cfg, rp: RunPlan, cluster, device: str = "cpu") -> dict:
    """clustersim's prediction for the run: step time, and peak tensor memory = weights + grads +
    optimizer state + activations (the framework overhead and fragmentation of models.memory
    are left out: neither the CPU tracker nor max_memory_allocated sees them)."""
    plan = rp.plan(device)
    est = estimate(cfg.transformer(), cluster, plan)
    m = est.memory
    # ZeRO-3's gathered 16-bit layer weights (models.estimate counts them in memory.other_bytes)
    gathered = float(zero3_gather_buffer_bytes(cfg.transformer(), plan.tp, plan.overlap_param_gather)) \
        if rp.impl == "fsdp" else 0.0
    act = m.activations_bytes + gathered
    return {"predicted_step_time_s": est.step_time_s,
            "predicted_peak_memory_bytes": m.params_bytes + m.grads_bytes + m.optimizer_bytes + act,
            "predicted_activation_bytes": act,
            "predicted_state_bytes": m.params_bytes + m.grads_bytes + m.optimizer_bytes}


def _rel(pred, meas):
    return (pred - meas) / meas if meas else float("nan")


def config_dict(cfg) -> dict:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def validate(cfg=None, plans=None, device: str = "cpu", profile: str | dict | None = None, steps: int = 4,
             warmup: int = 2, threads: int | None = None, progress=None, impls=None) -> list[dict]:
    """Run and predict every plan; one record per plan (see the module docstring).

    Without ``profile`` a quick calibration is run first on the same machine. ``impls``
    keeps only the default plans of those implementations."""
    import torch

    from simulator.validation.calibrate.gpt import GPTConfig
    from simulator.validation.calibrate.profile import (
        catalog_gpu_name,
        cluster_with_profile,
        cpu_cluster,
        provenance,
        read_profile,
        run_calibration,
    )
    say = progress or (lambda msg: None)
    cfg = cfg or GPTConfig()
    cuda = device.startswith("cuda")
    if isinstance(profile, dict):
        d = profile
    elif profile:
        d = read_profile(profile)
    else:
        say("no --profile: calibrating this machine first (quick)")
        tgt = {"hidden": cfg.hidden, "num_heads": cfg.num_heads, "num_kv_heads": cfg.num_kv_heads,
               "ffn_hidden": cfg.ffn_hidden, "vocab": cfg.vocab, "seq_len": cfg.seq_len,
               "ffn_matrices": 3 if cfg.activation == "swiglu" else 2, "micro_batch": 2}
        d = run_calibration(device, quick=True, threads=threads or 1, target=tgt)
    if (d["device"]["kind"] == "cuda") != cuda:
        raise ValueError(f"profile: measured on {d['device']['kind']} but --device is {device}")
    threads = threads or int(d["device"].get("num_threads", 1))
    ndev = torch.cuda.device_count() if cuda else max(1, (os.cpu_count() or 1) // threads)
    plans = plans or default_plans(device, ndev)
    if impls:
        plans = [p for p in plans if p.impl in impls]
    source = provenance(d)
    records = []
    for rp in plans:
        say(f"running {rp.name}")
        before = None if cuda else speed_ratio(d, threads)
        meas = measure_plan(cfg, rp, device, steps, warmup, threads)
        if before is not None:
            meas["speed_ratio"] = [before, speed_ratio(d, threads)]
        if cuda:
            from models.hardware import make_cluster
            gpu = catalog_gpu_name(d["device"]["name"])
            if gpu is None:
                raise ValueError(f"profile: GPU {d['device']['name']!r} is not in the catalog")
            cl = cluster_with_profile(make_cluster(gpu, 1, gpus_per_node=rp.world_size), d)
        else:
            cl = cpu_cluster(d, rp.world_size)
        pred = predict_plan(cfg, rp, cl, device)
        rec = {"plan": rp.name, **dataclasses.asdict(rp), "plan_id": rp.plan(device).plan_id, **meas, **pred,
               "device": device, "threads": None if cuda else threads, "profile": source,
               "calibration_foreign_cpu_share": d.get("foreign_cpu_share")}
        rec["step_time_error"] = _rel(pred["predicted_step_time_s"], meas["measured_step_time_s"])
        rec["peak_memory_error"] = _rel(pred["predicted_peak_memory_bytes"], meas["measured_peak_memory_bytes"])
        rec["activation_error"] = _rel(pred["predicted_activation_bytes"], meas["measured_activation_bytes"])
        records.append(rec)
    return records


def speed_ratio(profile: dict, threads: int = 1) -> float | None:
    """Time of the profile's first attention shape (forward + backward) now, over its time at
    calibration; None when the profile has no attention entry. CPU only."""
    import torch

    from simulator.validation.calibrate import microbench as mb
    att = profile.get("attention") or []
    if not att:
        return None
    a = att[0]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        now = mb.bench_attention(a["seq_len"], a["head_dim"], a["num_heads"], a["micro_batch"], a.get("num_kv_heads"),
                                 a.get("dtype", profile.get("dtype", "bf16")), "cpu", warmup=2, repeats=7)
    finally:
        torch.set_num_threads(old_threads)
    return (now["fwd_s"] + now["bwd_s"]) / (a["fwd_s"] + a["bwd_s"])
