"""Transformer architecture spec, presets of published models, and Hugging Face configs.

Parameter counts follow Narayanan et al. SC'21 eq. (2) (P = 12 l h^2 (1 + 13/12h + (V+s)/12lh)
for a GPT with 4h FFN), generalised to GQA (Ainslie et al. 2023), SwiGLU (Shazeer 2020:
three FFN matrices) and mixture-of-experts layers (Fedus et al. 2021).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

ACTIVATIONS = ("gelu", "swiglu")


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
    activation: str = "gelu"          # gelu (2 FFN matrices) | swiglu (3 FFN matrices)
    tied_embeddings: bool = False     # output layer shares the input embedding
    head_dim: int | None = None       # None: hidden / num_heads
    dropout: bool = False             # dropout layers present (adds 1-byte masks to activations)
    learned_pos_emb: bool = False     # GPT-2/3 style learned position embedding (s*h params)
    num_experts: int = 0              # routed experts per MoE layer; 0 = dense model
    top_k: int = 0                    # experts each token is routed to
    expert_ffn_hidden: int = 0        # FFN inner size of one expert
    num_shared_experts: int = 0       # always-active experts (DeepSeek-style)
    moe_every: int = 1                # every n-th layer (after the dense ones) is MoE
    num_dense_layers: int = 0         # leading dense layers before MoE starts (DeepSeek-V3: 3)
    capacity_factor: float = 1.0      # expert capacity / fair share; >1 pads, 1 = dropless balanced
    note: str = ""                    # how the preset approximates the real model, if it does

    def __post_init__(self) -> None:
        for f in ("num_layers", "hidden", "num_heads", "num_kv_heads", "ffn_hidden", "vocab", "seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"model.{f}: must be a positive integer, got {v!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation: {self.activation!r} unknown; choose one of {', '.join(ACTIVATIONS)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model.num_kv_heads: {self.num_kv_heads} must divide num_heads={self.num_heads}")
        if self.head_dim is None and self.hidden % self.num_heads:
            raise ValueError(f"model.num_heads: {self.num_heads} does not divide hidden={self.hidden}; "
                             "set head_dim explicitly")
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
    def is_moe(self) -> bool:
        return self.num_experts > 0

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
        return 3 if self.activation == "swiglu" else 2

    @property
    def attn_params(self) -> int:
        """Q, K, V and output projection weights of one layer (biases ignored)."""
        q = self.hidden * self.num_heads * self.dh
        kv = 2 * self.hidden * self.num_kv_heads * self.dh
        return 2 * q + kv + 2 * 2 * self.hidden  # + two norms' scale and bias

    @property
    def dense_mlp_params(self) -> int:
        return self.ffn_matrices * self.hidden * self.ffn_hidden

    @property
    def expert_params(self) -> int:
        """Weights of one expert."""
        return self.ffn_matrices * self.hidden * self.expert_ffn_hidden

    @property
    def moe_mlp_params(self) -> int:
        """Routed + shared experts + router of one MoE layer."""
        return (self.num_experts + self.num_shared_experts) * self.expert_params + self.hidden * self.num_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden + (self.seq_len * self.hidden if self.learned_pos_emb else 0)

    @property
    def output_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def num_params(self) -> int:
        """Total parameters (all experts)."""
        return (self.num_layers * self.attn_params + self.num_dense_ffn_layers * self.dense_mlp_params
                + self.num_moe_layers * self.moe_mlp_params + self.embedding_params + self.output_params)

    @property
    def num_active_params(self) -> int:
        """Parameters a token touches (top_k + shared experts only)."""
        active_moe = (self.top_k + self.num_shared_experts) * self.expert_params + self.hidden * self.num_experts
        return (self.num_layers * self.attn_params + self.num_dense_ffn_layers * self.dense_mlp_params
                + self.num_moe_layers * active_moe + self.embedding_params + self.output_params)

    def with_seq_len(self, seq_len: int) -> Transformer:
        return dataclasses.replace(self, seq_len=seq_len)


def _t(name, L, h, a, kv, f, V, s, act="swiglu", **kw) -> Transformer:
    return Transformer(name, L, h, a, kv, f, V, s, act, **kw)


_GPT = dict(act="gelu", tied_embeddings=True, dropout=True, learned_pos_emb=True)
PRESETS: dict[str, Transformer] = {m.name: m for m in [
    # Brown et al. 2020 Table 2.1; Narayanan et al. SC'21 Table 1 (1T, 530B/MT-NLG Smith et al. 2022)
    _t("gpt3-175b", 96, 12288, 96, 96, 4 * 12288, 51200, 2048, **_GPT),
    _t("megatron-530b", 105, 20480, 128, 128, 4 * 20480, 51200, 2048, **_GPT),
    _t("megatron-1t", 128, 25600, 160, 160, 4 * 25600, 51200, 2048, **_GPT),
    _t("gpt2-small", 12, 768, 12, 12, 3072, 50257, 1024, **_GPT),
    _t("gpt-tiny", 4, 256, 4, 4, 1024, 8192, 256, **_GPT),
    # Touvron et al. 2023 (Llama 2) Table 1 / public config.json files
    _t("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096),
    _t("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096),
    _t("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096),
    # Llama 3 herd paper (Dubey et al. 2024) Table 3
    _t("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192),
    _t("llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192),
    _t("llama3-405b", 126, 16384, 128, 8, 53248, 128256, 8192),
    # Mixtral (Jiang et al. 2024) public configs; training seq_len 4096 chosen (context 32k/64k)
    _t("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 4096, num_experts=8, top_k=2, expert_ffn_hidden=14336),
    _t("mixtral-8x22b", 56, 6144, 48, 8, 16384, 32768, 4096, num_experts=8, top_k=2, expert_ffn_hidden=16384),
    # OpenAI gpt-oss model card (2025): 36 layers, 128 experts top-4, GQA 64/8 heads of dim 64
    _t("gpt-oss-120b", 36, 2880, 64, 8, 2880, 201088, 4096, head_dim=64, num_experts=128, top_k=4,
       expert_ffn_hidden=2880, note="alternating sliding-window attention counted as full attention"),
    # DeepSeek-V3 technical report (2024) Sec 4.2: 61 layers, first 3 dense, 256 routed + 1 shared
    _t("deepseek-v3", 61, 7168, 128, 128, 18432, 129280, 4096, head_dim=128, num_experts=256, top_k=8,
       expert_ffn_hidden=2048, num_shared_experts=1, num_dense_layers=3,
       note="MLA approximated as multi-head attention with 128 heads of dim 128 (low-rank Q/KV "
            "projections not modelled: attention weights and KV activations are overestimated); MTP ignored"),
]}

_ALIASES = {"gpt3": "gpt3-175b", "mt-nlg-530b": "megatron-530b", "megatron-530": "megatron-530b"}


def get_model(name: str) -> Transformer:
    """The preset called ``name``; ValueError listing the presets."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"model: unknown preset {name!r}; choose one of {', '.join(PRESETS)} "
                         "or give a path to a Hugging Face config.json")
    return PRESETS[key]


