"""Kernel microbenchmarks with PyTorch: GEMMs, attention, memory-bound ops, copies, collectives.

Timing (the rules of NVIDIA's "CUDA C++ Best Practices Guide", Sec. 8.1, and of
torch.utils.benchmark): warm-up runs first (allocator, kernel selection, caches); on CUDA each
repeat is bracketed by ``torch.cuda.Event(enable_timing=True)`` pairs and the stream is
synchronised before reading them; on CPU ``time.perf_counter`` around a call that returns
only when the work is done; the median of the repeats is reported. Inputs are random normal
(never all zeros: zero operands let some kernels and the CPU take short cuts).

Collectives run in ``world_size`` processes started with ``torch.multiprocessing.spawn``
(gloo on CPU, NCCL on GPUs) and are fitted to the alpha-beta model of models/collectives.py:
t = alpha + factor * S / busbw with factor 2(n-1)/n for all-reduce and (n-1)/n for
all-gather, reduce-scatter and all-to-all (nccl-tests PERFORMANCE.md bus-bandwidth rules).
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_s(fn, device="cpu", warmup: int = 2, repeats: int = 5, min_total_s: float = 0.02) -> float:
    """Median seconds of ``fn()`` after ``warmup`` runs, over at least ``repeats`` runs and at
    least ``min_total_s`` of measured time (short kernels get more repeats; CUDA: events)."""
    cuda = str(device).startswith("cuda")
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        fn()
    sync(device)
    per_call = (time.perf_counter() - t0) / max(warmup, 1)
    n = max(repeats, min(1000, math.ceil(min_total_s / max(per_call, 1e-7))))
    times = []
    for _ in range(n):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)   # ms -> s
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_clock():
    """(wall s, machine busy CPU s incl. steal, this process + its reaped children CPU s); busy is
    None where /proc/stat is missing."""
    import resource
    busy = None
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), busy, time.process_time() + kids.ru_utime + kids.ru_stime


def foreign_cpu_share(start, end) -> float | None:
    """Fraction of the machine's CPU capacity that other programs (or the hypervisor: steal)
    used between two cpu_clock() readings; None where it cannot be known."""
    if start[1] is None or end[1] is None:
        return None
    wall = end[0] - start[0]
    foreign = (end[1] - start[1]) - (end[2] - start[2])
    return max(0.0, foreign / (wall * (os.cpu_count() or 1)))


def _randn(*shape, dtype, device, requires_grad=False):
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(requires_grad)


# ---------------------------------------------------------------- GEMMs

def layer_gemm_shapes(hidden, num_heads, num_kv_heads, ffn_hidden, vocab, seq_len, micro_batch, tp=1,
                      ffn_matrices=2, head_dim=None):
    """(m, n, k, name) of every GEMM one transformer layer and the output layer run on one TP rank,
    forward (x W^T), backward data (dY W) and backward weight (dY^T X), as Megatron shards them
    (Shoeybi et al. 2019 Sec. 3: QKV and FC1 column-parallel, projection and FC2 row-parallel)."""
    d = head_dim or hidden // num_heads
    T = micro_batch * seq_len
    k_ffn = ffn_matrices - 1
    weights = {"qkv": ((num_heads + 2 * num_kv_heads) * d // tp, hidden), "proj": (hidden, num_heads * d // tp),
               "fc1": (k_ffn * ffn_hidden // tp, hidden), "fc2": (hidden, ffn_hidden // tp),
               "logits": (vocab // tp, hidden)}
    shapes = []
    for name, (out_f, in_f) in weights.items():
        shapes += [(T, out_f, in_f, f"{name}.fwd"), (T, in_f, out_f, f"{name}.dgrad"), (out_f, in_f, T, f"{name}.wgrad")]
    return shapes


# Bytes of input sets a GEMM rotates through so that repeats read HBM, not a warm L2 cache
# (H100: 50 MB of L2); the device-work METHOD notes: "rotate among several input sets".
ROTATE_BYTES = 256 * 2**20


def bench_gemm(m, n, k, dtype="bf16", device="cpu", warmup=2, repeats=5) -> dict:
    """One (m x k) @ (k x n) GEMM: seconds and achieved FLOP/s (2 m n k FLOPs). On CUDA, small
    GEMMs rotate among several input sets so no repeat finds its operands in L2."""
    dt = DTYPES[dtype]
    elem = torch.empty((), dtype=dt).element_size()
    sets = 1 if not str(device).startswith("cuda") else max(1, min(8, ROTATE_BYTES // ((m * k + k * n) * elem)))
    inputs = [(_randn(m, k, dtype=dt, device=device), _randn(k, n, dtype=dt, device=device)) for _ in range(sets)]
    out = torch.empty(m, n, dtype=dt, device=device)
    turn = iter(range(1 << 62))

    def step():
        a, b = inputs[next(turn) % sets]
        torch.matmul(a, b, out=out)
    t = time_s(step, device, warmup, repeats)
    return {"m": int(m), "n": int(n), "k": int(k), "dtype": dtype, "time_s": t, "flops_per_s": 2.0 * m * n * k / t}


def soak_gemm(seconds, size=8192, dtype="bf16", device="cpu") -> dict:
    """Run ``size``-cubed GEMMs back to back for ``seconds`` so the GPU reaches its power limit and
    its settled (sustained) clock before anything is timed, as a training run does; a cold GPU
    boosts and reads high (stas00/ml-engineering mamf-finder.py, "thermal soak" before MSMF).
    Returns the achieved rate over the last quarter of the soak.

    The clock is read after each batch of GEMMs has finished, so the tail window starts and ends
    on readings taken when the work up to them was done; on a busy machine, where one batch can
    take longer than the whole soak, the soak runs on until at least one batch is timed in its
    tail (``elapsed_s`` then exceeds ``seconds``)."""
    dt = DTYPES[dtype]
    a, b = _randn(size, size, dtype=dt, device=device), _randn(size, size, dtype=dt, device=device)
    out = torch.empty(size, size, dtype=dt, device=device)
    t0 = time.perf_counter()
    tail_start, tail_calls = None, 0
    while True:
        for _ in range(10):
            torch.matmul(a, b, out=out)
        sync(device)
        now = time.perf_counter()          # fresh: taken after this batch, not before it
        if tail_start is not None:
            tail_calls += 10
        elif now - t0 >= 0.75 * seconds:
            tail_start = now               # the tail counts the batches that start from here
        if now - t0 >= seconds and tail_calls:
            break
    tail_s = now - tail_start
    return {"seconds": float(seconds), "size": int(size), "dtype": dtype, "elapsed_s": now - t0,
            "tail_s": tail_s, "sustained_flops_per_s": 2.0 * size ** 3 * tail_calls / tail_s}


# ---------------------------------------------------------------- attention

def attention_flops(micro_batch, seq_len, num_heads, head_dim, causal=True) -> float:
    """Forward FLOPs of the attention core: 4 b s^2 a d (QK^T and PV), halved when causal."""
    return (0.5 if causal else 1.0) * 4.0 * micro_batch * seq_len * seq_len * num_heads * head_dim


def bench_attention(seq_len, head_dim, num_heads, micro_batch=1, num_kv_heads=None, dtype="bf16", device="cpu",
                    warmup=2, repeats=5) -> dict:
    """Causal scaled_dot_product_attention forward and forward+backward; seconds and FLOP/s.

    Backward is timed as (fwd + bwd) - fwd; its FLOPs are 2.5x the forward's (flash backward
    recomputes QK^T: 5 matmuls against 2, Dao 2023)."""
    dt = DTYPES[dtype]
    kv = num_kv_heads or num_heads
    # (b, s, a, d) storage viewed as (b, a, s, d), the layout a fused QKV projection gives
    q = _randn(micro_batch, seq_len, num_heads, head_dim, dtype=dt, device=device, requires_grad=True)
    k = _randn(micro_batch, seq_len, kv, head_dim, dtype=dt, device=device, requires_grad=True)
    v = _randn(micro_batch, seq_len, kv, head_dim, dtype=dt, device=device, requires_grad=True)
    g = _randn(micro_batch, num_heads, seq_len, head_dim, dtype=dt, device=device)
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=kv != num_heads)

    def fwd_bwd():
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=kv != num_heads)
        torch.autograd.grad(o, (q, k, v), g)

    t_f = time_s(fwd, device, warmup, repeats)
    t_fb = time_s(fwd_bwd, device, warmup, repeats)
    flops = attention_flops(micro_batch, seq_len, num_heads, head_dim)
    t_b = max(t_fb - t_f, 1e-9)
    return {"seq_len": int(seq_len), "head_dim": int(head_dim), "num_heads": int(num_heads), "num_kv_heads": int(kv),
            "micro_batch": int(micro_batch), "dtype": dtype, "fwd_s": t_f, "bwd_s": t_b, "fwd_flops": flops,
            "fwd_flops_per_s": flops / t_f, "bwd_flops_per_s": 2.5 * flops / t_b}


# ---------------------------------------------------------------- memory-bound ops

def _memory_ops(n, h, dt, device):
    """(name, bytes moved, fn) for the elementwise ops of a layer on n elements of rows of h."""
    e = torch.tensor([], dtype=dt).element_size()
    x = _randn(n // h, h, dtype=dt, device=device)
    y = _randn(n // h, h, dtype=dt, device=device)
    gu = _randn(n // h, 2 * h, dtype=dt, device=device)
    w = _randn(h, dtype=dt, device=device)
    bias = _randn(h, dtype=dt, device=device)
    out = torch.empty_like(x)
    rms = getattr(F, "rms_norm", None)
    ops = [
        ("layernorm", 2 * n * e, lambda: F.layer_norm(x, (h,), w, bias)),
        ("gelu", 2 * n * e, lambda: F.gelu(x)),
        ("swiglu", 3 * n * e, lambda: torch.mul(F.silu(gu[:, :h]), gu[:, h:], out=out)),
        ("softmax", 2 * n * e, lambda: torch.softmax(x, dim=-1)),
        ("residual_add", 3 * n * e, lambda: torch.add(x, y, out=out)),
        ("copy", 2 * n * e, lambda: out.copy_(x)),
    ]
    if rms is not None:
        ops.insert(1, ("rmsnorm", 2 * n * e, lambda: rms(x, (h,), w)))
    return ops


def bench_memory_ops(num_elements=1 << 22, row=1024, dtype="bf16", device="cpu", warmup=2, repeats=5) -> list[dict]:
    """Achieved bytes/s of norms, activations, softmax, residual add and a copy (reads + writes)."""
    dt = DTYPES[dtype]
    res = []
    for name, nbytes, fn in _memory_ops(num_elements, row, dt, device):
        t = time_s(fn, device, warmup, repeats)
        res.append({"op": name, "dtype": dtype, "num_bytes": int(nbytes), "time_s": t, "bytes_per_s": nbytes / t})
    return res


def bench_adam(num_params=1 << 22, dtype="bf16", device="cpu", warmup=2, repeats=5) -> dict:
    """The project's mixed-precision Adam step on ``num_params`` weights, as bytes/s of the
    30 bytes per parameter that models.estimate charges (OPTIMIZER_BYTES_PER_PARAM)."""
    from simulator.validation.calibrate.gpt import MixedPrecisionAdam
    p = torch.nn.Parameter(_randn(num_params, dtype=DTYPES[dtype], device=device))
    opt = MixedPrecisionAdam([p])

    def step():
        opt.flat_grad.normal_()
        opt.step()
    t_fill = time_s(lambda: opt.flat_grad.normal_(), device, warmup, repeats)
    t = max(time_s(step, device, warmup, repeats) - t_fill, 1e-9)
    return {"op": "adam", "dtype": dtype, "num_bytes": 30 * num_params, "time_s": t, "bytes_per_s": 30 * num_params / t}


def kernel_overhead_s(device="cpu", repeats=50) -> float:
    """Median seconds of the smallest op (a one-element add): launch and framework overhead."""
    a = torch.ones(1, device=device)
    return time_s(lambda: torch.add(a, a), device, warmup=10, repeats=repeats)


# ---------------------------------------------------------------- collectives

COLLECTIVE_FACTORS = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
                      "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RanksFailed(RuntimeError):
    """A multi-process measurement whose ranks died twice (the message says which and how)."""


def spawn_ranks(fn, args_after_port: tuple, nprocs: int, what: str, args_before_port: tuple = ()) -> None:
    """``torch.multiprocessing.spawn(fn, args_before_port + (port,) + args_after_port)`` on a fresh
    localhost port; once more on another port when a rank dies (a port taken between choosing and
    binding it, or a gloo transport abort on a loaded machine). RanksFailed if the retry fails too."""
    import torch.multiprocessing as mp
    last = None
    for _ in range(2):
        try:
            mp.spawn(fn, args=(*args_before_port, free_port(), *args_after_port), nprocs=nprocs, join=True)
            return
        except (mp.ProcessExitedException, mp.ProcessRaisedException) as e:
            last = str(e).strip().splitlines()[-1][:300]
    raise RanksFailed(f"{what}: a rank of {nprocs} processes failed twice ({last})")


def init_process_group(rank, world_size, port, backend):
    import torch.distributed as dist
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    if backend == "nccl":
        torch.cuda.set_device(rank)     # before init, so NCCL binds each rank to its own GPU
    dist.init_process_group(backend, rank=rank, world_size=world_size)


def _collective_op(kind, buf, world, dist):
    n = buf.numel()
    if kind == "all_reduce":
        return lambda: dist.all_reduce(buf)
    if kind == "all_gather":
        out = torch.empty(n * world, dtype=buf.dtype, device=buf.device)
        return lambda: dist.all_gather_into_tensor(out, buf)
    if kind == "reduce_scatter":
        out = torch.empty(n // world, dtype=buf.dtype, device=buf.device)
        return lambda: dist.reduce_scatter_tensor(out, buf)
    out = torch.empty_like(buf)
    return lambda: dist.all_to_all_single(out, buf)


def _after_compute_s(op, filler, warmup: int, repeats: int) -> float:
    """Median seconds of ``op()`` timed right after an untimed ``filler()``: a collective in training
    follows compute. On CPU this costs gloo 1-2 ms more per collective than back-to-back calls (the
    transport threads have gone idle and the compute evicted their buffers from cache; measured on
    the 2-core host the CPU validation runs on), which back-to-back timing would leave out."""
    for _ in range(max(warmup, 1)):
        filler()
        op()
    times = []
    for _ in range(repeats):
        filler()
        t = time.perf_counter()
        op()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _collective_worker(rank, world, port, backend, sizes, dtype, threads, out_dir, warmup, repeats):
    import json
    import warnings

    import torch.distributed as dist
    warnings.filterwarnings("ignore", category=FutureWarning)   # *_into_tensor renames in torch 2.13
    torch.set_num_threads(threads)
    init_process_group(rank, world, port, backend)
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    a, b = _randn(512, 1024, dtype=DTYPES[dtype], device="cpu"), _randn(1024, 512, dtype=DTYPES[dtype], device="cpu")
    filler = (lambda: a @ b) if backend == "gloo" else None    # ~1-2 ms of one core's GEMM work
    results = []
    for kind in COLLECTIVE_FACTORS:
        for nbytes in sizes:
            n = max(world, int(nbytes) // DTYPES[dtype].itemsize // world * world)
            buf = _randn(n, dtype=DTYPES[dtype], device=device)
            try:
                # fixed repeats: every rank must call the collective the same number of times
                op = _collective_op(kind, buf, world, dist)
                t = (_after_compute_s(op, filler, warmup, repeats) if filler is not None
                     else time_s(op, device, warmup, repeats, min_total_s=0.0))
            except (RuntimeError, NotImplementedError, ValueError) as e:
                results.append({"kind": kind, "num_bytes": n * buf.element_size(), "error": str(e).splitlines()[0][:200]})
                break
            results.append({"kind": kind, "num_bytes": n * buf.element_size(), "time_s": t})
    if rank == 0:
        with open(os.path.join(out_dir, "collectives.json"), "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


def bench_collectives(world_size=2, sizes=(1 << 16, 1 << 20, 1 << 22), dtype="bf16", device="cpu",
                      threads_per_rank=1, warmup=2, repeats=5) -> dict:
    """Time the collectives over ``world_size`` processes and fit alpha-beta to each kind.

    Rank 0's median is reported; kinds the backend does not implement are listed with the error."""
    import json

    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        spawn_ranks(_collective_worker, (backend, list(sizes), dtype, threads_per_rank, tmp, warmup, repeats),
                    world_size, f"calibrate: collectives ({backend})", args_before_port=(world_size,))
        with open(os.path.join(tmp, "collectives.json")) as f:
            results = json.load(f)
    return {"backend": backend, "world_size": world_size, "dtype": dtype, "results": results,
            "method": "median of repeats, each timed right after a 512x1024x512 GEMM" if backend == "gloo"
            else "median of back-to-back repeats (CUDA events)",
            "fit": fit_alpha_beta(results, world_size)}


