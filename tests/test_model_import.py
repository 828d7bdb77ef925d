"""Hugging Face config.json import: published parameter counts, attention/MoE variants, FLOPs of
the variants, the report of what was read and ignored, and one clear error for bad input.

The configs in tests/data/ are the published config.json files (tests/data/README.md says where
each came from); each count test cites the source of its number.
"""

import json
import os
from pathlib import Path

import pytest

from models import flops as fl
from models.describe import describe_model
from models.hf_config import find_hf_config, from_hf_config, load_hf_config, read_hf_config
from models.transformer import Transformer, get_model, resolve_model

DATA = Path(__file__).parent / "data"
TOLERANCE = 0.005   # relative, for counts published rounded to 0.1 B

# (config folder, published total, source). Exact counts: the sum of the checkpoint's tensor sizes
# that the Hugging Face model page shows ("Model size") / safetensors index metadata.
EXACT_TOTALS = {
    # HF openai-community/gpt2 model.safetensors: 124,439,808 parameters (Radford et al. 2019, "124M")
    "gpt2": 124_439_808,
    # HF meta-llama/Llama-2-7b-hf safetensors: 6,738,415,616 (Touvron et al. 2023 Table 1: "7B")
    "llama-2-7b": 6_738_415_616,
    # HF meta-llama/Meta-Llama-3-8B safetensors: 8,030,261,248 (Llama 3 herd paper Table 3: "8B")
    "llama-3-8b": 8_030_261_248,
    # HF google/gemma-2-9b safetensors: 9,241,705,984 (Gemma 2 report, Team et al. 2024, Table 1: 9.24B)
    "gemma-2-9b": 9_241_705_984,
    # HF Qwen/Qwen2-7B safetensors: 7,615,616,512 (Qwen2 technical report, Yang et al. 2024, Table 1: 7.6B)
    "qwen2-7b": 7_615_616_512,
}


def imported(name: str):
    return read_hf_config(DATA / name / "config.json")


@pytest.mark.parametrize("name,total", EXACT_TOTALS.items())
def test_exact_published_parameter_counts(name, total):
    assert imported(name).model.num_params == total


def test_mixtral_8x7b_total_and_active():
    # Mistral AI, "Mixtral of experts" (2023-12-11) and Jiang et al. 2024 Sec. 2: 46.7B total parameters,
    # 12.9B used per token (top-2 of 8 experts; embedding and head included in both).
    m = imported("mixtral-8x7b").model
    assert m.num_params == pytest.approx(46.7e9, rel=TOLERANCE)
    assert m.num_active_params == pytest.approx(12.9e9, rel=TOLERANCE)


def test_deepseek_v3_total_and_active():
    # DeepSeek-V3 technical report (arXiv 2412.19437) abstract: 671B total, 37B activated per token;
    # the model's README_WEIGHTS.md: main model 671B, "Activation parameters: 36.6B (including 0.9B for
    # the output Head)", i.e. without the 0.9B input embedding table.
    m = imported("deepseek-v3").model
    assert m.num_params == pytest.approx(671e9, rel=TOLERANCE)
    active = m.num_active_params - m.embedding_params
    assert active == pytest.approx(36.6e9, rel=TOLERANCE) and round(active / 1e9) == 37
    assert m.output_params == pytest.approx(0.9e9, rel=0.05)


def test_gpt_oss_120b_total_and_active():
    # OpenAI gpt-oss-120b model card (arXiv 2508.10925) Table 1: 116.83B total, 5.13B active per token;
    # the active count leaves out the input embedding table (unembedding included), as DeepSeek's does.
    m = imported("gpt-oss-120b").model
    assert m.num_params == pytest.approx(116.83e9, rel=TOLERANCE)
    assert m.num_active_params - m.embedding_params == pytest.approx(5.13e9, rel=TOLERANCE)


@pytest.mark.parametrize("preset,config", [("gpt2-small", "gpt2"), ("llama2-7b", "llama-2-7b"),
                                           ("llama3-8b", "llama-3-8b"), ("mixtral-8x7b", "mixtral-8x7b"),
                                           ("gpt-oss-120b", "gpt-oss-120b"), ("deepseek-v3", "deepseek-v3")])
def test_preset_counts_equal_the_config_path(preset, config):
    p, c = get_model(preset), imported(config).model
    assert (p.num_params, p.num_active_params) == (c.num_params, c.num_active_params)


def test_issue_18_regressions():
    # Each was wrong before issue 18: GPT-2 untied and without positions (0.2 B), Gemma-2's GeGLU counted
    # as a 2-matrix FFN (8.0 B), DeepSeek-V3 with MHA for MLA (54.8 B active on the preset).
    gpt2 = imported("gpt2").model
    assert gpt2.tied_embeddings and gpt2.learned_pos_emb and gpt2.context_len == 1024
    gemma = imported("gemma-2-9b").model
    assert gemma.activation == "geglu" and gemma.ffn_matrices == 3 and gemma.norms_per_layer == 4
    assert (gemma.sliding_window, gemma.num_sliding_layers) == (4096, 21)
    ds = get_model("deepseek-v3")
    assert ds.is_mla and ds.num_active_params < 38e9
    assert imported("qwen2-7b").model.qkv_bias and not imported("qwen2-7b").model.out_bias


def test_kv_heads_are_replicated_not_divided_below_one():
    # Megatron-LM replicates K/V heads when tp exceeds the query groups.
    m = get_model("llama3-8b")
    assert float(m.kv_heads_per_rank(2)) == 4 and float(m.kv_heads_per_rank(16)) == 1