def _first(cfg: dict, *keys, default=None):
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def from_hf_config(cfg: dict, name: str = "hf-model", seq_len: int | None = None) -> Transformer:
    """A Transformer from a Hugging Face ``config.json`` dict (Llama, Mistral/Mixtral, GPT-2,
    Qwen, DeepSeek-V3 and gpt-oss naming). seq_len defaults to max_position_embeddings capped at 8192."""
    try:
        L = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
        h = _first(cfg, "hidden_size", "n_embd", "d_model")
        a = _first(cfg, "num_attention_heads", "n_head", "n_heads")
        missing = [k for k, v in (("num_hidden_layers", L), ("hidden_size", h), ("num_attention_heads", a)) if v is None]
        if missing:
            raise ValueError(f"config.json: missing field(s) {', '.join(missing)}")
        kv = _first(cfg, "num_key_value_heads", default=a)
        act_name = str(_first(cfg, "hidden_act", "activation_function", default="gelu")).lower()
        act = "swiglu" if act_name in ("silu", "swiglu", "swish") else "gelu"
        f = _first(cfg, "intermediate_size", "n_inner", "ffn_hidden_size", default=None) or 4 * h
        experts = _first(cfg, "num_local_experts", "n_routed_experts", "num_experts", default=0) or 0
        model = Transformer(
            name=name, num_layers=int(L), hidden=int(h), num_heads=int(a), num_kv_heads=int(kv),
            ffn_hidden=int(f), vocab=int(_first(cfg, "vocab_size", default=32000)),
            seq_len=int(seq_len or min(int(_first(cfg, "max_position_embeddings", "n_positions", default=4096)), 8192)),
            activation=act, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            head_dim=_first(cfg, "head_dim", default=None),
            num_experts=int(experts), top_k=int(_first(cfg, "num_experts_per_tok", "top_k", default=0) or 0),
            expert_ffn_hidden=int(_first(cfg, "moe_intermediate_size", default=f) if experts else 0),
            num_shared_experts=int(_first(cfg, "n_shared_experts", default=0) or 0),
            num_dense_layers=int(_first(cfg, "first_k_dense_replace", default=0) or 0),
            moe_every=int(_first(cfg, "moe_layer_freq", default=1) or 1),
        )
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(("config.json", "model.")) else f"config.json: {msg}") from None
    return model


def load_hf_config(path: str | Path, seq_len: int | None = None) -> Transformer:
    """Read a local Hugging Face ``config.json`` (or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"model: no such file {str(p)!r}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: expected a JSON object at the top level")
    try:
        return from_hf_config(cfg, name=p.parent.name or p.stem, seq_len=seq_len)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None


def resolve_model(name_or_path: str, seq_len: int | None = None) -> Transformer:
    """A preset name or a path to a config.json; seq_len overrides the model's."""
    if name_or_path.endswith(".json") or Path(name_or_path).is_dir() or "/" in name_or_path:
        return load_hf_config(name_or_path, seq_len)
    m = get_model(name_or_path)
    return m.with_seq_len(seq_len) if seq_len else m
