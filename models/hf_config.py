"""Hugging Face ``config.json`` files as :class:`models.transformer.Transformer` specs: the family traits,
what the reader read, ignored and warned about (:class:`HFImport`), and finding a config locally (a file, a
model folder or snapshot, the hub cache).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from models.transformer import MAX_CONFIG_INT, Transformer

TRAINING_SEQ_LEN_CAP = 8192                  # default training length for configs with a longer context
# Largest config.json read (real ones are a few KB; the Hub's largest are under 100 KB).
MAX_CONFIG_BYTES = 4 << 20


# ----- Hugging Face config.json -----
# Family traits from the Hugging Face implementations (transformers/models/<type>/modeling_<type>.py
# and configuration_<type>.py). model_type values not listed fall back on the key-based rules.
_LAYERNORM_TYPES = {"gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi",
                    "starcoder2"}
_PLAIN_FFN_TYPES = _LAYERNORM_TYPES                     # fc_in -> act -> fc_out
_GATED_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen2_vl", "qwen3", "qwen3_moe", "gemma",
                "gemma2", "gemma3", "gemma3_text", "deepseek_v2", "deepseek_v3", "gpt_oss", "phi3", "olmo", "olmo2",
                "granite", "cohere", "internlm2"}               # gate_proj, up_proj -> down_proj
_ALL_BIAS_TYPES = {"gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "opt", "bloom", "starcoder2", "phi"}
_QKV_BIAS_TYPES = {"qwen2", "qwen2_moe", "qwen2_vl"}    # q/k/v Linear(bias=True), o_proj without
_UNTIED_DEFAULT_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2",
                         "deepseek_v3", "gpt_oss", "gpt_neox", "phi3", "olmo", "olmo2"}  # config class default
_SANDWICH_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}  # pre- and post-norm around attention and FFN
_LEARNED_POS_TYPES = {"gpt2", "gpt_bigcode", "gpt_neo", "opt"}
# Keys that do not change the training cost: listed as ignored, without a warning.
_NO_COST_KEYS = {
    "architectures", "model_type", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "torch_dtype",
    "dtype", "transformers_version", "initializer_range", "use_cache", "rms_norm_eps", "layer_norm_epsilon",
    "layer_norm_eps", "rope_theta", "auto_map", "pretraining_tp", "tokenizer_class", "summary_activation",
    "summary_first_dropout", "summary_proj_to_labels", "summary_type", "summary_use_proj", "task_specific_params",
    "scale_attn_weights", "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx", "output_router_logits",
    "router_aux_loss_coef", "aux_loss_alpha", "router_jitter_noise", "norm_topk_prob", "routed_scaling_factor",
    "scoring_func", "n_group", "topk_group", "seq_aux", "ep_size", "swiglu_limit", "query_pre_attn_scalar",
    "cache_implementation", "max_window_layers", "sliding_window_size", "hidden_activation", "rope_scaling",
    "initial_context_length", "attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "n_ctx",
    "hidden_dropout", "rope_parameters", "use_sliding_window", "topk_method",
}
# Keys whose effect on cost is not modelled: ignored with a warning.
_COST_WARNINGS = {
    "attn_logit_softcapping": "tanh soft-capping of attention scores is not costed (it needs an attention kernel "
                              "with softcap support, e.g. FlashAttention >= 2.6)",
    "final_logit_softcapping": "tanh soft-capping of the logits is not costed (one extra pass over the logits)",
    "quantization_config": "the checkpoint is stored quantized; clustersim costs 16-bit weights (bf16 training)",
    "num_nextn_predict_layers": "multi-token-prediction modules are not counted (DeepSeek-V3: 11.5 B more "
                                "parameters and one more layer of compute per token)",
}
_DROPOUT_KEYS = ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout")


@dataclass(frozen=True, slots=True)
class HFImport:
    """A model read from a Hugging Face config.json and what the reader did with each key."""
    model: Transformer
    source: str                       # the file read ("<dict>" for an in-memory config)
    read: tuple[str, ...]             # keys that set a model field
    ignored: tuple[str, ...]          # keys present but not used
    warnings: tuple[str, ...]         # "key: why" for each ignored key that changes cost
    notes: tuple[str, ...]            # defaults the reader assumed ("tie_word_embeddings: ...")


class _Cfg:
    """Typed, validated access to a config dict that remembers the keys it used."""

    def __init__(self, cfg: dict):
        self.cfg, self.used = cfg, set()

    def raw(self, *keys):
        """(key, value) of the first alias with a value; every alias present counts as read."""
        self.used.update(k for k in keys if k in self.cfg)
        for k in keys:
            if self.cfg.get(k) is not None:
                return k, self.cfg[k]
        return None, None

    def num(self, *keys, default=None, minimum=1, whole=True):
        k, v = self.raw(*keys)
        if k is None:
            if default is None:
                raise ValueError(f"config.json: missing field {keys[0]}")
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"config.json: {k}: must be a number, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"config.json: {k}: must be finite, got {v!r}")
        if whole and v != int(v):
            raise ValueError(f"config.json: {k}: must be a whole number, got {v!r}")
        if v < minimum:
            raise ValueError(f"config.json: {k}: must be >= {minimum}, got {v!r}")
        if whole and v > MAX_CONFIG_INT:
            raise ValueError(f"config.json: {k}: must be <= {MAX_CONFIG_INT:,}, got {v!r}")
        return int(v) if whole else float(v)

    def flag(self, key, default: bool) -> bool:
        k, v = self.raw(key)
        if k is None:
            return default
        if not isinstance(v, bool):
            kind = "the string " if isinstance(v, str) else ""
            raise ValueError(f"config.json: {key}: must be true or false, got {kind}{v!r}")
        return v

    def text(self, *keys, default: str) -> str:
        k, v = self.raw(*keys)
        if k is None:
            return default
        if not isinstance(v, str):
            raise ValueError(f"config.json: {k}: must be a string, got {v!r}")
        return v

    def mapping(self, key) -> dict:
        k, v = self.raw(key)
        if k is not None and not isinstance(v, dict):
            raise ValueError(f"config.json: {key}: must be an object, got {v!r}")
        return v or {}


def _activation(c: _Cfg, model_type: str) -> str:
    """gelu (plain FFN) | swiglu | geglu: gating comes from the family, the name from hidden_act."""
    act = c.text("hidden_activation", "hidden_act", "activation_function", default="gelu").lower()
    gated = (model_type not in _PLAIN_FFN_TYPES and (model_type != "" or act in ("silu", "swish", "swiglu")))
    if not gated:
        return "gelu"   # ReLU / GeLU variants cost the same 2-matrix FFN
    return "geglu" if act.startswith("gelu") else "swiglu"


def _sliding(c: _Cfg, model_type: str, num_layers: int, context: int) -> tuple[int, int, list[str]]:
    """(window tokens, layers using it, notes) from sliding_window, layer_types, use_sliding_window,
    sliding_window_pattern (Gemma-3) or the Gemma-2 convention (even layers local)."""
    window = c.num("sliding_window", default=0, minimum=0)
    notes = []
    if not window:
        return 0, 0, notes
    if not c.flag("use_sliding_window", True):
        return 0, 0, [f"sliding_window: {window} not used (use_sliding_window is false)"]
    if window >= context:
        return 0, 0, [f"sliding_window: {window} >= the {context}-token context: every layer is global"]
    k, types = c.raw("layer_types")
    if k is not None:
        if not isinstance(types, list) or len(types) != num_layers or not all(isinstance(t, str) for t in types):
            raise ValueError(f"config.json: layer_types: must list one string per layer ({num_layers}), got {types!r}")
        return window, sum(t == "sliding_attention" for t in types), notes
    pattern = c.num("sliding_window_pattern", default=0, minimum=0)
    if pattern:
        return window, num_layers - num_layers // pattern, notes   # every pattern-th layer is global
    if model_type == "gemma2":
        return window, (num_layers + 1) // 2, notes                # HF Gemma2: layer_idx % 2 == 0 is local
    return window, num_layers, notes                               # Mistral: every layer


def _seq_len(c: _Cfg, seq_len: int | None) -> tuple[int, int, list[str]]:
    """(training seq_len, context limit, notes). The default training length is the pre-training
    context (rope_scaling.original_max_position_embeddings, initial_context_length) or the limit,
    at most TRAINING_SEQ_LEN_CAP; either way the note says so."""
    context = c.num("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", default=0)
    notes = []
    if not context:
        context = seq_len or 4096
        notes.append(f"max_position_embeddings: missing; context limit taken as {context} tokens")
    if seq_len:
        return seq_len, context, notes
    rope = c.mapping("rope_scaling")
    pretrain = rope.get("original_max_position_embeddings")
    if not isinstance(pretrain, int) or isinstance(pretrain, bool) or pretrain < 1:
        pretrain = c.num("initial_context_length", default=0)
    s = min(pretrain or context, context, TRAINING_SEQ_LEN_CAP)
    if s < context:
        why = "the pre-training context" if s == pretrain else f"capped at {TRAINING_SEQ_LEN_CAP}"
        notes.append(f"seq_len: {s} ({why}) of a {context}-token limit (max_position_embeddings); "
                     "pass --seq-len to change")
    return s, context, notes


def _tied(c: _Cfg, model_type: str) -> tuple[bool, list[str]]:
    if "tie_word_embeddings" in c.cfg and c.cfg["tie_word_embeddings"] is not None:
        return c.flag("tie_word_embeddings", True), []
    tied = model_type not in _UNTIED_DEFAULT_TYPES   # PretrainedConfig's default is True
    return tied, [f"tie_word_embeddings: not in the file; Hugging Face's default for "
                  f"model_type {model_type or '(none)'!r} is {str(tied).lower()}"]


def _moe_fields(c: _Cfg, model_type: str, ffn: int) -> dict:
    experts = c.num("num_local_experts", "n_routed_experts", "num_experts", default=0, minimum=0)
    if not experts:
        return {}
    topk_method = c.text("topk_method", default="")
    return dict(
        num_experts=experts, top_k=c.num("num_experts_per_tok", "experts_per_token", "top_k", "moe_topk"),
        expert_ffn_hidden=c.num("moe_intermediate_size", default=ffn),
        num_shared_experts=c.num("n_shared_experts", default=0, minimum=0),
        num_dense_layers=c.num("first_k_dense_replace", default=0, minimum=0),
        moe_every=c.num("moe_layer_freq", default=1),
        router_bias=model_type == "gpt_oss" or topk_method == "noaux_tc")


def _mla_fields(c: _Cfg) -> dict:
    kv_rank = c.num("kv_lora_rank", default=0, minimum=0)
    if not kv_rank:
        return {}
    fields = dict(kv_lora_rank=kv_rank, q_lora_rank=c.num("q_lora_rank", default=0, minimum=0),
                  qk_nope_head_dim=c.num("qk_nope_head_dim"), qk_rope_head_dim=c.num("qk_rope_head_dim", minimum=0),
                  v_head_dim=c.num("v_head_dim"))
    return {**fields, "head_dim": fields["v_head_dim"]}


def step_time_gaps(sliding_window: int, mla: bool) -> list[str]:
    """Features the parameter and FLOP counts model but the step-time model (models/estimate.py)
    does not yet: one "key: why" line each."""
    gaps = []
    if sliding_window:
        gaps.append(f"sliding_window: model FLOPs count the {sliding_window}-token window; the step time "
                    "still times those layers as full attention")
    if mla:
        gaps.append("kv_lora_rank: parameters and model FLOPs use MLA's latent projections; the step time "
                    "and activation memory still treat attention as multi-head attention")
    return gaps


def import_hf_config(cfg: dict, name: str = "hf-model", seq_len: int | None = None,
                     source: str = "<dict>") -> HFImport:
    """Read a Hugging Face ``config.json`` dict (GPT-2, Llama, Mistral/Mixtral, Qwen2, Gemma/Gemma-2,
    DeepSeek-V2/V3, gpt-oss naming) into a Transformer, recording what was read, what was ignored,
    and a warning for each ignored key that changes cost. ValueError "config.json: <key>: <reason>"."""
    if not isinstance(cfg, dict):
        raise ValueError("config.json: expected a JSON object at the top level")
    top_notes = []
    if isinstance(cfg.get("text_config"), dict) and "num_hidden_layers" not in cfg:
        cfg = {**cfg["text_config"], **{k: v for k, v in cfg.items() if k in ("tie_word_embeddings",)}}
        top_notes.append("text_config: the language model was read; other towers (vision, audio) are not counted")
    c = _Cfg(cfg)
    model_type = c.text("model_type", default="")
    L = c.num("num_hidden_layers", "n_layer", "num_layers")
    h = c.num("hidden_size", "n_embd", "d_model")
    a = c.num("num_attention_heads", "n_head", "n_heads")
    kv = c.num("num_key_value_heads", default=a)
    V = c.num("vocab_size")
    ffn = c.num("intermediate_size", "n_inner", "ffn_hidden_size", default=4 * h)
    s, context, seq_notes = _seq_len(c, seq_len)
    tied, tie_notes = _tied(c, model_type)
    window, n_sliding, win_notes = _sliding(c, model_type, L, context)
    layernorm = model_type in _LAYERNORM_TYPES or (not model_type and "layer_norm_epsilon" in cfg)
    all_bias = model_type in _ALL_BIAS_TYPES
    attn_bias = c.flag("attention_bias", all_bias)
    dropout = any(c.num(k, default=0.0, minimum=0, whole=False) > 0 for k in _DROPOUT_KEYS if k in cfg)
    fields = dict(
        name=name, num_layers=L, hidden=h, num_heads=a, num_kv_heads=kv, ffn_hidden=ffn, vocab=V, seq_len=s,
        activation=_activation(c, model_type), tied_embeddings=tied, dropout=dropout,
        head_dim=c.num("head_dim", default=0) or None, learned_pos_emb=model_type in _LEARNED_POS_TYPES,
        norm="layernorm" if layernorm else "rmsnorm", norms_per_layer=4 if model_type in _SANDWICH_NORM_TYPES else 2,
        qkv_bias=attn_bias or model_type in _QKV_BIAS_TYPES, out_bias=attn_bias,
        mlp_bias=c.flag("mlp_bias", all_bias or model_type == "gpt_oss"), max_seq_len=context,
        sliding_window=window, num_sliding_layers=n_sliding, attn_sinks=model_type == "gpt_oss",
        rotary=not (model_type == "bloom" or c.flag("alibi", False) or c.mapping("attn_config").get("alibi") is True))
    fields.update(_moe_fields(c, model_type, ffn))
    fields.update(_mla_fields(c))
    warnings = [f"{k}: {why}" for k, why in _COST_WARNINGS.items() if cfg.get(k) not in (None, 0, {}, False)]
    ignored = sorted(k for k in cfg if k not in c.used and k != "model_type")
    unknown = [k for k in ignored if k not in _NO_COST_KEYS and k not in _COST_WARNINGS]
    if unknown:
        warnings.append(f"{', '.join(unknown)}: not recognised and not modelled; check they do not change the "
                        "architecture")
    family_notes = [] if model_type in _GATED_TYPES | _PLAIN_FFN_TYPES else [
        f"model_type: {model_type or '(none)'!r} is not a known family; FFN taken as "
        f"{'gated (3 matrices)' if fields['activation'] != 'gelu' else 'plain (2 matrices)'}, "
        f"{fields['norm']}, biases from attention_bias / mlp_bias"]
    notes = top_notes + seq_notes + tie_notes + win_notes + family_notes
    gaps = step_time_gaps(window, bool(fields.get("kv_lora_rank")))
    warnings += gaps
    not_modelled = [k for k in _COST_WARNINGS if cfg.get(k) not in (None, 0, {}, False)] + unknown
    fields["note"] = "; ".join(seq_notes + ([f"not modelled: {', '.join(not_modelled)}"] if not_modelled else [])
                               + [g.split(": ", 1)[1] for g in gaps])
    try:
        model = Transformer(**fields)
    except ValueError as e:
        raise ValueError(f"config.json: {str(e).removeprefix('model.')}") from None
    read = sorted(c.used | ({"model_type"} if model_type else set()))
    return HFImport(model, source, tuple(read), tuple(ignored), tuple(warnings), tuple(notes))


def from_hf_config(cfg: dict, name: str = "hf-model", seq_len: int | None = None) -> Transformer:
    """A Transformer from a Hugging Face ``config.json`` dict; see import_hf_config."""
    return import_hf_config(cfg, name, seq_len).model


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def _newest_snapshot(repo_dir: Path) -> Path | None:
    snaps = [p for p in (repo_dir / "snapshots").glob("*/config.json") if p.is_file()]
    return max(snaps, key=lambda p: p.stat().st_mtime) if snaps else None


def find_hf_config(path_or_id: str | Path) -> Path:
    """The config.json meant by a file, a model folder or snapshot, a hub-cache folder
    (models--org--name: its newest snapshot), or a Hub id ``org/name`` found in the local cache.
    ValueError saying how to get the config when none is found."""
    p = Path(path_or_id).expanduser()
    if p.is_file():
        return p
    if p.exists() and not p.is_dir():   # a pipe, a device (/dev/zero), a socket: never read
        raise ValueError(f"model: {str(p)!r} is not a regular file")
    if p.is_dir():
        if (p / "config.json").is_file():
            return p / "config.json"
        snap = _newest_snapshot(p)
        if snap:
            return snap
        raise ValueError(f"model: no config.json in {str(p)!r} (nor in a snapshots/<revision>/ folder)")
    text = str(path_or_id)
    parts = text.split("/")
    if len(parts) == 2 and all(parts) and not text.endswith(".json") and not text.startswith((".", "~")):
        snap = _newest_snapshot(hf_cache_dir() / f"models--{parts[0]}--{parts[1]}")
        if snap:
            return snap
        raise ValueError(f"model: {text!r} is not a local file and not in the Hugging Face cache ({hf_cache_dir()}); "
                         f"get its config with `huggingface-cli download {text} config.json`")
    raise ValueError(f"model: no such file {text!r}")


def read_hf_config(path_or_id: str | Path, seq_len: int | None = None) -> HFImport:
    """Read a local config.json (see find_hf_config for what ``path_or_id`` may be) with import_hf_config.
    Every problem is one ValueError naming the file, the field and the reason."""
    p = find_hf_config(path_or_id)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ValueError(f"{p}: cannot be read ({e.strerror})") from None
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"{p}: {size:,} bytes; larger than the {MAX_CONFIG_BYTES:,}-byte limit of a config.json")
    try:
        cfg = json.loads(p.read_bytes()[:MAX_CONFIG_BYTES + 1].decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file (config.json must be UTF-8 JSON)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ValueError(f"{p}: not valid JSON (nested too deeply)") from None
    except OSError as e:
        raise ValueError(f"{p}: cannot be read ({e.strerror})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: expected a JSON object at the top level")
    name = p.parent.name if p.name == "config.json" else p.stem
    if p.parent.parent.name == "snapshots":   # hub cache: models--org--name/snapshots/<rev>/config.json
        name = p.parent.parent.parent.name.removeprefix("models--").replace("--", "/")
    try:
        return import_hf_config(cfg, name=name or p.stem, seq_len=seq_len, source=str(p))
    except ValueError as e:
        raise ValueError(f"{p}: {str(e).removeprefix('config.json: ')}") from None


def load_hf_config(path: str | Path, seq_len: int | None = None) -> Transformer:
    """Read a local Hugging Face ``config.json`` (or a folder, snapshot or cached Hub id holding one)."""
    return read_hf_config(path, seq_len).model
