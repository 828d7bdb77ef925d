"""Elementwise traffic that depends on the implementation (Plan.fused_elementwise): fused kernels (Megatron-Core's
rope and bias-SwiGLU fusions, XLA) against PyTorch eager as torchtitan runs its llama model. Byte counts are read off
the code each names: torchtitan torchtitan/models/llama/model.py@0011fb9 (apply_rotary_emb through a float32 complex
product; FeedForward w2(F.silu(w1(x)) * w3(x)); repeat_kv and output.transpose(1, 2).contiguous() around
F.scaled_dot_product_attention); Megatron-LM megatron/training/arguments.py@core_r0.8.0 (--no-rope-fusion,
--no-bias-swiglu-fusion are store_false: fused by default)."""

import dataclasses

import numpy as np
import pytest

from models.efficiency import KERNEL_OVERHEAD_S
from models.estimate import estimate, plan_arrays
from models.frameworks import PROFILES, apply_defaults
from models.hardware import make_cluster
from models.inputs import _GENERIC
from models.layer import EAGER_KERNELS, layer_times
from models.plan import Plan
from models.profile import kernel_model
from models.transformer import Transformer, get_model

A100 = make_cluster("a100-sxm-80gb")


def _fwd(model, fused, attention="flash", tp=1):
    # the norm kernel held fused on both sides: these tests are about rope, SwiGLU and the SDPA copies (the eager
    # RMSNorm has its own below)
    plan = Plan(dp=8, tp=tp, micro_batch_size=1, global_batch_size=8, attention=attention, fused_elementwise=fused,
                fused_norm=True)
    a = {k: np.asarray(v) for k, v in plan_arrays(plan).items()}
    return [float(x) for x in layer_times(model, kernel_model(A100, "bf16"), a, moe=False)]


def test_eager_llama_moves_the_rope_swiglu_and_sdpa_copies():
    """Llama 3 8B (GQA 32/8, head dim 128, SwiGLU 14336) forward, per token: eager rotary embedding 20 bytes a q/k
    element against 4 fused (16 x 5120); SiLU apart from the gate product, 10 bytes a FFN element against 6 (4 x
    14336); repeat_kv of k and v (4 x (4096 + 1024)) and the contiguous output copy (4 x 4096); ten more kernels.
    The backward moves twice the forward's elementwise bytes."""
    m = get_model("llama3-8b")
    assert m.rope_dims == (32 + 8) * 128
    km = kernel_model(A100, "bf16")
    T = m.seq_len
    extra = T * (16 * 5120 + 4 * 14336 + 4 * (4096 + 1024) + 4 * 4096)
    eager, fused = _fwd(m, False), _fwd(m, True)
    kernels = sum(EAGER_KERNELS.values())
    want = float(km.memory_bound(extra, 0)) + kernels * KERNEL_OVERHEAD_S
    assert eager[0] - fused[0] == pytest.approx(want, rel=1e-9)
    assert eager[1] - fused[1] == pytest.approx(2 * want, rel=1e-9)
    # tensor parallelism splits the heads and the FFN width: the extra bytes per rank fall by tp
    e2, f2 = _fwd(m, False, tp=2), _fwd(m, True, tp=2)
    assert e2[0] - f2[0] == pytest.approx(float(km.memory_bound(extra / 2, 0)) + kernels * KERNEL_OVERHEAD_S, rel=1e-9)


def test_gpt_layers_differ_only_by_the_sdpa_output_copy_and_not_under_flash1():
    """GPT-3 (learned positions, GeLU, multi-head attention): no rotary embedding, an ungated activation that moves
    the same bytes eager or fused, no GQA expansion; eager adds only the attention output's contiguous copy. Under
    FlashAttention v1's packed interface that copy is the packing already costed: no difference at all."""
    m = get_model("gpt3-175b")
    assert m.rope_dims == 0
    km = kernel_model(A100, "bf16")
    eager, fused = _fwd(m, False), _fwd(m, True)
    assert eager[0] - fused[0] == pytest.approx(float(km.memory_bound(m.seq_len * 4 * m.hidden, 1)), rel=1e-9)
    assert _fwd(m, False, "flash1") == _fwd(m, True, "flash1")


def test_rope_dims_follow_the_position_scheme():
    """ALiBi (BLOOM, MPT), no position encoding and learned positions rotate nothing; MLA rotates its decoupled
    parts only: d_h^R per query head plus the one shared key part (DeepSeek-V2 Sec. 2.1.3; V3: 128 heads,
    d_h^R = 64)."""
    assert get_model("deepseek-v3").rope_dims == (128 + 1) * 64
    bloom = Transformer("bloom", 70, 14336, 112, 112, 4 * 14336, 250880, 2048, "gelu", rotary=False)
    assert bloom.rope_dims == 0
    with pytest.raises(ValueError, match="model.rotary"):
        Transformer("x", 2, 64, 4, 4, 256, 100, 16, rotary="yes")


