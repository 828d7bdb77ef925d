"""What clustersim makes of a model: ``describe_model(name_or_path) -> ModelReport``.

The report says which config.json keys were read and which were ignored (with a warning for each
ignored key that changes cost), the architecture, the parameters (total, active, embedding, and
per component) and the bytes the weights take per dtype, like ``accelerate estimate-memory``'s
table. Parameter counts come from ``models.transformer`` (one Hugging Face tensor at a time).

>>> r = describe_model("llama3-8b")
>>> r.params, r.as_dict()["params_by_component"]["head"]
(8030261248, 525336576)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.hf_config import read_hf_config
from models.transformer import _ALIASES, PRESETS, Transformer, get_model

# Bytes per parameter of the stored weights.
DTYPE_BYTES_PER_PARAM = {"fp32": 4.0, "bf16/fp16": 2.0, "int8": 1.0, "int4": 0.5}
# Training with Adam: 16-bit weights and gradients plus fp32 master weights and two fp32 moments,
# 2 + 2 + 12 = 16 bytes per parameter (Rajbhandari et al. 2020, ZeRO, Sec. 3.1: "16 Psi bytes");
# pure fp32 training also holds 4 + 4 + 8 = 16. Activations and buffers come on top.
ADAM_TRAINING_BYTES_PER_PARAM = {"fp32": 16.0, "bf16/fp16": 16.0}


@dataclass(frozen=True, slots=True)
class DtypeBytes:
    dtype: str                         # fp32 | bf16/fp16 | int8 | int4
    bytes_per_param: float
    weights_bytes: float               # all parameters
    largest_layer_bytes: float         # the biggest single block (a layer, the embedding or the head)
    training_adam_bytes: float | None  # weights + grads + Adam state; None: not a training dtype


@dataclass(frozen=True, slots=True)
class ModelReport:
    name: str
    source: str                                   # "preset", "spec", or the config.json read
    model: Transformer
    architecture: tuple[tuple[str, object], ...]  # (field, value) in display order
    params: int                                   # total, all experts
    active_params: int                            # per token: top_k + shared experts, embedding included
    active_params_excl_embedding: int             # the DeepSeek-V3 / gpt-oss model-card convention
    embedding_params: int                         # input embedding (token + learned position tables)
    params_by_component: tuple[tuple[str, int], ...]
    dtypes: tuple[DtypeBytes, ...]
    seq_len: int                                  # training sequence length used by estimates, tokens
    max_seq_len: int                              # the model's limit (max_position_embeddings), tokens
    read: tuple[str, ...] = ()                    # config.json keys that set a model field
    ignored: tuple[str, ...] = ()                 # keys present but not used
    warnings: tuple[str, ...] = ()                # "key: why" for each ignored key that changes cost
    notes: tuple[str, ...] = ()                   # defaults assumed while reading

    def as_dict(self) -> dict:
        """Plain JSON-ready dict; keys ``params``, ``active_params``, ``embedding_params``, ``warnings``..."""
        return {
            "name": self.name, "source": self.source,
            "params": self.params, "active_params": self.active_params,
            "active_params_excl_embedding": self.active_params_excl_embedding,
            "embedding_params": self.embedding_params,
            "params_by_component": dict(self.params_by_component),
            "architecture": dict(self.architecture),
            "bytes_by_dtype": {d.dtype: {"bytes_per_param": d.bytes_per_param, "weights_bytes": d.weights_bytes,
                                         "largest_layer_bytes": d.largest_layer_bytes,
                                         "training_adam_bytes": d.training_adam_bytes} for d in self.dtypes},
            "seq_len": self.seq_len, "max_seq_len": self.max_seq_len,
            "read": list(self.read), "ignored": list(self.ignored),
            "warnings": list(self.warnings), "notes": list(self.notes),
        }


def _attention_kind(m: Transformer) -> str:
    if m.is_mla:
        return f"MLA (q rank {m.q_lora_rank or 'full'}, kv rank {m.kv_lora_rank})"
    if m.num_kv_heads == m.num_heads:
        return "MHA"
    return "MQA" if m.num_kv_heads == 1 else f"GQA ({m.num_heads // m.num_kv_heads} query heads per KV head)"


def architecture(m: Transformer) -> tuple[tuple[str, object], ...]:
    """The model's shape as (field, value) pairs, for display."""
    rows = [("layers", m.num_layers), ("hidden", m.hidden), ("heads", m.num_heads), ("kv_heads", m.num_kv_heads),
            ("head_dim", m.dh), ("attention", _attention_kind(m)),
            ("ffn", {"swiglu": "SwiGLU (3 matrices)", "geglu": "GeGLU (3 matrices)"}.get(m.activation,
                                                                                     "GeLU (2 matrices)")),
            ("ffn_hidden", m.ffn_hidden), ("vocab", m.vocab), ("norm", m.norm), ("norms_per_layer", m.norms_per_layer),
            ("tied_embeddings", m.tied_embeddings),
            ("position", "learned" if m.learned_pos_emb else "rotary" if m.rope_dims else "ALiBi or none")]
    if m.is_mla:
        rows += [("qk_head_dim", m.qk_head_dim), ("v_head_dim", m.v_head_dim)]
    if m.is_moe:
        rows += [("experts", f"{m.num_experts} routed (top {m.top_k}) + {m.num_shared_experts} shared, "
                             f"{m.expert_ffn_hidden} wide"),
                 ("moe_layers", m.num_moe_layers), ("dense_layers", m.num_dense_ffn_layers)]
    if m.sliding_window:
        rows.append(("sliding_window", f"{m.sliding_window} tokens on {m.num_sliding_layers} of {m.num_layers} layers"))
    biases = [b for b, on in (("qkv", m.qkv_bias), ("out", m.out_bias), ("mlp", m.mlp_bias),
                              ("router", m.router_bias)) if on]
    rows += [("biases", ", ".join(biases) or "none"), ("attention_sinks", m.attn_sinks)]
    return tuple(rows)


