"""Fine-tuning gaps of issue 16: MFU/HFU count the FLOPs a frozen base runs, the planner ranks only plans whose
offloaded state fits the node's host memory, and the token budget of a fine-tuning run is stated, not Chinchilla's."""

import json

import numpy as np
import pytest

from models import flops as fl
from models.estimate import estimate, estimate_arrays
from models.hardware import make_cluster
from models.plan import Plan
from models.transformer import Transformer, get_model
from simulator.cli import main

# A model small enough to count by hand: 2 layers, h = 64, 4 heads of 16 (MHA), GeLU FFN f = 256, vocab 1000,
# 128 tokens per sequence, untied output layer.
TINY = Transformer(name="tiny-hand", num_layers=2, hidden=64, num_heads=4, num_kv_heads=4, ffn_hidden=256,
                   vocab=1000, seq_len=128)


def _hand_counts(batch):
    """(forward, attention core forward, LoRA r=8 on q_proj,v_proj forward) FLOPs of TINY, written out."""
    t = batch * 128
    qkvo = 2 * t * 64 * (4 * 64)                       # Q, K, V, O projections: 2 FLOPs per weight per token
    mlp = 2 * t * 64 * 256 * 2                         # two GeLU FFN matrices
    core = 2 * batch * 128 * (128 / 2) * 4 * (16 + 16)  # QK^T and AV over the causal half
    logits = 2 * t * 64 * 1000
    adapters = 2 * t * 2 * 2 * 8 * (64 + 64)           # layers x (q, v) x 2 r (d_in + d_out) per token
    return 2 * (qkvo + mlp + core) + logits, 2 * core, adapters


def test_lora_model_flops_by_hand():
    """Model FLOPs of LoRA on a frozen base = forward F + backward's input gradients F (+ the attention core's
    second half: it has no weights, its backward is 2x) + 3 x the adapters (forward, input and weight
    gradients): Hu et al. 2021 Sec. 4.2, no gradients for the frozen weights. Full training stays 3 F."""
    fwd, core, adapters = _hand_counts(8)
    assert float(fl.forward_flops(TINY, 8)) == fwd
    model_f, hw_f = fl.finetune_flops_per_iteration(TINY, 8, 1, 8, 5, 0, 8)
    assert float(model_f) == pytest.approx(2 * fwd + core + 3 * adapters, rel=1e-12)
    assert float(hw_f) == float(model_f)                        # no recompute: hardware = model FLOPs
    # full recompute re-runs every layer's forward with its adapters, not the logits
    _, hw_full = fl.finetune_flops_per_iteration(TINY, 8, 1, 8, 5, 2, 8)
    assert float(hw_full - model_f) == pytest.approx(fwd - 2 * 8 * 128 * 64 * 1000 + adapters, rel=1e-12)
    # method 0 (full training) is the old count exactly
    full_m, full_h = fl.finetune_flops_per_iteration(TINY, 8, 0, 8, 5, 2, 8)
    assert float(full_m) == float(fl.model_flops_per_iteration(TINY, 8)) == 3 * fwd
    assert float(full_h) == float(fl.hardware_flops_per_iteration(TINY, 8, 2))


def test_lora_mfu_counts_what_runs():
    """estimate's MFU for LoRA is the hand-counted model FLOPs over step x GPUs x peak; ~4N per token on a
    large model instead of 6N, so LoRA MFU is ~2/3 of the old figure at the same step time."""
    cl = make_cluster("a100-sxm-80gb", 1, gpus_per_node=1)
    plan = Plan(global_batch_size=8, micro_batch_size=8, finetune="lora", lora_rank=8, lora_targets="q_proj,v_proj")
    est = estimate(TINY, cl, plan)
    fwd, core, adapters = _hand_counts(8)
    from models.layer import kernels
    peak = kernels(cl, "bf16").peak_flops_per_s
    assert est.mfu == pytest.approx((2 * fwd + core + 3 * adapters) / (est.step_time_s * peak), rel=1e-9)
    m70 = get_model("llama3-70b")
    lora = fl.finetune_flops_per_iteration(m70, 32, 1, 8, 5, 0, 32)[0] / fl.model_flops_per_iteration(m70, 32)
    assert 0.66 < float(lora) < 0.72         # 4N + attention's share, over 6N + attention's