def test_hf_config_and_records_read_alibi_as_no_rotary():
    from models.hf_config import from_hf_config
    cfg = {"model_type": "bloom", "n_layer": 2, "hidden_size": 64, "n_head": 4, "vocab_size": 100}
    m = from_hf_config(cfg, "bloom-tiny", seq_len=16)
    assert not m.rotary and m.rope_dims == 0
    assert from_hf_config({**cfg, "model_type": "llama"}, "llama-tiny", seq_len=16).rotary
    mpt = {**cfg, "model_type": "mpt"}
    assert not from_hf_config({**mpt, "attn_config": {"alibi": True}}, "mpt-tiny", seq_len=16).rotary
    with pytest.raises(ValueError, match="config.json: attn_config: must be an object"):
        from_hf_config({**mpt, "attn_config": "x"}, "mpt-tiny", seq_len=16)
    from simulator.validation.records import record_model
    rec = {"id": "r", "model": {"layers": 2, "hidden": 64, "heads": 4, "seq_len": 16, "ffn_activation": "gelu",
                                "position": "ALiBi"}}
    assert not record_model(rec).rotary and not record_model(rec).learned_pos_emb


def test_profiles_set_the_implementation_and_the_estimate_follows():
    """Megatron-Core recipes fuse (NeMo llama.py@v2.2.0 LlamaConfig apply_rope_fusion / bias_activation_fusion True);
    torchtitan runs eager (compile = false in its train_configs); a framework that does not say keeps the generic
    PyTorch-eager default. An eager llama iteration is slower than a fused one, nothing else equal."""
    for name, want in (("megatron-core", True), ("megatron-lm", True), ("torchtitan", False), ("maxtext", True)):
        out, used = apply_defaults(dict(_GENERIC), name, _GENERIC)
        assert out["fused_elementwise"] is want, name
        assert any(u.startswith(f"fused_elementwise={want}") for u in used) or want == _GENERIC["fused_elementwise"]
    assert _GENERIC["fused_elementwise"] is False and "fused_elementwise" not in PROFILES["fsdp"].defaults
    m, cl = get_model("llama3-8b"), make_cluster("h100", 1)
    plan = Plan(dp=8, micro_batch_size=1, global_batch_size=64, zero_stage=1)
    slow = estimate(m, cl, dataclasses.replace(plan, fused_norm=True)).step_time_s   # rope, SwiGLU, SDPA copies
    fast = estimate(m, cl, dataclasses.replace(plan, fused_elementwise=True)).step_time_s
    assert 1.01 < slow / fast < 1.15
    assert estimate(m, cl, plan).step_time_s > slow      # and the eager RMSNorm on top


def test_the_simulator_costs_the_same_layer():
    """The discrete-event simulation takes its layer times from the same model: eager is slower there too."""
    from simulator.des.simulate import simulate
    m, cl = get_model("llama3-8b"), make_cluster("h100", 1)
    plan = Plan(dp=8, micro_batch_size=1, global_batch_size=16, zero_stage=1)
    slow = simulate(m, cl, plan).step_time_s
    fast = simulate(m, cl, dataclasses.replace(plan, fused_elementwise=True)).step_time_s
    assert slow > fast * 1.01


def test_records_say_whether_they_compiled(dev_runs_2_path):
    """torchtitan's 405B rows note 'torch.compile = true in train_configs/llama3_405b.toml at the commit': fused; the
    A100 rows note the default 'compile=false': eager, as the torchtitan profile's default is."""
    import copy

    from simulator.validation.published import load_runs, record_inputs
    runs = {r["id"]: r for r in load_runs(dev_runs_2_path)}
    big = runs["torchtitan_perfdoc_h100_llama31_405b_128gpu_fsdp16_tp8_none"]
    assert record_inputs(big)[2].fused_elementwise is True
    small = runs["torchtitan_perfdoc_a100_llama3_8b_64gpu_lbs1_sac_layer"]
    assert record_inputs(small)[2].fused_elementwise is False
    unsaid = copy.deepcopy(big)
    unsaid["notes"] = "1D FSDP OOMs for 405B (stated)."
    plan = record_inputs(unsaid)[2]
    assert plan.fused_elementwise is False   # the profile default (the generic one too, so not listed)


def _fwd_norm(model, **kw):
    plan = Plan(dp=8, micro_batch_size=1, global_batch_size=8, **kw)
    a = {k: np.asarray(v) for k, v in plan_arrays(plan).items()}
    return float(layer_times(model, kernel_model(A100, "bf16"), a, moe=False)[0])


