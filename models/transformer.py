"""Transformer architecture spec and presets of published models (Hugging Face configs: models.hf_config).

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
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACTIVATIONS = ("gelu", "swiglu", "geglu")  # gelu: plain 2-matrix FFN; swiglu/geglu: gated, 3 matrices
GATED_ACTIVATIONS = ("swiglu", "geglu")
NORMS = ("layernorm", "rmsnorm")             # layernorm: scale + bias (2h); rmsnorm: scale only (h)

# Largest whole number a config.json field may hold (a vocabulary, a width, a context length):
# bounds the work and keeps the arithmetic in int64.
MAX_CONFIG_INT = 1 << 40


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
    rotary: bool = True               # RoPE on q and k; False: ALiBi (BLOOM, MPT) or no position encoding at all

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
                  "attn_sinks", "rotary"):
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
    def rope_dims(self) -> int:
        """Query and key elements per token the rotary embedding rotates (0 with learned positions, ALiBi or none):
        every head's q and k (Su et al. 2021, RoFormer Eq. 34); MLA rotates only its decoupled parts, d_h^R per
        query head plus one shared key part (DeepSeek-V2 report, Sec. 2.1.3).

        >>> get_model("llama3-8b").rope_dims, get_model("gpt3-175b").rope_dims
        (5120, 0)
        """
        if self.learned_pos_emb or not self.rotary:
            return 0
        if self.kv_lora_rank:
            return (self.num_heads + 1) * self.qk_rope_head_dim
        return (self.num_heads + self.num_kv_heads) * self.dh

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


def resolve_model(name_or_path: str, seq_len: int | None = None) -> Transformer:
    """A preset name or a path to a config.json; seq_len overrides the model's."""
    from models.hf_config import load_hf_config  # the reader imports this module: imported when called
    if name_or_path.endswith(".json") or Path(name_or_path).expanduser().is_dir() or "/" in name_or_path:
        return load_hf_config(name_or_path, seq_len)
    m = get_model(name_or_path)
    return m.with_seq_len(seq_len) if seq_len else m