def test_dora_norm_once_in_model_flops_per_forward_in_hardware_flops():
    """DoRA's column norm (Liu et al. 2024 eq. 5, detached) is needed once per step; PEFT recomputes it every
    forward pass: hardware FLOPs count it per micro-batch, model FLOPs once."""
    from models.finetune import dora_flops_per_microbatch
    norm = 2 * float(dora_flops_per_microbatch(TINY, 8, 5))
    lora_m, _ = fl.finetune_flops_per_iteration(TINY, 8, 1, 8, 5, 0, 4)
    dora_m, dora_h = fl.finetune_flops_per_iteration(TINY, 8, 3, 8, 5, 0, 4)
    assert float(dora_m - lora_m) == pytest.approx(norm)
    assert float(dora_h - lora_m) == pytest.approx(4 * norm)


def test_moe_adapters_count_active_experts():
    """A token passes the adapters of its top_k routed (and shared) experts only."""
    m = get_model("mixtral-8x7b")
    per_tok = float(fl.lora_forward_flops_per_token(m, 8, 1 << 6))        # down_proj only
    assert per_tok == pytest.approx(m.num_layers * m.top_k * 2 * 8 * (m.expert_ffn_hidden + m.hidden))


def test_full_training_mfu_unchanged():
    """The fine-tuning term never touches full training: model FLOPs 3 F (PaLM App. B), hardware FLOPs + the
    recomputed forward, exactly as before."""
    from models.layer import kernels
    m, cl = get_model("llama3-8b"), make_cluster("h100-sxm-80gb", 1)
    peak = kernels(cl, "bf16").peak_flops_per_s
    for rc in ("none", "full"):
        est = estimate(m, cl, Plan(dp=8, global_batch_size=64, recompute=rc))
        assert est.mfu == float(fl.model_flops_per_iteration(m, 64)) / (est.step_time_s * 8 * peak)
        assert est.hfu == float(fl.hardware_flops_per_iteration(m, 64, 2 if rc == "full" else 0)) / (
            est.step_time_s * 8 * peak)


def test_search_mfu_hfu_at_most_one(capsys, tmp_path):
    """The issue's search: LoRA/QLoRA on one DGX A100, cheapest plans; every ranked plan's MFU and HFU <= 1
    (they read 93-94% when the frozen base was charged weight gradients)."""
    out = tmp_path / "s.json"
    assert main(["search", "--model", "llama3-70b", "--gpu", "a100-sxm-80gb", "--nodes", "1", "--global-batch", "32",
                 "--finetune", "lora,qlora", "--objective", "cost", "--top", "50", "-o", str(out)]) == 0
    plans = json.loads(out.read_text())["plans"]
    assert plans and all(0 < p["mfu"] <= p["hfu"] <= 1 for p in plans)
    assert max(p["mfu"] for p in plans) < 0.75


