"""Fine-tuning, optimizers and offload (issue 16): published counts, invariants, bad input."""

import dataclasses

import pytest

from models.estimate import estimate
from models.finetune import trainable_params
from models.hardware import make_cluster
from models.optimizers import code, state_bytes_per_param
from models.plan import Plan
from models.transformer import get_model
from simulator.cli import main

H100_1 = make_cluster("h100-sxm-80gb", 1, gpus_per_node=1)


def test_lora_trainable_params_llama2_7b_q_v_rank8():
    """PEFT print_trainable_parameters, Llama-2 7B, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]):
    'trainable params: 4,194,304' (PEFT README quicktour)."""
    assert trainable_params(get_model("llama2-7b"), "lora", 8, "q_proj,v_proj") == 4_194_304


def test_lora_trainable_params_llama3_8b_all_linear_rank16():
    """Rank 16 on all linear layers of Llama-3 8B: 32 x 16 x (2(4096+4096) + 2(4096+1024) + 3(4096+14336))
    = 41,943,040 (PEFT all-linear: every nn.Linear but lm_head)."""
    assert trainable_params(get_model("llama3-8b"), "lora", 16, "all-linear") == 41_943_040


def test_lomo_table1_optimizer_state():
    """LOMO paper Table 1 (LLaMA-7B, GiB): optimizer states AdamW 75.31, SGD 25.10, LOMO 0."""
    n = 6.74e9
    for opt, master, want in (("adamw", True, 75.31), ("sgd", True, 25.10), ("lomo", False, 0.0)):
        assert state_bytes_per_param(code(opt), master) * n / 2**30 == pytest.approx(want, abs=0.05)


def test_default_plan_unchanged_by_the_new_fields():
    """Full training with adamw + fp32 master is today's model: 12 bytes per parameter of optimizer state."""
    m = get_model("llama3-8b")
    cl = make_cluster("h100-sxm-80gb", 1)
    base = estimate(m, cl, Plan(dp=8, zero_stage=1, global_batch_size=8))
    explicit = estimate(m, cl, Plan(dp=8, zero_stage=1, global_batch_size=8, optimizer="adamw", master_weights="fp32"))
    assert base.peak_memory_bytes == explicit.peak_memory_bytes and base.step_time_s == explicit.step_time_s
    assert base.trainable_params == base.params == m.num_params


def test_lora_frees_memory_and_backward():
    m = get_model("llama3-8b").with_seq_len(2048)
    full = estimate(m, H100_1, Plan(recompute="full"))
    lora = estimate(m, H100_1, Plan(recompute="full", finetune="lora", lora_targets="all-linear", lora_rank=16))
    assert lora.trainable_params == 41_943_040
    assert lora.memory.optimizer_bytes < 0.01 * full.memory.optimizer_bytes
    assert lora.step_time_s < full.step_time_s          # no dW GEMMs, tiny optimizer step


def test_qlora_base_is_about_a_quarter_of_16_bit():
    m = get_model("llama3-70b").with_seq_len(512)
    lora = estimate(m, H100_1, Plan(finetune="lora", recompute="full"))
    q = estimate(m, H100_1, Plan(finetune="qlora", recompute="full"))
    assert 0.25 < q.memory.params_bytes / lora.memory.params_bytes < 0.32
    assert q.step_time_s > lora.step_time_s            # dequantisation before every pass


def test_optimizer_offload_moves_state_to_host():
    m = get_model("llama2-7b").with_seq_len(1024)
    on = estimate(m, H100_1, Plan(recompute="full"))
    off = estimate(m, H100_1, Plan(recompute="full", offload="optimizer,gradients"))
    assert off.memory.optimizer_bytes == 0 and off.memory.grads_bytes == 0
    assert off.host_memory_bytes >= on.memory.optimizer_bytes
    assert off.pcie_bytes_per_step > 0 and off.step_time_s > on.step_time_s


def test_fragmentation_switch_and_partitioned_checkpoints():
    m = get_model("llama3-8b")
    cl = make_cluster("h100-sxm-80gb", 1)
    p = Plan(tp=8, dp=1, recompute="full")
    assert estimate(m, cl, dataclasses.replace(p, fragmentation=False)).peak_memory_bytes < estimate(m, cl, p).peak_memory_bytes
    pa = estimate(m, cl, dataclasses.replace(p, partition_activations=True))
    assert pa.memory.activations_bytes < estimate(m, cl, p).memory.activations_bytes


