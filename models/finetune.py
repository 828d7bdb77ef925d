"""Parameter-efficient fine-tuning: LoRA, QLoRA and DoRA adapters on a frozen base.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", Sec. 4.1): a frozen
weight W (d_in x d_out) gains a trainable B A with A: d_in x r, B: r x d_out, so
    trainable parameters per adapted module = r (d_in + d_out)
    forward FLOPs per token                 = 2 r (d_in + d_out)          (x A, then (x A) B)
    backward FLOPs per token                = 4 r (d_in + d_out)          (input and weight gradients)
and the frozen W needs no weight gradient: the backward of the base runs only the input-gradient
GEMMs, about 1x the forward instead of 2x (Hu et al. Sec. 4.2, "we do not need to calculate the
gradients ... for most parameters"). Each adapted module keeps its rank-r intermediate x A
(2 r bytes per token at 16 bits) for B's gradient; a frozen linear layer that no adapter reads
keeps no input for a weight gradient (PyTorch saves a Linear's input only for grad_weight).

Module names are Hugging Face PEFT's for Llama-style models (peft/utils/constants.py
TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING; "all-linear" = every nn.Linear except the
output layer, peft/tuners/tuners_utils.py ``_maybe_include_all_linear_layers``):
    q_proj h -> a d_h, k_proj / v_proj h -> kv d_h, o_proj a d_h -> h,
    gate_proj / up_proj h -> f, down_proj f -> h   (per expert in MoE layers).
PEFT's print_trainable_parameters: Llama-2 7B, r = 8 on q_proj, v_proj: 4,194,304.

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", Sec. 3): the frozen
linear weights are 4-bit NormalFloat in blocks of 64 with one absmax constant per block, and the
constants themselves 8-bit in blocks of 256 with an fp32 second-level constant (double
quantisation): 4 + 8/64 + 32/(64 x 256) = 4.127 bits per weight. Every pass that uses a weight
dequantises it to 16 bits first (bitsandbytes dequantize_4bit, memory-bound: read 0.516 B, write 2 B).
Embeddings, norms and the output layer stay 16-bit (bitsandbytes skips lm_head).

DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", Sec. 4.1 eq. 5): LoRA plus a
trainable magnitude vector of d_out per module; PEFT recomputes the column norm of W + B A every
forward: 2 r d_in d_out FLOPs for B A and 3 d_in d_out for the norm, per module per micro-batch.
"""

from __future__ import annotations

import numpy as np

METHODS = ("none", "lora", "qlora", "dora")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ALL_LINEAR = (1 << len(TARGETS)) - 1
# NF4 + double quantisation, bytes per frozen linear weight (Dettmers et al. 2023 Sec. 3).
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)
NF4_BYTES = NF4_BITS / 8
# dequantize_4bit: read the packed weight and its constants, write the 16-bit copy.
DEQUANT_BYTES_PER_PARAM = NF4_BYTES + 2.0
DEQUANT_KERNELS = 1
BASE_BYTES = 2.0                          # 16-bit frozen weights (LoRA, DoRA)


def method_code(name: str) -> int:
    return METHODS.index(name)


def parse_targets(text: str) -> str:
    """'q_proj, V_PROJ' -> 'q_proj,v_proj' (PEFT order); 'all-linear' stays; ValueError names the field.

    >>> parse_targets("v_proj,q_proj")
    'q_proj,v_proj'
    """
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if names == ["all-linear"]:
        return "all-linear"
    bad = [n for n in names if n not in TARGETS]
    if bad or not names:
        raise ValueError(f"plan.lora_targets: {bad[0] if bad else text!r} is not a PEFT module name; use "
                         f"{', '.join(TARGETS)} (comma-separated) or all-linear")
    return ",".join(t for t in TARGETS if t in names)


def target_mask(text: str) -> int:
    """Bit i set when TARGETS[i] is adapted (the planner's array code).

    >>> target_mask("q_proj,v_proj"), target_mask("all-linear")
    (5, 127)
    """
    t = parse_targets(text)
    return ALL_LINEAR if t == "all-linear" else sum(1 << TARGETS.index(n) for n in t.split(","))