def test_planner_ranks_no_plan_whose_offload_overflows_host_memory():
    """Llama-3 405B with optimizer, parameters and gradients on the host (ZeRO-Infinity) on one DGX H100:
    thousands of plans fit the GPUs, each needing ~5.9 TiB of host memory (405e9 x (12 B Adam states and
    fp32 master + 2 B gradients + 2 B weights)) against the node's 2 TiB: none may be ranked."""
    from models.inputs import Training
    from simulator.planning import grid
    from simulator.planning.planner import Constraints, _tasks, search
    m, cl = get_model("llama3-405b"), make_cluster("h100-sxm-80gb", 1, "dgx-h100")
    tr = Training(global_batch_size=8, offload="optimizer,params,gradients")
    gpu_fit, host_min = 0, np.inf
    for t in _tasks(m, cl, tr, Constraints(), "time", 4):
        a = grid._grid_arrays(t.layouts, t.space, t.training)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = estimate_arrays(t.model, t.cluster, t.training.dtype, **a)
        shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
        on_gpu = np.broadcast_to(grid._valid(m, a, None), shape) & np.broadcast_to(
            r["peak_memory_bytes"] <= cl.gpu.hbm_bytes, shape)
        gpu_fit += int(on_gpu.sum())
        host_min = min(host_min, float(np.broadcast_to(r["host_memory_bytes"], shape)[on_gpu].min(initial=np.inf)))
        assert grid._eval_task(t)["fit"] == 0
    assert gpu_fit > 1000 and host_min > 2.5 * cl.node.host_memory_bytes
    with pytest.raises(ValueError, match="fits in memory"):
        search(m, cl, tr)
    # the same offload of an 8B model fits the host: ranked
    assert search(get_model("llama3-8b"), cl, tr, top=1).records[0]["host_memory_bytes"] <= cl.node.host_memory_bytes


def test_finetune_token_budget_is_a_stated_dataset_not_chinchilla(capsys):
    """Fine-tuning (a PEFT method, given or searched, or LOMO) defaults to one epoch of Stanford Alpaca's 52,002
    examples at the run's sequence length, and says so; pre-training keeps Chinchilla's 20 tokens per parameter."""
    from models.cost import CHINCHILLA_TOKENS_PER_PARAM, FINETUNE_DEFAULT_SEQUENCES, estimate_extras
    from models.inputs import Training
    from simulator.planning.planner import Constraints, evaluate_plan, search
    m, cl = get_model("llama3-8b"), make_cluster("a100-sxm-80gb", 1)
    ft_tokens = FINETUNE_DEFAULT_SEQUENCES * m.seq_len
    assert main(["search", "--model", "llama3-8b", "--gpu", "a100-sxm-80gb", "--global-batch", "32",
                 "--finetune", "lora,qlora", "--objective", "cost", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{ft_tokens:.3g} tokens: fine-tuning: one epoch of 52,002 sequences of 8,192 tokens" in out
    # searched or given, every plan of the run is costed on the same budget, full fine-tuning included
    r = search(m, cl, Training(global_batch_size=32), Constraints(finetune=("none", "lora")), objective="cost", top=3)
    assert r.tokens == ft_tokens and "Alpaca" in r.tokens_rule
    assert {rec["tokens"] for rec in r.records} == {ft_tokens}
    r = search(m, cl, Training(global_batch_size=32, finetune="lora"), top=1)
    assert r.tokens == ft_tokens and r.records[0]["tokens"] == ft_tokens
    lomo = Plan(dp=8, global_batch_size=32, optimizer="lomo")
    assert evaluate_plan(m, cl, lomo)["tokens"] == ft_tokens
    lora = Plan(dp=8, global_batch_size=32, finetune="lora")
    cost, run = estimate_extras(m, cl, lora, estimate(m, cl, lora))
    assert cost["default_tokens"] == run.tokens == ft_tokens and "52,002" in cost["default_tokens_rule"]
    assert estimate_extras(m, cl, lora, estimate(m, cl, lora), tokens=1e8)[0]["default_tokens"] == 1e8
    # pre-training: unchanged
    full = Plan(dp=8, global_batch_size=32)
    assert estimate_extras(m, cl, full, estimate(m, cl, full))[0]["default_tokens"] == (
        CHINCHILLA_TOKENS_PER_PARAM * m.num_params)
    r = search(m, cl, Training(global_batch_size=32), top=1)
    assert r.tokens == CHINCHILLA_TOKENS_PER_PARAM * m.num_params and r.tokens_rule.startswith("Chinchilla")
    assert main(["train-time", "--model", "llama3-8b", "--gpu", "a100-sxm-80gb", "--finetune", "lora",
                 "--global-batch", "32"]) == 0
    out = capsys.readouterr().out
    assert f"{ft_tokens:.3g} tokens" in out and "Stanford Alpaca" in out
