"""Fine-tuning records of dev_runs_2.yaml (issue 16): GPU memory within 10%, every stated fits/OOM
outcome reproduced, capacity claims within the model-state bound; skips name what the record lacks."""

from pathlib import Path

import pytest

from simulator.validation.finetune_records import (
    GPU_TOLERANCE,
    HOST_TOLERANCE,
    record_case,
    score_finetune_records,
)

DEV2 = Path(__file__).resolve().parents[2] / "shared" / "validation" / "dev_runs_2.yaml"


@pytest.fixture(scope="module")
def rows():
    if not DEV2.exists():
        pytest.skip(f"{DEV2} not present")
    return {r["id"]: r for r in score_finetune_records(DEV2)}


def test_every_stated_outcome_is_reproduced(rows):
    scored = [r for r in rows.values() if "skipped" not in r and r["fits_stated"] is not None]
    assert len(scored) >= 8
    bad = [r["id"] for r in scored if r["fits_stated"] != r["fits_predicted"]]
    assert not bad, bad


def test_lomo_table2_gpu_memory(rows):
    """LOMO (Lv et al. 2023) Table 2, peak memory per RTX 3090: within 10% except the 65B row (+16%, the
    ZeRO-3 gather buffers of two 65B layers; reported, not tuned)."""
    lomo = {k: r for k, r in rows.items() if k.startswith("finetune_lomo_t2") and "gpu_error" in r}
    assert len(lomo) == 7
    within = [k for k, r in lomo.items() if abs(r["gpu_error"]) <= GPU_TOLERANCE]
    assert len(within) >= 6, {k: round(r["gpu_error"], 3) for k, r in lomo.items()}


def test_lomo_65b_excess_is_the_two_layer_zero3_gather_buffer(rows):
    """Why the 65B row of LOMO Table 2 (19.18 GB on each of 8 RTX 3090) is over-predicted: the model charges
    ZeRO-3 two whole gathered 16-bit layers (models.memory.zero3_gather_buffer_bytes, FSDP's current + prefetched
    unit: 3.0 GiB for a 65B layer pair), but the authors ran DeepSpeed ZeRO-3 with their config/ds_config.json
    (OpenLMLab/LOMO @9f1e734: stage3_max_live_parameters 1e8, stage3_max_reuse_distance 1e8, prefetch bucket at
    DeepSpeed's 5e7), which gathers one sub-module at a time and prefetches only while fewer than 1e8
    parameters are live (deepspeed/runtime/zero/partitioned_param_coordinator.py fetch_sub_module): at most the
    largest module (gate/up/down_proj, 8192 x 22016) + 1e8 parameters. Charging that bound instead of the two
    layers puts the row within 10%; the other rows move by less (their layers are smaller). Holds until
    models.memory charges DeepSpeed's bound (then the row itself is within 10% and this passes trivially)."""
    from models import memory as mem
    from models.transformer import Transformer
    r = rows["finetune_lomo_t2_llama65b_lomo_8x3090"]
    if abs(r["gpu_error"]) <= GPU_TOLERANCE:
        return
    assert r["gpu_error"] > GPU_TOLERANCE                      # over, not under
    m = Transformer(name="llama-65b", num_layers=80, hidden=8192, num_heads=64, num_kv_heads=64, ffn_hidden=22016,
                    vocab=32000, seq_len=1024, activation="swiglu")
    two_layers = float(mem.zero3_gather_buffer_bytes(m, 1, True))
    deepspeed_bound = 2.0 * (8192 * 22016 + 1e8)
    corrected = r["predicted_gpu_bytes"] - (1 + mem.ALLOCATOR_FRAGMENTATION) * (two_layers - deepspeed_bound)
    assert abs(corrected - r["measured_gpu_bytes"]) / r["measured_gpu_bytes"] <= GPU_TOLERANCE


