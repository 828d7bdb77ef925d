"""Transformer architecture spec, presets of published models, and Hugging Face configs.

Parameter counts follow Narayanan et al. SC'21 eq. (2) (P = 12 l h^2 (1 + 13/12h + (V+s)/12lh)
for a GPT with 4h FFN), generalised to GQA (Ainslie et al. 2023), gated FFNs (Shazeer 2020:
SwiGLU / GeGLU have three FFN matrices), multi-head latent attention (DeepSeek-V2, arXiv
2405.04434, Sec. 2.1.2, eqs. 9-18), and mixture-of-experts layers (Fedus et al. 2021) with
shared experts and leading dense layers (DeepSeekMoE, arXiv 2401.06066, Sec. 3). Each weight
matrix, bias and norm counted here is one tensor of the Hugging Face implementation of the
model family (transformers/models/<family>/modeling_<family>.py), so the totals of the
config.json files in tests/data/ equal the published counts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACTIVATIONS = ("gelu", "swiglu", "geglu")  # gelu: plain 2-matrix FFN; swiglu/geglu: gated, 3 matrices
GATED_ACTIVATIONS = ("swiglu", "geglu")
NORMS = ("layernorm", "rmsnorm")             # layernorm: scale + bias (2h); rmsnorm: scale only (h)
TRAINING_SEQ_LEN_CAP = 8192                  # default training length for configs with a longer context


# Largest whole number a config.json field may hold (a vocabulary, a width, a context length):
# bounds the work and keeps the arithmetic in int64.
MAX_CONFIG_INT = 1 << 40
# Largest config.json read (real ones are a few KB; the Hub's largest are under 100 KB).
MAX_CONFIG_BYTES = 4 << 20

@dataclass(frozen=True, slots=True)
class Transformer:
    name: str
    num_layers: int
    hidden: int
    num_heads: int
    num_kv_heads: int                 # = num_heads for MHA, 1 for MQA, in between for GQA
    ffn_hidden: int                   # dense FFN inner size
    vocab: int
    seq_len: int                      # training sequence length, tokens
    activation: str = "gelu"          # gelu (2 FFN matrices) | swiglu, geglu (gated: 3 FFN matrices)
    tied_embeddings: bool = False     # output layer shares the input embedding
    head_dim: int | None = None       # None: hidden / num_heads (MLA: the value head dim)
    dropout: bool = False             # dropout layers present (adds 1-byte masks to activations)
    learned_pos_emb: bool = False     # GPT-2/3 style learned position embedding (context_len*h params)
    num_experts: int = 0              # routed experts per MoE layer; 0 = dense model
    top_k: int = 0                    # experts each token is routed to
    expert_ffn_hidden: int = 0        # FFN inner size of one expert
    num_shared_experts: int = 0       # always-active experts (DeepSeek-style)
    moe_every: int = 1                # every n-th layer (after the dense ones) is MoE
    num_dense_layers: int = 0         # leading dense layers before MoE starts (DeepSeek-V3: 3)
    capacity_factor: float = 1.0      # expert capacity / fair share; >1 pads, 1 = dropless balanced
    note: str = ""                    # how the preset approximates the real model, if it does
    norm: str = "layernorm"           # layernorm (scale + bias) | rmsnorm (scale only)
    norms_per_layer: int = 2          # pre-attention + pre-FFN; Gemma-2/3 add two post-norms: 4
    qkv_bias: bool = False            # Q, K, V projections have biases (GPT-2, Qwen2, gpt-oss)
    out_bias: bool = False            # attention output projection has a bias (GPT-2, gpt-oss)
    mlp_bias: bool = False            # FFN / expert matrices have biases (GPT-2, gpt-oss)
    router_bias: bool = False         # per-expert router bias (gpt-oss; DeepSeek-V3 score correction)
    max_seq_len: int = 0              # longest sequence the model supports, tokens; 0: seq_len
    q_lora_rank: int = 0              # MLA query compression rank d_c' (0: full-rank query)
    kv_lora_rank: int = 0             # MLA key/value compression rank d_c; > 0 means MLA
    qk_nope_head_dim: int = 0         # MLA per-head query/key dims without RoPE (d_h)
    qk_rope_head_dim: int = 0         # MLA per-head decoupled RoPE dims (d_h^R), key shared by heads
    v_head_dim: int = 0               # MLA per-head value dims
    sliding_window: int = 0           # tokens a sliding-window (local) layer attends to; 0: none
    num_sliding_layers: int = 0       # layers that use the window (Gemma-2, gpt-oss: every other)
    attn_sinks: bool = False          # learned per-head attention-sink logit (gpt-oss)

    def __post_init__(self) -> None:
        for f in ("num_layers", "hidden", "num_heads", "num_kv_heads", "ffn_hidden", "vocab", "seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"model.{f}: must be a positive integer, got {v!r}")
        for f in ("norms_per_layer", "max_seq_len", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                  "qk_rope_head_dim", "v_head_dim", "sliding_window", "num_sliding_layers", "num_experts", "top_k",
                  "expert_ffn_hidden", "num_shared_experts", "moe_every", "num_dense_layers"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"model.{f}: must be a whole number >= 0, got {v!r}")
        for f in ("num_layers", "hidden", "num_heads", "num_kv_heads", "ffn_hidden", "vocab", "seq_len", "max_seq_len",
                  "num_experts", "expert_ffn_hidden", "head_dim"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v > MAX_CONFIG_INT
                                  or (f == "head_dim" and v < 1)):
                raise ValueError(f"model.{f}: must be a whole number in [1, {MAX_CONFIG_INT:,}], got {v!r}")
        for f in ("tied_embeddings", "dropout", "learned_pos_emb", "qkv_bias", "out_bias", "mlp_bias", "router_bias",
                  "attn_sinks"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"model.{f}: must be true or false, got {getattr(self, f)!r}")
        if isinstance(self.capacity_factor, bool) or not isinstance(self.capacity_factor, (int, float)) \
                or not math.isfinite(self.capacity_factor):
            raise ValueError(f"model.capacity_factor: must be a finite number, got {self.capacity_factor!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation: {self.activation!r} unknown; choose one of {', '.join(ACTIVATIONS)}")
        if self.norm not in NORMS:
            raise ValueError(f"model.norm: {self.norm!r} unknown; choose one of {', '.join(NORMS)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model.num_kv_heads: {self.num_kv_heads} must divide num_heads={self.num_heads}")
        if self.head_dim is None and self.hidden % self.num_heads:
            raise ValueError(f"model.num_heads: {self.num_heads} does not divide hidden={self.hidden}; "
                             "set head_dim explicitly")
        if self.kv_lora_rank and (self.qk_nope_head_dim + self.qk_rope_head_dim < 1 or self.v_head_dim < 1):
            raise ValueError("model.kv_lora_rank: MLA needs qk_nope_head_dim + qk_rope_head_dim >= 1 and v_head_dim >= 1")
        if self.q_lora_rank and not self.kv_lora_rank:
            raise ValueError("model.q_lora_rank: only meaningful with MLA (kv_lora_rank > 0)")
        if self.num_sliding_layers > self.num_layers:
            raise ValueError(f"model.num_sliding_layers: {self.num_sliding_layers} exceeds num_layers={self.num_layers}")
        if bool(self.sliding_window) != bool(self.num_sliding_layers):
            raise ValueError("model.sliding_window: give both sliding_window (tokens) and num_sliding_layers, or neither")
        if self.num_experts:
            if not 1 <= self.top_k <= self.num_experts:
                raise ValueError(f"model.top_k: must be in [1, num_experts={self.num_experts}], got {self.top_k}")
            if self.expert_ffn_hidden < 1:
                raise ValueError("model.expert_ffn_hidden: must be >= 1 for an MoE model")
            if self.moe_every < 1 or not 0 <= self.num_dense_layers < self.num_layers:
                raise ValueError("model.moe_every must be >= 1 and num_dense_layers in [0, num_layers)")
            if self.capacity_factor < 1:
                raise ValueError(f"model.capacity_factor: must be >= 1, got {self.capacity_factor}")

    # ----- derived sizes -----
    @property
    def dh(self) -> int:
        """Head dimension."""
        return self.head_dim or self.hidden // self.num_heads

    @property
    def context_len(self) -> int:
        """Longest sequence the model supports (HF max_position_embeddings), tokens."""
        return self.max_seq_len or self.seq_len

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """Multi-head latent attention (DeepSeek-V2/V3)."""
        return self.kv_lora_rank > 0

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width: d_h + d_h^R under MLA, else the head dimension."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.dh

    @property
    def v_dim(self) -> int:
        """Per-head value width."""
        return self.v_head_dim if self.is_mla else self.dh

    @property
    def gated_ffn(self) -> bool:
        """SwiGLU / GeGLU: gate and up projections (Shazeer 2020)."""
        return self.activation in GATED_ACTIVATIONS

    @property
    def num_moe_layers(self) -> int:
        if not self.is_moe:
            return 0
        return len(range(self.num_dense_layers, self.num_layers, self.moe_every))

    @property
    def num_dense_ffn_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.gated_ffn else 2

    def kv_heads_per_rank(self, tp):
        """K/V heads each tensor-parallel rank holds (arrays ok): num_kv_heads / tp, but at least one
        head, since Megatron-LM replicates K/V heads when tp exceeds the query groups
        (megatron/core/transformer/attention.py: num_query_groups_per_partition)."""
        return np.maximum(self.num_kv_heads / np.asarray(tp, dtype=float), 1.0)

    # ----- parameters, one Hugging Face tensor at a time -----
    @property
    def norm_size(self) -> int:
        """Parameters of one norm over the hidden size: scale (+ bias for LayerNorm)."""
        return self.hidden * (2 if self.norm == "layernorm" else 1)

    @property
    def layer_norm_params(self) -> int:
        """Norms of one layer (input / post-attention, plus Gemma-2's post-norms)."""
        return self.norms_per_layer * self.norm_size

    @property
    def attn_weight_params(self) -> int:
        """Projection matrices of one attention layer (what costs 2 FLOPs per token each).

        MHA/GQA: W_Q, W_K, W_V, W_O. MLA (DeepSeek-V2 eqs. 9-18): W_DQ (h x d_c'), W_UQ/W_QR
        (d_c' x n_h(d_h + d_h^R)), W_DKV + W_KR (h x (d_c + d_h^R)), W_UK/W_UV (d_c x n_h(d_h + d_v)),
        W_O (n_h d_v x h); without q_lora_rank the query is one h x n_h(d_h + d_h^R) matrix.
        """
        h, a = self.hidden, self.num_heads
        if not self.is_mla:
            return 2 * h * a * self.dh + 2 * h * self.num_kv_heads * self.dh
        q_out = a * self.qk_head_dim
        q = h * self.q_lora_rank + self.q_lora_rank * q_out if self.q_lora_rank else h * q_out
        kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank * a * (
            self.qk_nope_head_dim + self.v_head_dim)
        return q + kv + a * self.v_head_dim * h

    @property
    def attn_extra_params(self) -> int:
        """Biases, MLA's latent norms and attention sinks of one attention layer."""
        a = self.num_heads
        if self.is_mla:   # HF DeepseekV3Attention: q_a_proj / kv_a_proj_with_mqa / o_proj take attention_bias
            qkv_b = (self.q_lora_rank or a * self.qk_head_dim) + self.kv_lora_rank + self.qk_rope_head_dim
            latent_norms = self.q_lora_rank + self.kv_lora_rank
        else:
            qkv_b = (a + 2 * self.num_kv_heads) * self.dh
            latent_norms = 0
        return (qkv_b * self.qkv_bias + self.hidden * self.out_bias + latent_norms
                + a * self.attn_sinks)

    @property
    def attn_proj_params(self) -> int:
        """All attention parameters of one layer, norms excluded."""
        return self.attn_weight_params + self.attn_extra_params

    @property
    def attn_params(self) -> int:
        """Attention parameters of one layer plus the layer's norms (everything but the FFN)."""
        return self.attn_proj_params + self.layer_norm_params

    def _ffn_params(self, f: int) -> int:
        bias = (self.ffn_matrices - 1) * f + self.hidden if self.mlp_bias else 0
        return self.ffn_matrices * self.hidden * f + bias

    @property
    def dense_mlp_params(self) -> int:
        return self._ffn_params(self.ffn_hidden)

    @property
    def expert_params(self) -> int:
        """Weights of one expert."""
        return self._ffn_params(self.expert_ffn_hidden)

    @property
    def router_params(self) -> int:
        """Router (gate) of one MoE layer: h x E (+ E biases)."""
        return self.num_experts * (self.hidden + self.router_bias)

    @property
    def moe_mlp_params(self) -> int:
        """Routed + shared experts + router of one MoE layer."""
        return (self.num_experts + self.num_shared_experts) * self.expert_params + self.router_params

    @property
    def embedding_params(self) -> int:
        """Input embedding: token table (+ learned position table)."""
        return self.vocab * self.hidden + (self.context_len * self.hidden if self.learned_pos_emb else 0)

    @property
    def output_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def final_norm_params(self) -> int:
        return self.norm_size

    @property
    def num_params(self) -> int:
        """Total parameters (all experts)."""
        return (self.num_layers * self.attn_params + self.num_dense_ffn_layers * self.dense_mlp_params
                + self.num_moe_layers * self.moe_mlp_params + self.embedding_params + self.output_params
                + self.final_norm_params)

    @property
    def num_active_params(self) -> int:
        """Parameters a token touches (top_k + shared experts only), embedding table included."""
        active_moe = (self.top_k + self.num_shared_experts) * self.expert_params + self.router_params
        return (self.num_layers * self.attn_params + self.num_dense_ffn_layers * self.dense_mlp_params
                + self.num_moe_layers * active_moe + self.embedding_params + self.output_params
                + self.final_norm_params)

    def params_by_component(self) -> dict[str, int]:
        """Total parameters split as embedding / attention / mlp / experts / router / norms / head;
        the values add up to ``num_params``."""
        shared = self.num_moe_layers * self.num_shared_experts * self.expert_params
        return {
            "embedding": self.embedding_params,
            "attention": self.num_layers * self.attn_proj_params,
            "mlp": self.num_dense_ffn_layers * self.dense_mlp_params,
            "experts/routed": self.num_moe_layers * self.num_experts * self.expert_params,
            "experts/shared": shared,
            "router": self.num_moe_layers * self.router_params,
            "norms": self.num_layers * self.layer_norm_params + self.final_norm_params,
            "head": self.output_params,
        }

    def with_seq_len(self, seq_len: int) -> Transformer:
        return dataclasses.replace(self, seq_len=seq_len)


def _t(name, L, h, a, kv, f, V, s, act="swiglu", **kw) -> Transformer:
    return Transformer(name, L, h, a, kv, f, V, s, act, **kw)


# GPT-2/3 and Megatron GPTs: LayerNorm, biases on every projection, learned positions, tied output.
_GPT = dict(act="gelu", tied_embeddings=True, dropout=True, learned_pos_emb=True,
            qkv_bias=True, out_bias=True, mlp_bias=True)
_LLAMA = dict(norm="rmsnorm")  # Llama / Mistral families: RMSNorm, no biases, untied output
PRESETS: dict[str, Transformer] = {m.name: m for m in [
    # Brown et al. 2020 Table 2.1; Narayanan et al. SC'21 Table 1 (1T, 530B/MT-NLG Smith et al. 2022)
    _t("gpt3-175b", 96, 12288, 96, 96, 4 * 12288, 51200, 2048, **_GPT),
    _t("megatron-530b", 105, 20480, 128, 128, 4 * 20480, 51200, 2048, **_GPT),
    _t("megatron-1t", 128, 25600, 160, 160, 4 * 25600, 51200, 2048, **_GPT),
    # openai-community/gpt2 config.json: 124,439,808 parameters (tests/data/gpt2.json)
    _t("gpt2-small", 12, 768, 12, 12, 3072, 50257, 1024, **_GPT),
    _t("gpt-tiny", 4, 256, 4, 4, 1024, 8192, 256, **_GPT),
    # Touvron et al. 2023 (Llama 2) Table 1 / public config.json files
    _t("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, **_LLAMA),
    _t("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, **_LLAMA),
    _t("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, **_LLAMA),
    # Llama 3 herd paper (Dubey et al. 2024) Table 3
    _t("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, **_LLAMA),
    _t("llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, **_LLAMA),
    _t("llama3-405b", 126, 16384, 128, 8, 53248, 128256, 8192, **_LLAMA),
    # Mixtral (Jiang et al. 2024) public configs; training seq_len 4096 chosen (context 32k/64k)
    _t("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 4096, num_experts=8, top_k=2, expert_ffn_hidden=14336,
       max_seq_len=32768, **_LLAMA),
    _t("mixtral-8x22b", 56, 6144, 48, 8, 16384, 32768, 4096, num_experts=8, top_k=2, expert_ffn_hidden=16384,
       max_seq_len=65536, **_LLAMA),
    # OpenAI gpt-oss model card (2025): 36 layers, 128 experts top-4, GQA 64/8 heads of dim 64, attention
    # sinks, 128-token sliding window on every other layer; biases on attention, experts and router
    _t("gpt-oss-120b", 36, 2880, 64, 8, 2880, 201088, 4096, head_dim=64, num_experts=128, top_k=4,
       expert_ffn_hidden=2880, qkv_bias=True, out_bias=True, mlp_bias=True, router_bias=True, attn_sinks=True,
       sliding_window=128, num_sliding_layers=18, max_seq_len=131072, **_LLAMA,
       note="the step time treats the 18 sliding-window layers (128 tokens) as full attention; "
            "model FLOPs and parameters count the window"),
    # DeepSeek-V3 technical report (2024) Sec 4.2: 61 layers, first 3 dense, 256 routed + 1 shared,
    # MLA with d_c = 512, d_c' = 1536, d_h = 128, d_h^R = 64
    _t("deepseek-v3", 61, 7168, 128, 128, 18432, 129280, 4096, head_dim=128, num_experts=256, top_k=8,
       expert_ffn_hidden=2048, num_shared_experts=1, num_dense_layers=3, router_bias=True,
       q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
       max_seq_len=163840, **_LLAMA,
       note="MLA: parameters and model FLOPs use the latent projections; the step time and activation "
            "memory still treat attention as 128-head MHA of dim 128; the MTP module is not counted"),
]}

_ALIASES = {"gpt3": "gpt3-175b", "mt-nlg-530b": "megatron-530b", "megatron-530": "megatron-530b"}


def get_model(name: str) -> Transformer:
    """The preset called ``name``; ValueError listing the presets."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"model: unknown preset {name!r}; choose one of {', '.join(PRESETS)} "
                         "or give a path to a Hugging Face config.json")
    return PRESETS[key]


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
        sliding_window=window, num_sliding_layers=n_sliding, attn_sinks=model_type == "gpt_oss")
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


def resolve_model(name_or_path: str, seq_len: int | None = None) -> Transformer:
    """A preset name or a path to a config.json; seq_len overrides the model's."""
    if name_or_path.endswith(".json") or Path(name_or_path).expanduser().is_dir() or "/" in name_or_path:
        return load_hf_config(name_or_path, seq_len)
    m = get_model(name_or_path)
    return m.with_seq_len(seq_len) if seq_len else m