def largest_layer_params(m: Transformer) -> int:
    """Parameters of the biggest block: a dense layer, an MoE layer, the embedding or the head."""
    blocks = [m.embedding_params, m.output_params]
    if m.num_dense_ffn_layers:
        blocks.append(m.attn_params + m.dense_mlp_params)
    if m.num_moe_layers:
        blocks.append(m.attn_params + m.moe_mlp_params)
    return max(blocks)


def dtype_bytes(m: Transformer) -> tuple[DtypeBytes, ...]:
    """Weights, largest block and Adam training bytes for fp32, bf16/fp16, int8, int4."""
    n, big = m.num_params, largest_layer_params(m)
    return tuple(DtypeBytes(d, b, n * b, big * b, n * ADAM_TRAINING_BYTES_PER_PARAM[d]
                            if d in ADAM_TRAINING_BYTES_PER_PARAM else None)
                 for d, b in DTYPE_BYTES_PER_PARAM.items())


def report_for(m: Transformer, source: str = "spec", read=(), ignored=(), warnings=(), notes=()) -> ModelReport:
    """A ModelReport for a Transformer spec (and what a config reader recorded, if any)."""
    if m.learned_pos_emb and m.max_seq_len and m.seq_len > m.max_seq_len:
        warnings = (*warnings, f"seq_len: {m.seq_len} exceeds the {m.max_seq_len} learned positions")
    if m.note and source != "spec" and not read:   # presets: how the preset approximates the model
        warnings = (*warnings, f"model: {m.note}")
    return ModelReport(
        name=m.name, source=source, model=m, architecture=architecture(m), params=m.num_params,
        active_params=m.num_active_params,
        active_params_excl_embedding=m.num_active_params - m.embedding_params,
        embedding_params=m.embedding_params, params_by_component=tuple(m.params_by_component().items()),
        dtypes=dtype_bytes(m), seq_len=m.seq_len, max_seq_len=m.context_len,
        read=tuple(read), ignored=tuple(ignored), warnings=tuple(warnings), notes=tuple(notes))


def describe_model(model_or_path: Transformer | str | Path, seq_len: int | None = None) -> ModelReport:
    """Describe a Transformer, a preset name, or a Hugging Face config: a config.json, a model or
    snapshot folder, a hub-cache folder (newest snapshot) or a cached Hub id ``org/name``.
    ValueError (one line, naming the file and field) for anything that cannot be read."""
    if isinstance(model_or_path, Transformer):
        m = model_or_path.with_seq_len(seq_len) if seq_len else model_or_path
        return report_for(m)
    text = str(model_or_path)
    if text.lower() in PRESETS or text.lower() in _ALIASES:
        m = get_model(text)
        return report_for(m.with_seq_len(seq_len) if seq_len else m, source="preset")
    if not (text.endswith(".json") or "/" in text or Path(text).expanduser().exists()):
        get_model(text)   # raises: unknown preset, listing the presets
    imp = read_hf_config(text, seq_len)
    return report_for(imp.model, imp.source, imp.read, imp.ignored, imp.warnings, imp.notes)