@pytest.mark.parametrize("args, field", [
    (["--model", "gpt2-small", "--finetune", "lora", "--lora-targets", "gate_proj"], "lora_targets"),
    (["--model", "llama3-8b", "--finetune", "lora", "--lora-targets", "k_proj", "--lora-rank", "2048"], "lora_rank"),
    (["--model", "llama3-8b", "--finetune", "lora", "--lora-targets", "qkv"], "lora_targets"),
    (["--model", "llama3-8b", "--offload", "optimizer", "--offload-to", "nvme"], "offload_to"),
])
def test_bad_input_is_one_line_naming_the_field(args, field, capsys):
    rc = main(["estimate", "--gpu", "h100", "--nodes", "1", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and field in err and "Traceback" not in err
    assert "\n" not in err, err
    # a remedy that names a CLI option names one that exists (the NVMe message once sent users to a missing one)
    main(["estimate", "--help"])
    helptext = capsys.readouterr().out
    import re
    assert all(opt in helptext for opt in re.findall(r"--[a-z][a-z0-9-]+", err)), err


def test_lora_output_layer_runs_no_weight_gradient():
    """A frozen lm_head (PEFT's all-linear leaves the output layer out; Hu et al. 2021 Sec. 4.2: no gradients
    for the frozen weights) runs forward and input-gradient GEMMs only: under LoRA the step is shorter than the
    same plan charged the output layer's dW by exactly one (tokens x h x vocab) GEMM per micro-batch, and the
    simulator's output-layer backward loses the same GEMM."""
    import models.finetune as ft
    from models.estimate import kernels
    from simulator.des.program import layer_costs
    m = get_model("llama3-8b").with_seq_len(2048)
    p = Plan(finetune="lora", recompute="full", global_batch_size=4)      # 4 micro-batches, one GPU
    lora = estimate(m, H100_1, p)
    orig, ft.frozen_output_dw_s = ft.frozen_output_dw_s, lambda *a, **k: 0.0
    try:
        charged = estimate(m, H100_1, p)
        sim_charged = layer_costs(m, H100_1, p).logits_bwd_s
    finally:
        ft.frozen_output_dw_s = orig
    gemm = float(kernels(H100_1, "bf16").gemm(2048, m.vocab, m.hidden))
    assert charged.step_time_s - lora.step_time_s == pytest.approx(4 * gemm, rel=1e-9)
    assert sim_charged - layer_costs(m, H100_1, p).logits_bwd_s == pytest.approx(gemm, rel=1e-9)
    full = Plan(recompute="full", global_batch_size=4)
    assert ft.frozen_output_dw_s(m, None, {"finetune": 0}, 2048, 1) == 0.0
    assert layer_costs(m, H100_1, full).logits_bwd_s == pytest.approx(sim_charged, rel=1e-9)


def test_lora_checkpoint_saves_the_adapters_not_the_model():
    """PEFT save_pretrained writes the adapter state dict only (peft/utils/save_and_load.py
    get_peft_model_state_dict) and the optimizer state covers the trainable parameters only: Llama-2 7B,
    r = 8 on q_proj, v_proj checkpoints 4,194,304 x (2 + 12) bytes, not 6.7e9 x 14; LOMO (no state, no
    master, Lv et al. 2023 Sec. 3.3) 2 bytes per parameter; full AdamW stays 14 (ZeRO paper K = 12 + 2)."""
    from models.cost import time_to_train
    m = get_model("llama2-7b").with_seq_len(1024)
    runs = {k: time_to_train(m, H100_1, Plan(recompute="full", **kw), 1e8) for k, kw in (
        ("lora", dict(finetune="lora", lora_rank=8, lora_targets="q_proj,v_proj")), ("full", {}),
        ("lomo", dict(optimizer="lomo")), ("qlora", dict(finetune="qlora", lora_rank=8, lora_targets="q_proj,v_proj")))}
    assert runs["lora"].checkpoint_bytes == 4_194_304 * 14
    assert runs["qlora"].checkpoint_bytes == 4_194_304 * 14
    assert runs["full"].checkpoint_bytes == pytest.approx(m.num_params * 14)
    assert runs["lomo"].checkpoint_bytes == pytest.approx(m.num_params * 2)
    assert runs["lora"].checkpoint_write_s < 0.01 * runs["full"].checkpoint_write_s
    # a LoRA restart still reads the frozen base: QLoRA's NF4 base reads faster than LoRA's 16-bit one
    assert runs["qlora"].restart_s < runs["lora"].restart_s


def test_lora_dp_reduction_moves_only_the_adapters():
    """DDP under LoRA buckets only the trainable adapters (the frozen base has requires_grad=False)."""
    m = get_model("llama3-8b").with_seq_len(2048)
    cl = make_cluster("h100-sxm-80gb", 2)
    p = Plan(dp=16, zero_stage=0, global_batch_size=16, recompute="full", overlap_grad_reduce=False)
    full = estimate(m, cl, p)
    lora = estimate(m, cl, dataclasses.replace(p, finetune="lora", lora_targets="all-linear", lora_rank=16))
    ratio = lora.exposed_comm_by_kind_s["dp"] / full.exposed_comm_by_kind_s["dp"]
    assert ratio < 0.05, ratio          # 42M of 8.0B parameters' gradients, plus the collectives' latency


def test_host_memory_beyond_the_node_does_not_fit():
    m = get_model("llama3-405b").with_seq_len(2048)
    cl = make_cluster("h100-sxm-80gb", 1)
    est = estimate(m, cl, Plan(dp=8, zero_stage=3, global_batch_size=8, recompute="full",
                               offload="optimizer,params,gradients"))
    assert est.peak_memory_bytes < cl.gpu.hbm_bytes and not est.fits
    assert est.host_memory_bytes > cl.node.host_memory_bytes
    assert any(w.startswith("host memory") for w in est.warnings)


def test_search_axes_method_and_optimizer():
    """'the cheapest way to fine-tune Llama-3 70B on one 8xA100 node': method and optimizer as axes."""
    rc = main(["search", "--model", "llama3-70b", "--gpu", "a100-sxm-80gb", "--nodes", "1", "--global-batch", "32",
               "--finetune", "lora,qlora", "--optimizer", "adamw,adamw-8bit", "--objective", "cost", "--top", "3"])
    assert rc == 0


def test_estimate_arrays_takes_named_columns_vectorised():
    import numpy as np

    from models.estimate import estimate_arrays, plan_arrays
    m = get_model("llama3-8b").with_seq_len(1024)
    a = plan_arrays(Plan(recompute="full"))
    a["finetune"] = np.array(["none", "lora", "qlora"])
    a["optimizer"] = np.array(["adamw", "adamw-8bit", "sgd"])
    r = estimate_arrays(m, H100_1, **a)
    one = [estimate(m, H100_1, Plan(recompute="full", finetune=f, optimizer=o)).peak_memory_bytes
           for f, o in zip(a["finetune"], a["optimizer"])]
    assert np.allclose(r["peak_memory_bytes"], one)


def test_nvme_offload_runs_once_the_node_states_its_bandwidth():
    """ZeRO-Infinity offloads to NVMe (Rajbhandari et al. 2021); no datasheet states a node's NVMe bandwidth,
    so the user gives it (--nvme-gb-per-s) and the step then carries NVMe traffic."""
    import contextlib
    import io
    import json

    from simulator.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["estimate", "--model", "llama3-8b", "--gpu", "a100", "--finetune", "lora", "--offload", "optimizer",
                   "--offload-to", "nvme", "--nvme-gb-per-s", "12", "--json"])
    assert rc in (0, None)
    d = json.loads(buf.getvalue())
    assert d["host_memory_bytes"] > 0


def test_frozen_o_proj_frees_its_input_only_under_unfused_attention():
    """PyTorch saves a matmul's input only for the weight gradient (tools/autograd/derivatives.yaml, mm: mat2's
    gradient reads ``self``), so a frozen o_proj keeps no input; FlashAttention keeps that same tensor (its
    output) for its own backward, the unfused softmax x V bmm does not. Adapting o_proj keeps it either way."""
    m = get_model("llama2-7b").with_seq_len(1024)
    tokens, hq = 1024, m.num_heads * m.dh

    def acts(attention, targets):
        plan = Plan(finetune="lora", lora_targets=targets, attention=attention, micro_batch_size=1)
        return estimate(m, H100_1, plan).memory.activations_bytes

    per_layer = 2 * tokens * hq      # 16-bit o_proj input, one layer
    # adapting o_proj: the adapter's rank-r intermediate is added, and (unfused only) the input is kept again
    unfused = acts("unfused", "q_proj,v_proj,o_proj") - acts("unfused", "q_proj,v_proj")
    flash = acts("flash", "q_proj,v_proj,o_proj") - acts("flash", "q_proj,v_proj")
    assert unfused - flash == pytest.approx(m.num_layers * per_layer, rel=1e-6)