def test_mla_flops_match_its_weights():
    m = get_model("deepseek-v3")
    assert float(fl.attn_proj_flops(m, 10)) == 2 * 10 * m.attn_weight_params
    mha = get_model("llama2-7b")   # unchanged for MHA: SC'21's 2 t h (2 h_q + 2 h_kv)
    assert float(fl.attn_proj_flops(mha, 10)) == 2 * 10 * 4096 * (4 * 4096)
    # MLA scores: q/k of 192 dims, v of 128 per head (DeepSeek-V2 eqs. 15-18)
    assert float(fl.attn_core_flops(m, 1, 4096, causal=False)) == 2 * 4096**2 * 128 * (192 + 128)


def test_sliding_window_flops():
    m = imported("gemma-2-9b").model
    full = fl.attn_core_flops(m, 1, 8192, causal=False)
    total = fl.attn_core_flops_all_layers(m, 1, 8192, causal=False)
    assert float(total) == pytest.approx(21 * full + 21 * full * 4096 / 8192)
    assert float(fl.forward_flops(m, 1)) < float(fl.forward_flops(Transformer(**{
        **{f: getattr(m, f) for f in m.__slots__}, "sliding_window": 0, "num_sliding_layers": 0}), 1))


def test_sequence_length_is_not_capped_silently():
    q = imported("qwen2-7b").model
    assert q.seq_len == 8192 and q.context_len == 131072 and "131072" in q.note
    ds = imported("deepseek-v3").model   # rope_scaling.original_max_position_embeddings: pre-training length
    assert ds.seq_len == 4096 and ds.context_len == 163840
    assert load_hf_config(DATA / "qwen2-7b", seq_len=32768).seq_len == 32768
    assert describe_model(DATA / "qwen2-7b").max_seq_len == 131072


def test_describe_report():
    r = describe_model(DATA / "gemma-2-9b")
    d = r.as_dict()
    for key in ("params", "active_params", "embedding_params", "warnings", "params_by_component",
                "bytes_by_dtype", "architecture", "read", "ignored", "max_seq_len"):
        assert key in d
    assert sum(d["params_by_component"].values()) == d["params"] == 9_241_705_984
    assert any(w.startswith("attn_logit_softcapping:") for w in r.warnings)
    assert any(w.startswith("final_logit_softcapping:") for w in r.warnings)
    assert "rope_theta" in r.ignored and "sliding_window" in r.read
    assert d["bytes_by_dtype"]["bf16/fp16"]["weights_bytes"] == 2 * d["params"]
    assert d["bytes_by_dtype"]["int4"]["training_adam_bytes"] is None
    json.dumps(d)
    ds = describe_model(DATA / "deepseek-v3")
    assert any(w.startswith("num_nextn_predict_layers:") for w in ds.warnings)
    assert dict(ds.architecture)["attention"].startswith("MLA")
    assert describe_model("llama3-8b").source == "preset"


def test_hub_cache_and_snapshot_dirs(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--acme--tiny"
    for rev, layers, mtime in (("aaa", 2, 1_000), ("bbb", 3, 2_000)):
        cfg = repo / "snapshots" / rev / "config.json"
        cfg.parent.mkdir(parents=True)
        cfg.write_text(json.dumps({"num_hidden_layers": layers, "hidden_size": 64, "num_attention_heads": 4,
                                   "vocab_size": 100, "model_type": "llama", "max_position_embeddings": 128}))
        os.utime(cfg, (mtime, mtime))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert load_hf_config(repo).num_layers == 3                 # newest snapshot of a cache folder
    assert load_hf_config(repo / "snapshots" / "aaa").num_layers == 2
    m = resolve_model("acme/tiny")                                # cached Hub id
    assert m.num_layers == 3 and m.name == "acme/tiny"
    with pytest.raises(ValueError) as e:
        find_hf_config("meta-llama/Llama-3.1-8B")
    msg = str(e.value)
    assert "\n" not in msg and "huggingface-cli download meta-llama/Llama-3.1-8B config.json" in msg


BASE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100}


@pytest.mark.parametrize("patch,field", [
    ({"num_hidden_layers": 4.5}, "num_hidden_layers"),
    ({"num_hidden_layers": -2}, "num_hidden_layers"),
    ({"hidden_size": "64"}, "hidden_size"),
    ({"vocab_size": float("nan")}, "vocab_size"),
    ({"intermediate_size": float("inf")}, "intermediate_size"),
    ({"tie_word_embeddings": "false"}, "tie_word_embeddings"),
    ({"num_attention_heads": True}, "num_attention_heads"),
    ({"num_key_value_heads": 3}, "num_kv_heads"),
    ({"n_routed_experts": 8, "num_experts_per_tok": 9}, "top_k"),
    ({"layer_types": ["full_attention"], "sliding_window": 16}, "layer_types"),
    ({"rope_scaling": [1, 2]}, "rope_scaling"),
    ({"vocab_size": None}, "vocab_size"),
])
def test_bad_values_name_the_field(tmp_path, patch, field):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**BASE, **patch}))   # NaN / Infinity are written as Python's json does
    with pytest.raises(ValueError) as e:
        describe_model(p)
    assert field in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content,needle", [
    (b"{not json", "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text file"),
    (b"[1, 2]", "JSON object"),
    (b"", "not valid JSON"),
])
def test_malformed_files(tmp_path, content, needle):
    p = tmp_path / "config.json"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=needle):
        describe_model(p)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown preset"):
        describe_model("llama-9")
    with pytest.raises(ValueError, match="no such file"):
        describe_model("./missing/config.json")


def test_in_memory_dict_defaults():
    # PretrainedConfig's default tie_word_embeddings is True; Llama's config class says False.
    assert from_hf_config({**BASE}).tied_embeddings
    assert not from_hf_config({**BASE, "model_type": "llama"}).tied_embeddings