def module_shapes(model, moe: bool = False) -> dict:
    """(d_in, d_out, copies per layer) of each PEFT target module of one layer (MoE: every expert)."""
    h, qd, kvd = model.hidden, model.num_heads * model.dh, model.num_kv_heads * model.dh
    if moe:
        f, n = model.expert_ffn_hidden, model.num_experts + model.num_shared_experts
    else:
        f, n = model.ffn_hidden, 1
    out = {"q_proj": (h, qd, 1), "k_proj": (h, kvd, 1), "v_proj": (h, kvd, 1), "o_proj": (qd, h, 1),
           "up_proj": (h, f, n), "down_proj": (f, h, n)}
    if model.gated_ffn:
        out["gate_proj"] = (h, f, n)
    return out


def check(model, method: str, rank: int, targets: str) -> list[str]:
    """Why an adapter cannot be put on ``model`` (empty when it can): a target the model lacks, a rank
    above the smallest adapted dimension.

    >>> from models.transformer import get_model
    >>> check(get_model("gpt2-small"), "lora", 8, "gate_proj")[0][:45]
    'lora_targets: gpt2-small has no gate_proj (it'
    """
    if method == "none":
        return []
    errs, shapes, t = [], module_shapes(model), parse_targets(targets)
    names = [n for n in TARGETS if n in shapes] if t == "all-linear" else t.split(",")
    if model.is_mla and any(n in TARGETS[:4] for n in names):
        errs.append(f"lora_targets: {model.name} uses multi-head latent attention, without q_proj/k_proj/v_proj/"
                    "o_proj; adapt gate_proj,up_proj,down_proj")
    missing = [n for n in names if n not in shapes]
    if missing:
        errs.append(f"lora_targets: {model.name} has no {missing[0]} (its FFN is not gated); "
                    f"choose from {', '.join(n for n in TARGETS if n in shapes)}")
    present = [n for n in names if n in shapes]
    smallest = min(present, key=lambda n: min(shapes[n][:2]), default=None)
    if smallest and rank > min(shapes[smallest][:2]):
        errs.append(f"lora_rank: {rank} exceeds the smallest adapted dimension ({smallest}: "
                    f"{shapes[smallest][0]} x {shapes[smallest][1]}); use a rank <= {min(shapes[smallest][:2])}")
    return errs


def _per_module(model, mask, moe, fn):
    """Sum over the adapted modules of fn(d_in, d_out) x copies (mask: TARGETS bitmask, arrays ok)."""
    shapes, total = module_shapes(model, moe), 0.0
    for i, name in enumerate(TARGETS):
        if name in shapes:
            d_in, d_out, n = shapes[name]
            total = total + ((np.asarray(mask) >> i) & 1) * n * fn(d_in, d_out)
    return total


def _layer_avg(model, mask, fn):
    """_per_module averaged over the model's dense and MoE layers (MLA attention: no adapters)."""
    dense = _per_module(model, mask, False, fn)
    if not model.is_moe:
        return dense
    f = model.num_moe_layers / model.num_layers
    return (1 - f) * dense + f * _per_module(model, mask, True, fn)


def adapter_params_per_layer(model, rank, mask, method_code_=1):
    """Trainable adapter parameters of one (average) layer: r (d_in + d_out) per adapted module,
    plus DoRA's d_out magnitude vector (Liu et al. 2024 eq. 5). 0 for full training (arrays ok)."""
    lora = rank * _layer_avg(model, mask, lambda i, o: i + o)
    dora = _layer_avg(model, mask, lambda i, o: o)
    m = np.asarray(method_code_)
    return np.where(m == 0, 0.0, lora + np.where(m == 3, dora, 0.0))


def trainable_params(model, method: str, rank: int, targets: str) -> int:
    """Trainable parameters of the whole model: all of them (full training) or the adapters'.

    PEFT print_trainable_parameters, Llama-2 7B, r = 8 on q_proj, v_proj:
    >>> from models.transformer import get_model
    >>> trainable_params(get_model("llama2-7b"), "lora", 8, "q_proj,v_proj")
    4194304
    """
    if method == "none":
        return int(model.num_params)
    mask = target_mask(targets)
    return int(round(float(adapter_params_per_layer(model, rank, mask, method_code(method))) * model.num_layers))