HOST_STATED = ("finetune_peft_readme_t0_3b_full", "finetune_peft_readme_t0_3b_lora",
               "finetune_peft_readme_t0_3b_lora_offload", "finetune_peft_readme_mt0_xxl_lora",
               "finetune_peft_readme_mt0_xxl_lora_offload", "finetune_peft_readme_bloomz_7b1_lora",
               "finetune_peft_readme_bloomz_7b1_lora_offload")


def test_every_stated_host_memory_is_scored_or_said_unscored(rows):
    """Issue 16: host memory within 20% where measured. Every record stating ``measured.cpu_memory_gb`` (PEFT README
    table) is either scored on it within HOST_TOLERANCE or skipped with a reason that says the host figure went
    unscored. The T5/mT5 rows are skipped (encoder-decoder); the bloomz-7b1 rows are scored on GPU memory and say
    that PEFT's host figure (the process's peak RSS, libraries included) is not scored. The ZeRO-3 Offload blog's
    1.5 TB is a host capacity (a capacity row's bound), not a measurement."""
    from simulator.validation.published import load_runs
    stated = {r["id"] for r in load_runs(DEV2) if (r.get("measured") or {}).get("cpu_memory_gb") is not None
              and (r.get("measured") or {}).get("max_trainable_params_b") is None}
    assert stated == set(HOST_STATED)
    for rid in HOST_STATED:
        r = rows[rid]
        if "skipped" in r:
            assert "cpu_memory_gb" in r["skipped"] and r["host_memory_stated_gb"] > 0, rid
        elif "host_error" in r:
            assert abs(r["host_error"]) <= HOST_TOLERANCE, (rid, r["host_error"])
        else:
            assert any("cpu_memory_gb" in d and "not scored" in d for d in r["defaults"]), rid


def test_skips_name_what_the_record_lacks(rows):
    assert "encoder-decoder" in rows["finetune_peft_readme_t0_3b_lora"]["skipped"]
    assert "seq_len" in rows["finetune_peft_readme_t0_3b_lora"]["skipped"]



def test_fp32_lora_bloomz_7b1_within_10_percent(rows):
    """PEFT README (huggingface/peft@9350ab8): bloomz-7b1 LoRA on one A100 80GB, 32 GB; the example's accelerate
    config trains without mixed precision (fp32: 4-byte frozen base, no FlashAttention). A 16-bit estimate would
    be about half; the fp32 one is within 10%. Full fine-tuning of the same model in fp32 does not fit (stated)."""
    r = rows["finetune_peft_readme_bloomz_7b1_lora"]
    assert "skipped" not in r and any(d.startswith("dtype=fp32") for d in r["defaults"])
    assert abs(r["gpu_error"]) <= GPU_TOLERANCE
    full = rows["finetune_peft_readme_bloomz_7b1_full"]
    assert full["fits_stated"] is False and full["fits_predicted"] is False


def test_qlora_65b_on_one_48gb_gpu_fits_with_the_authors_script(rows):
    """QLoRA (Dettmers et al. 2023) abstract: a 65B model fine-tuned on a single 48 GB GPU. The claim states no
    configuration; the authors' Guanaco-65B script (artidoro/qlora scripts/finetune_guanaco_65b.sh: r = 64 on
    every linear layer, NF4 + double quantisation, bf16, gradient checkpointing, batch 1, <= 16 + 512 tokens,
    paged_adamw_32bit over bf16 adapters) gives it one: NF4 base ~33.6 GiB + 0.8e9 adapter parameters x
    (2 + 2 + 8) bytes must fit 48 GiB; with an fp32 master copy (4 more bytes each) it would not."""
    r = rows["finetune_qlora_paper_llama65b_single48gb"]
    assert "skipped" not in r and r["fits_stated"] is True and r["fits_predicted"] is True
    assert any("finetune_guanaco_65b.sh" in d for d in r["defaults"])
    assert 40 * 2**30 < r["predicted_gpu_bytes"] < 48 * 2**30
    from simulator.validation.finetune_records import score_case
    from simulator.validation.published import load_runs
    rec = next(x for x in load_runs(DEV2) if x["id"] == "finetune_qlora_paper_llama65b_single48gb")
    case = record_case(rec)
    case["plan"]["master_weights"] = "fp32"
    assert score_case(rec, case)["fits_predicted"] is False


