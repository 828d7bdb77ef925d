"""Microbenchmarks, the small GPT, its optimizer and the live-bytes tracker (needs PyTorch)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

import torch.nn.functional as F  # noqa: E402

from models import memory as mem  # noqa: E402
from simulator.validation.calibrate import microbench as mb  # noqa: E402
from simulator.validation.calibrate.gpt import GPTConfig, MixedPrecisionAdam, _SwiGLU, _VocabCrossEntropy, build_gpt, random_batch  # noqa: E402
from simulator.validation.validate import live_bytes_tracker  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_time_s_is_the_median_over_enough_repeats():
    import time
    assert mb.time_s(lambda: time.sleep(0.002), warmup=1, repeats=3) == pytest.approx(0.002, abs=0.002)
    calls = []
    mb.time_s(lambda: calls.append(1), warmup=2, repeats=5, min_total_s=0.0)
    assert len(calls) == 2 + 5                        # fixed repeats (collectives need equal counts)
    calls.clear()
    mb.time_s(lambda: calls.append(1), warmup=2, repeats=5, min_total_s=0.01)
    assert len(calls) > 2 + 5                         # a tiny op is repeated for >= 10 ms


def test_bench_gemm_rate_is_two_mnk_over_time():
    r = mb.bench_gemm(64, 32, 16, "fp32", warmup=1, repeats=3)
    assert r["flops_per_s"] == pytest.approx(2 * 64 * 32 * 16 / r["time_s"])


def test_layer_gemm_shapes_follow_megatron_sharding():
    s = {name: (m, n, k) for m, n, k, name in mb.layer_gemm_shapes(256, 4, 2, 1024, 512, 128, 2, tp=2)}
    assert len(s) == 15
    assert s["qkv.fwd"] == (256, (4 + 2 * 2) * 64 // 2, 256)     # column-parallel QKV with GQA
    assert s["fc2.wgrad"] == (256, 512, 256)                      # dW = dY^T X, reduction over tokens
    assert s["logits.dgrad"] == (256, 256, 256)


def test_bench_attention_and_memory_ops():
    a = mb.bench_attention(128, 32, 2, 1, warmup=1, repeats=2)
    assert a["fwd_s"] > 0 and a["bwd_s"] > 0
    assert a["fwd_flops"] == 0.5 * 4 * 128 * 128 * 2 * 32
    ops = {o["op"]: o for o in mb.bench_memory_ops(1 << 14, 128, warmup=1, repeats=2)}
    assert {"layernorm", "gelu", "swiglu", "softmax", "residual_add", "copy"} <= set(ops)
    assert ops["residual_add"]["num_bytes"] == 3 * (1 << 14) * 2       # 2 reads + 1 write of bf16
    assert mb.bench_adam(1 << 14, warmup=1, repeats=2)["bytes_per_s"] > 0
    assert mb.kernel_overhead_s(repeats=5) > 0


def test_fit_alpha_beta_known_answer():
    r = [{"kind": "all_gather", "num_bytes": s, "time_s": 5e-5 + 0.5 * s / 2e9} for s in (1e5, 1e6, 1e7)]
    f = mb.fit_alpha_beta(r, 2)["all_gather"]
    assert f["alpha_s"] == pytest.approx(5e-5) and f["busbw_bytes_per_s"] == pytest.approx(2e9)


@pytest.mark.slow
def test_collectives_over_two_gloo_processes():
    r = mb.bench_collectives(2, sizes=(1 << 12, 1 << 16), warmup=1, repeats=2)
    assert r["backend"] == "gloo" and r["fit"]["all_reduce"]["busbw_bytes_per_s"] > 0


def test_tracker_counts_new_storages_once_and_frees_them():
    x = torch.ones(1000)
    with live_bytes_tracker() as t:
        y = torch.empty(1000, dtype=torch.float32)     # 4000 B
        v = y.view(10, 100)                            # view: no new storage
        y.add_(1)                                      # in place: none
        z = x * 2                                      # 4000 B
        del y, v
        assert t.current_bytes == 4000
        del z
    assert t.peak_bytes == 8000 and t.current_bytes == 0


def test_cross_entropy_matches_torch():
    logits = torch.randn(6, 11, dtype=torch.float64, requires_grad=True)
    tg = torch.randint(0, 11, (6,))
    ref = logits.detach().clone().requires_grad_(True)
    loss = _VocabCrossEntropy.apply(logits, tg)
    loss_ref = F.cross_entropy(ref, tg)
    (loss * 3).backward()
    (loss_ref * 3).backward()
    assert loss.item() == pytest.approx(loss_ref.item())
    assert torch.allclose(logits.grad, ref.grad)


def test_swiglu_matches_autograd_of_the_plain_expression():
    # one backward only: it reuses its saved buffer for the gradient (gradcheck would call it twice)
    x = torch.randn(3, 4, 10, dtype=torch.float64, requires_grad=True)
    ref = x.detach().clone().requires_grad_(True)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    gate, up = ref.chunk(2, dim=-1)
    y_ref = F.silu(gate) * up
    y = _SwiGLU.apply(x * 1.0)
    assert torch.allclose(y, y_ref)
    y.backward(g)
    y_ref.backward(g)
    assert torch.allclose(x.grad, ref.grad)


@pytest.mark.parametrize("activation,kv", [("gelu", 4), ("swiglu", 2)])
def test_recompute_gives_the_same_gradients(activation, kv):
    cfg = GPTConfig(num_layers=2, hidden=64, num_heads=4, num_kv_heads=kv, ffn_hidden=128, vocab=64, seq_len=32,
                    activation=activation)
    ids, tg = random_batch(cfg, 2)
    grads = []
    for rc in (False, True):
        m = build_gpt(cfg, torch.float32, recompute=rc, seed=3)
        m(ids, tg).backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


@pytest.mark.parametrize("activation,kv,ffn", [("gelu", 4, 1024), ("swiglu", 2, 704)])
def test_saved_activations_match_korthikanti_accounting(activation, kv, ffn):
    """Bytes alive after the forward pass = models.memory's layer and output-layer activation
    bytes (Korthikanti et al. 2022 Sec. 4) within 1%: what remains is LayerNorm mean/rstd and
    the attention log-sum-exp (fp32 per token and head), which the formula leaves out. The
    formula's output layer also counts the 16-bit logits that live beside their fp32 copy only
    during the loss (2 s b V bytes), freed by the end of the forward pass."""
    cfg = GPTConfig(num_layers=2, hidden=256, num_heads=4, num_kv_heads=kv, ffn_hidden=ffn, vocab=512, seq_len=256,
                    activation=activation)
    m = build_gpt(cfg)
    ids, tg = random_batch(cfg, 2)
    with live_bytes_tracker() as t:
        loss = m(ids, tg)
        saved = t.current_bytes
    del loss
    model = cfg.transformer()
    formula = (cfg.num_layers * mem.layer_activation_bytes(model, 2, cfg.seq_len, 1, False, 0, True)
               + mem.output_layer_activation_bytes(model, 2, cfg.seq_len, 1, False)
               - 2 * 2 * cfg.seq_len * cfg.vocab)
    assert saved == pytest.approx(float(formula), rel=0.01)
    assert saved >= formula


def test_mixed_precision_adam_matches_torch_adam_in_fp32():
    torch.manual_seed(0)
    w = torch.randn(300, 7)
    p1, p2 = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    ours = MixedPrecisionAdam([p1], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref = torch.optim.Adam([p2], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ours.CHUNK = 128                           # exercise chunking
    for _ in range(3):
        g = torch.randn(300, 7)
        p1.grad.copy_(g)
        p2.grad = g.clone()
        ours.step()
        ref.step()
    assert torch.allclose(p1.detach(), p2.detach(), atol=1e-6)
    assert float(p1.grad.abs().sum()) == 0.0   # zeroed in place, still allocated
    assert ours.state_bytes() == 300 * 7 * 4 * 4   # fp32 weights are the master copy; grads, m, v
    bf16 = MixedPrecisionAdam([torch.nn.Parameter(w.bfloat16())])
    assert bf16.state_bytes() == 300 * 7 * (2 + 2 + 12)   # the ZeRO paper's 2 + 2 + K=12 bytes per parameter


def _tp_worker(rank, port, out_dir):
    import json
    import os

    import torch.distributed as dist

    from simulator.validation.calibrate.gpt import _shard
    from simulator.validation.calibrate.microbench import init_process_group
    torch.set_num_threads(1)
    init_process_group(rank, 2, port, "gloo")
    cfg = GPTConfig(num_layers=2, hidden=64, num_heads=4, num_kv_heads=2, ffn_hidden=128, vocab=64, seq_len=32,
                    activation="swiglu")
    ids, tg = random_batch(cfg, 2, generator=torch.Generator().manual_seed(5))
    full = build_gpt(cfg, torch.float32, seed=1)
    part = build_gpt(cfg, torch.float32, seed=1, tp=(rank, 2))
    loss_full, loss_tp = full(ids, tg), part(ids, tg)
    loss_full.backward()
    loss_tp.backward()
    worst = max(float((p.grad - _shard(n, full.get_parameter(n).grad, cfg, rank, 2)).abs().max())
                for n, p in part.named_parameters())
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
        json.dump({"loss_full": loss_full.item(), "loss_tp": loss_tp.item(), "worst_grad_diff": worst}, f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_tensor_parallel_gpt_matches_the_unsharded_model(tmp_path):
    """Megatron TP over 2 gloo processes: same loss, and each rank's gradients are the shards
    of the unsharded model's gradients (column/row splits, vocab-parallel loss)."""
    import json

    import torch.multiprocessing as mp
    mp.spawn(_tp_worker, args=(mb.free_port(), str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        res = json.loads((tmp_path / f"{r}.json").read_text())
        assert res["loss_tp"] == pytest.approx(res["loss_full"], rel=1e-5)
        assert res["worst_grad_diff"] < 1e-5


def _dying_worker(rank, port, marker):
    import os
    import sys
    # the first attempt's rank 1 dies; the retry (on another port) succeeds, unless marker says "always"
    if rank == 1 and (marker.endswith("always") or not os.path.exists(marker)):
        open(marker, "w").close()
        sys.exit(3)


@pytest.mark.slow
def test_spawn_ranks_retries_once_then_names_the_failure(tmp_path, capsys):
    mb.spawn_ranks(_dying_worker, (str(tmp_path / "once"),), 2, "validate: plan x")   # second try passes
    assert (tmp_path / "once").exists()
    with pytest.raises(mb.RanksFailed, match=r"validate: plan x: a rank of 2 processes failed twice \(.*exit code 3"):
        mb.spawn_ranks(_dying_worker, (str(tmp_path / "always"),), 2, "validate: plan x")


def test_cli_reports_dead_ranks_in_one_line(monkeypatch, capsys):
    from simulator.cli import main
    from simulator.validation import validate as v

    def dead(*a, **k):
        raise mb.RanksFailed("validate: plan ddp-dp2-mb1-ga1-rcnone: a rank of 2 processes failed twice (signal SIGABRT)")
    monkeypatch.setattr(v, "validate", dead)
    assert main(["validate", "--plans", "ddp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed twice" in err and "Traceback" not in err