def grad_sync_params(model, a, layers, nonexp, exp):
    """(non-expert, expert) parameters of one rank whose gradients the DP reduction moves (arrays ok):
    all of them under full training; under LoRA/QLoRA/DoRA only the adapters of its ``layers`` layers
    (the frozen base has no gradient: PEFT marks it requires_grad=False, so DDP/ZeRO bucket only the
    adapters), split over the TP ranks like the base weights they adapt.

    >>> from models.transformer import get_model
    >>> m = get_model("llama2-7b")
    >>> g, e = grad_sync_params(m, {"finetune": 1, "lora_rank": 8, "lora_targets": 5, "tp": 1}, 32, 6.7e9, 0.0)
    >>> int(g), float(e)      # PEFT's 4,194,304 trainable parameters of r = 8 on q_proj, v_proj
    (4194304, 0.0)
    """
    method = np.asarray(a.get("finetune", 0))
    if not np.any(method != 0):
        return nonexp, exp
    adapters = layers * adapter_params_per_layer(model, a.get("lora_rank", 8), a.get("lora_targets", 5), method) / a["tp"]
    return np.where(method != 0, adapters, nonexp), np.where(method != 0, 0.0, exp)


def adapter_flops_per_token(model, rank, mask):
    """Forward FLOPs per token of one layer's adapters: 2 r (d_in + d_out) per module (backward 2x)."""
    return 2 * rank * _layer_avg(model, mask, lambda i, o: i + o)


def dora_flops_per_microbatch(model, rank, mask):
    """DoRA's per-forward weight-norm work of one layer: 2 r d_in d_out + 3 d_in d_out per module."""
    return _layer_avg(model, mask, lambda i, o: (2 * rank + 3) * i * o)


def quantized_params_per_layer(model):
    """Linear weights of one (average) layer that QLoRA stores in NF4 (biases and norms stay 16-bit)."""
    return _layer_avg(model, ALL_LINEAR, lambda i, o: i * o)


def frozen_weight_bytes(params, quantized_params, method_code_):
    """Bytes of ``params`` frozen weights of which ``quantized_params`` are linear weights:
    16-bit, or NF4 + double quantisation for those under QLoRA (Dettmers et al. 2023 Sec. 3).

    65B-class model, all its ~64.7e9 linear weights in NF4: about 33 GB.
    >>> round(float(frozen_weight_bytes(64.7e9, 64.7e9, 2)) / 1e9, 1)
    33.4
    """
    m = np.asarray(method_code_)
    return np.where(m == 2, BASE_BYTES * params - (BASE_BYTES - NF4_BYTES) * quantized_params, BASE_BYTES * params)


def lora_activation_bytes(model, tokens, rank, mask, tp):
    """Activation bytes the adapters of one layer add per micro-batch of ``tokens`` tokens: the rank-r
    intermediate x A of each adapted module, 16-bit (replicated over TP ranks: A's output is small)."""
    n_modules = _layer_avg(model, mask, lambda i, o: 1.0)
    return 2.0 * tokens * rank * n_modules + 0 * tp


def frozen_activation_savings_bytes(model, tokens, mask, tp, sp, flash=True):
    """Activation bytes per layer a frozen base does not keep, per micro-batch: the inputs saved only
    for weight gradients of linear layers no adapter reads (Korthikanti et al. 2022 Sec. 4.1 terms):
    the QKV input 2 s b h (no q/k/v adapter), the FFN input 2 s b h (no gate/up adapter), the
    down-projection input 2 s b f (no down adapter) and, under unfused attention (``flash`` False), the
    attention-output projection's input 2 s b a d_h (no o_proj adapter). PyTorch saves a matmul's input
    only for the weight's gradient (tools/autograd/derivatives.yaml, mm: ``mat2: mm_mat2_backward(grad,
    self, ...)``; the generated node saves ``self`` only when mat2 needs a gradient). FlashAttention and
    SDPA keep their output (o_proj's input) for their own backward either way; the unfused softmax x V
    bmm keeps its inputs (probabilities and V), not its output, so a frozen o_proj frees it.

    >>> from models.transformer import get_model
    >>> m = get_model("llama2-7b")
    >>> qv = 0b101                                   # q_proj, v_proj adapted
    >>> int(frozen_activation_savings_bytes(m, 1, qv, 1, False))            # FFN input 2h + down input 2f
    30208
    >>> int(frozen_activation_savings_bytes(m, 1, qv, 1, False, flash=False))   # + o_proj input 2h
    38400
    """
    m = np.asarray(mask)
    bit = lambda i: (m >> i) & 1  # noqa: E731
    qkv_free = 1 - np.maximum(np.maximum(bit(0), bit(1)), bit(2))
    ffn_in_free = 1 - np.maximum(bit(4), bit(5))
    down_free = 1 - bit(6)
    o_free = (1 - bit(3)) * (1 - np.asarray(flash, dtype=float))
    h_part = 2.0 * tokens * model.hidden / np.where(sp, tp, 1)
    f = model.expert_ffn_hidden * (model.top_k + model.num_shared_experts) if model.is_moe else model.ffn_hidden
    return ((qkv_free + ffn_in_free) * h_part + down_free * 2.0 * tokens * f / tp
            + o_free * 2.0 * tokens * model.num_heads * model.dh / tp)