def test_zero_offload_capacity_claims_within_bound(rows):
    """ZeRO-Offload (Ren et al. 2021): 1.4B without offload and 13B with it on one 32 GB V100."""
    assert rows["offload_zero_offload_baseline_pytorch_1.4b_1xv100"]["ok"]
    assert rows["offload_zero_offload_max_model_1gpu"]["ok"]
    assert rows["offload_zero_offload_max_model_1gpu"]["predicted_max_params_bound"] < 20e9


def test_fp32_record_is_costed_in_fp32():
    """accelerate's mixed_precision "no": 4-byte weights and gradients, Adam's 8 bytes, no master copy (16 B per
    trainable parameter), unfused attention."""
    rec = {"id": "x", "training_method": "full", "precision": "mixed_precision: no", "group": "g",
           "model": {"layers": 2, "hidden": 64, "heads": 4, "vocab": 100, "seq_len": 16},
           "hardware": {"gpu": "NVIDIA A100 80GB", "gpus_total": 1}, "batch": {"micro_batch": 1},
           "measured": {"memory_gib_per_gpu": 1.0, "outcome": "fits"}}
    case = record_case(rec)
    assert case["plan"]["dtype"] == "fp32" and case["plan"]["attention"] == "unfused"
    from models.estimate import estimate
    from models.hardware import make_cluster
    from models.plan import Plan
    from models.transformer import Transformer
    e = estimate(Transformer(**case["model"]), make_cluster("a100-sxm-80gb", 1, gpus_per_node=1), Plan(**case["plan"]))
    states = e.memory.params_bytes + e.memory.grads_bytes + e.memory.optimizer_bytes
    assert states == pytest.approx(16 * e.params, rel=0.01)   # (the final norm is counted apart)


def test_fp32_plans_default_to_unfused_attention_and_refuse_flash():
    """FlashAttention and cuDNN fused attention take 16-bit inputs: an fp32 run whose attention is unset gets the
    unfused kernel; one that asks for flash is refused with the field named."""
    from models.estimate import PlanError, estimate
    from models.inputs import build_inputs
    inp = build_inputs("llama3-8b", gpu="a100", nodes=1, dtype="fp32", global_batch=16, zero=3)
    assert inp.plan.attention == "unfused" and inp.plan.master_weights == "none"
    assert estimate(inp.model, inp.cluster, inp.plan).step_time_s > 0
    bad = build_inputs("llama3-8b", gpu="a100", nodes=1, dtype="fp32", attention="flash", global_batch=16, zero=3)
    with pytest.raises(PlanError, match="attention: flash kernels take 16-bit inputs"):
        estimate(bad.model, bad.cluster, bad.plan)


def test_zero3_gathers_the_output_layer_whole():
    """A ZeRO-3/FSDP rank runs the output layer on its whole gathered weight (V x h / tp), the next layer's gather
    prefetched behind it: for Llama-3 8B (V = 128256) that is 525M + 218M parameters, more than two layers (436M);
    for a 32k-vocabulary Llama (LOMO's) two layers stay the larger."""
    from models import memory as mem
    from models.transformer import Transformer, get_model
    m = get_model("llama3-8b")
    layer = m.attn_params + m.dense_mlp_params
    assert float(mem.zero3_gather_buffer_bytes(m, 1, True)) == pytest.approx(2 * (m.vocab * m.hidden + layer))
    assert float(mem.zero3_gather_buffer_bytes(m, 1, False)) == pytest.approx(2 * m.vocab * m.hidden)
    assert float(mem.zero3_gather_buffer_bytes(m, 1, True, weight_bytes=4)) == pytest.approx(
        4 * (m.vocab * m.hidden + layer))
    small = Transformer(name="llama-7b", num_layers=32, hidden=4096, num_heads=32, num_kv_heads=32, ffn_hidden=11008,
                        vocab=32000, seq_len=2048, activation="swiglu")
    assert float(mem.zero3_gather_buffer_bytes(small, 1, True)) == pytest.approx(
        2 * 2 * (small.attn_params + small.dense_mlp_params))