def test_eager_rmsnorm_moves_36_bytes_an_element_forward():
    """torchtitan norms.py@3faaa1a0d RMSNorm (and Hugging Face LlamaRMSNorm): x.float() r2 w4, pow r4 w4, mean r4,
    x * rsqrt r4 w4, type_as r4 w2, * weight r2 w2 = 36 bytes an element in 8 kernels, against a fused kernel's
    r+w = 4 in 1. The forward difference is those 32 bytes x 2 norms x tokens x h at the HBM rate plus 14 launches;
    a fused norm kernel (fused_norm) or fused elementwise ops remove it; LayerNorm is one native kernel anyway."""
    from models.efficiency import memory_bound_time_s
    from models.layer import EAGER_NORM_KERNELS, NORM_BYTES
    m = get_model("llama3-8b").with_seq_len(4096)
    assert m.norm == "rmsnorm" and NORM_BYTES == {"fused": 4, "eager": 36} and EAGER_NORM_KERNELS == 7
    eager, fused_norm = _fwd_norm(m), _fwd_norm(m, fused_norm=True)
    km = kernel_model(A100, "bf16")
    want = memory_bound_time_s(4096 * m.hidden * 2 * 32, km.hbm_bytes_per_s, 0) + 14 * KERNEL_OVERHEAD_S
    assert eager - fused_norm == pytest.approx(want, rel=1e-6)
    # fused_elementwise fuses the norm with the rest: fused_norm adds nothing there
    assert _fwd_norm(m, fused_elementwise=True) == _fwd_norm(m, fused_elementwise=True, fused_norm=True)
    ln = dataclasses.replace(m, norm="layernorm")
    assert _fwd_norm(ln) == _fwd_norm(ln, fused_norm=True)


def test_eager_rmsnorm_keeps_its_fp32_upcast():
    """The eager norm's square and product save x.float() (4 B) where a fused kernel saves the 16-bit input (2 B):
    +2 B an element a norm in 16-bit training, nothing under full recompute (only the layer input is kept)."""
    m = get_model("llama3-8b").with_seq_len(2048)
    cl = make_cluster("h100", 1)
    base = Plan(dp=8, micro_batch_size=1, global_batch_size=8)
    acts = {fn: estimate(m, cl, dataclasses.replace(base, fused_norm=fn)).memory.activations_bytes for fn in (False, True)}
    assert acts[False] - acts[True] == pytest.approx(m.num_layers * 2 * 2 * 2048 * m.hidden, rel=1e-9)
    full = {fn: estimate(m, cl, dataclasses.replace(base, fused_norm=fn, recompute="full")).memory.activations_bytes
            for fn in (False, True)}
    assert full[False] == full[True]


def test_fused_norm_defaults_name_their_source_and_records_map_it(dev_runs_path):
    """Megatron-Core's TE spec runs the norm inside TELayerNormColumnParallelLinear (gpt_layer_specs.py@core_r0.8.0);
    torchtitan's configs name the eager RMSNorm (train_configs/llama3_8b.toml@3faaa1a0d norm_type = "rmsnorm").
    Hagemann et al.'s rows that list 'flash_attention2 + RMS kernel' ran the fused norm; their recompute rows, which
    list no RMS kernel (it 'cannot be combined with checkpointing in their stack'), ran it eagerly."""
    import copy

    from simulator.validation.published import load_runs, record_inputs
    for name, want, cite in (("megatron-core", True, "TELayerNormColumnParallelLinear"),
                             ("megatron-lm", True, "TELayerNormColumnParallelLinear"),
                             ("torchtitan", False, 'norm_type = "rmsnorm"')):
        d = PROFILES[name].defaults["fused_norm"]
        assert d.value is want and cite in d.source and "@" in d.source, name
    assert _GENERIC["fused_norm"] is False
    rows = [r for r in load_runs(dev_runs_path) if r["model"].get("norm") == "RMSNorm"
            and "attention_kernel" in (r.get("parallel") or {})]
    said = [r for r in rows if "RMS kernel" in r["parallel"]["attention_kernel"]]
    unsaid = [r for r in rows if "RMS kernel" not in r["parallel"]["attention_kernel"]]
    assert said and unsaid
    assert all(record_inputs(r)[2].fused_norm for r in said)
    assert not any(record_inputs(r)[2].fused_norm for r in unsaid)
    # a record naming torchtitan's fused_rmsnorm (or TE's RMSNorm) runs it; "we compute RMSNorm" names no kernel
    titan = copy.deepcopy(unsaid[0])
    titan["parallel"]["attention_kernel"] = "sdpa; norm_type = fused_rmsnorm"
    assert record_inputs(titan)[2].fused_norm
    titan["parallel"]["attention_kernel"] = "flash; we compute RMSNorm in fp32"
    assert not record_inputs(titan)[2].fused_norm