def frozen_output_dw_s(model, km, a, tokens, tp):
    """Seconds of the output layer's weight-gradient GEMM (tokens x h x vocab/tp) that a frozen base does
    not run, per micro-batch (arrays ok): under LoRA/QLoRA/DoRA lm_head is frozen (PEFT's all-linear
    leaves the output layer out, and TARGETS has no lm_head), so autograd computes only its input
    gradient and the output layer's backward is one GEMM, not two. 0 for full training.

    >>> from models.transformer import get_model
    >>> class K:
    ...     def gemm(self, m, n, k): return 2.0 * m * n * k / 1e15
    >>> m = get_model("llama3-8b")
    >>> round(float(frozen_output_dw_s(m, K(), {"finetune": 1}, 4096, 1)), 4)   # 2 x 4096 x 128256 x 4096 / 1e15
    0.0043
    >>> float(frozen_output_dw_s(m, K(), {"finetune": 0}, 4096, 1))
    0.0
    """
    method = np.asarray(a.get("finetune", 0))
    if not np.any(method != 0):
        return 0.0
    return np.where(method != 0, km.gemm(tokens, model.vocab / tp, model.hidden), 0.0)


def layer_extra_s(model, km, a, tokens, moe=False):
    """(extra forward s, extra backward s, dW factor) of one layer per micro-batch on one rank under
    the plan arrays ``a``: the adapters' two skinny GEMMs per module and the add into the base output
    (backward 2x: input and weight gradients), DoRA's weight norm, QLoRA's dequantisation of every
    frozen linear weight before each pass (Dettmers et al. 2023 Sec. 3); dW factor 0 for a frozen
    base (no weight-gradient GEMMs), else 1. Full training: (0, 0, 1)."""
    method = np.asarray(a.get("finetune", 0))
    if not np.any(method != 0):      # full training (every plan of a grid shares the method)
        return 0.0, 0.0, 1.0
    tp, rank, mask = a["tp"], a["lora_rank"], np.asarray(a["lora_targets"])
    fwd = 0.0
    shapes = module_shapes(model, moe)
    for i, name in enumerate(TARGETS):
        if name not in shapes:
            continue
        d_in, d_out, n = shapes[name]
        on = (mask >> i) & 1
        t = (km.gemm(tokens, rank, d_in) + km.gemm(tokens, d_out / tp, rank)
             + km.memory_bound(tokens * d_out / tp * 2 * 3, 1))
        dora = km.gemm(d_in, d_out / tp, rank) + km.memory_bound(3 * 2 * d_in * d_out / tp, 2)
        fwd = fwd + on * n * (t + np.where(method == 3, dora, 0.0))
    deq = km.memory_bound(_per_module(model, ALL_LINEAR, moe, lambda i, o: i * o) / tp * DEQUANT_BYTES_PER_PARAM,
                          DEQUANT_KERNELS * 7)
    deq = np.where(method == 2, deq, 0.0)
    fwd = np.where(method == 0, 0.0, fwd)
    return fwd + deq, 2 * fwd + deq, np.where(method == 0, 1.0, 0.0)