def test_fsdp2_root_unit_stays_gathered():
    """PyTorch FSDP2 never reshards its root after forward (torch/distributed/_composable/fsdp/_fsdp_state.py@005da46,
    FSDPState._lazy_init); torchtitan's root holds the embeddings, final norm and output layer. Under ZeRO-3 those
    weights count in full (Llama-3 8B: 2 x 128256 x 4096 at 2 bytes, 2.1 GB) and the output layer needs no gather of
    its own; below ZeRO-3 nothing changes. The torchtitan profile sets it."""
    import dataclasses

    from models import memory as mem
    from models.estimate import estimate
    from models.frameworks import PROFILES
    from models.hardware import make_cluster
    from models.plan import Plan
    from models.transformer import get_model
    m, cl = get_model("llama3-8b"), make_cluster("h100-sxm-80gb", 2)
    p = Plan(dp=16, micro_batch_size=1, global_batch_size=64, zero_stage=3)
    base = estimate(m, cl, p).peak_memory_bytes
    rooted = estimate(m, cl, dataclasses.replace(p, fsdp_root_unsharded=True)).peak_memory_bytes
    layers = float(mem.zero3_gather_buffer_bytes(m, 1, True, output_layer=False))
    extra = layers + float(mem.fsdp_root_bytes(m, 1)) - float(mem.zero3_gather_buffer_bytes(m, 1, True))
    assert rooted - base == pytest.approx(extra * (1 + mem.ALLOCATOR_FRAGMENTATION), rel=1e-6)
    z1 = dataclasses.replace(p, zero_stage=1)
    assert estimate(m, cl, dataclasses.replace(z1, fsdp_root_unsharded=True)).peak_memory_bytes == \
        estimate(m, cl, z1).peak_memory_bytes
    assert PROFILES["torchtitan"].defaults["fsdp_root_unsharded"].value is True


def test_deepspeed_zero3_rows_carry_the_frameworks_buffers(rows):
    """A ZeRO-3 record whose text names DeepSpeed and whose authors' configuration says nothing of the buffers gets
    DeepSpeed's own defaults (deepspeed/runtime/zero/config.py@03dc2b9: reduce_bucket_size 5e8 elements, allocated
    as one contiguous gradient bucket, stage3.py __ipg_bucket_flat_buffer; stage3_max_live_parameters 1e9): the
    PEFT bloomz-7b1 DeepSpeed-offload row (fp32: 4 bytes an element) carries 5e8 x 4 bytes more than without.
    Its measured 18.1 GB is still under-predicted (the residency of DeepSpeed's offloaded ZeRO-3 is not modelled
    further; README, dev-set notes). The LOMO rows keep their authors' own DeepSpeed config."""
    from models import memory as mem
    r = rows["finetune_peft_readme_bloomz_7b1_lora_offload"]
    assert "zero_bucket_params=5e+08 (deepspeed)" in r["defaults"]
    from simulator.validation.finetune_records import score_case
    from simulator.validation.published import load_runs
    rec = next(x for x in load_runs(DEV2) if x["id"] == "finetune_peft_readme_bloomz_7b1_lora_offload")
    case = record_case(rec)
    bare = {**case, "plan": {k: v for k, v in case["plan"].items() if k != "zero_bucket_params"}}
    gained = r["predicted_gpu_bytes"] - score_case(rec, bare)["predicted_gpu_bytes"]
    assert gained == pytest.approx(5e8 * 4 * (1 + mem.ALLOCATOR_FRAGMENTATION), rel=1e-6)
    assert r["gpu_error"] < 0   # the known miss stays visible
    lomo = rows["finetune_lomo_t2_llama7b_adamw_8x3090"]
    assert not any(d.endswith("(deepspeed)") for d in lomo["defaults"])