def fit_alpha_beta(results, world_size) -> dict:
    """Least-squares t = alpha + factor S / busbw per collective kind; {kind: {alpha_s, busbw_bytes_per_s}}.

    >>> r = [{"kind": "all_reduce", "num_bytes": s, "time_s": 1e-4 + s / 1e9} for s in (1e6, 4e6, 16e6)]
    >>> f = fit_alpha_beta(r, 2)["all_reduce"]
    >>> round(f["alpha_s"] * 1e6), round(f["busbw_bytes_per_s"] / 1e9, 3)
    (100, 1.0)
    """
    fits = {}
    for kind, factor in COLLECTIVE_FACTORS.items():
        pts = [(r["num_bytes"], r["time_s"]) for r in results if r["kind"] == kind and "time_s" in r]
        if len(pts) < 2:
            continue
        xs, ys = zip(*pts)
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
        if slope <= 0:
            slope = max(ys) / max(xs)   # latency-dominated: bound the bandwidth by the largest message
        alpha = max(my - slope * mx, 0.0)
        fits[kind] = {"alpha_s": alpha, "busbw_bytes_per_s": factor(world_size) / slope}
    return fits


def log2_bins(xs, ndigits=0.25):
    """Round log2 values to bins of ``ndigits`` (for merging GEMMs of similar size)."""
    return [round(math.log2(x) / ndigits) * ndigits for x in xs]
